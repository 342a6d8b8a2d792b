"""``encode_video``: a video file or URL -> the vectors of its windows and segments.

The video goes through the ingest core exactly as ``python -m ingest run`` takes it
(probe, 5 s segments, windows, midpoint frames, log-mel; captions optional), with the
long-video filters off, then through the shard format's own decoding and the loader's
collate, so its vectors equal those of embedding the shards ingest would write for it.
A URL (or YouTube id) is downloaded with yt-dlp first, with the shipped ingest settings.
The ingest package is imported only when this runs: the model never needs it otherwise.

    vv = encode_video(encoder, "talk.mp4", captions="talk.en.vtt")
    vv.metas[i].start_ms, vv.vectors.windows["text-video/video"][i]
"""

from __future__ import annotations

from dataclasses import dataclass

from model.data.collate import collate, to_example
from model.inference.encoder import Encoder, WindowVectors
from shards import schema
from shards.decode import decode_sample


@dataclass
class VideoVectors:
    metas: list[schema.SampleMeta]  # one per window: times, words, URL
    vectors: WindowVectors  # windows (W, E) and segments (W, S, E) per vector name


def encode_video(encoder: Encoder, path_or_url: str, captions: str | None = None) -> VideoVectors:
    """Per-window and per-segment vectors of every modality the video has."""
    from ingest.single import samples_of  # ingest's door for one video, imported on use

    samples = samples_of(path_or_url, captions)
    cfg, tok = encoder.loaded.decode, encoder.loaded.tokenizer
    examples, metas = [], []
    for s in samples:
        # through the format's bytes and its checked decoder, as the shards are read
        decoded = decode_sample(s.key, schema.encode(s))
        examples.append(to_example(decoded, cfg, tok))
        metas.append(decoded.meta)
    return VideoVectors(metas, encoder.encode_windows(collate(examples)))
