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

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.data.collate import collate, to_example
from model.inference.encoder import Encoder, WindowVectors
from shards import schema
from shards.decode import decode_sample


@dataclass
class VideoVectors:
    metas: list[schema.SampleMeta]  # one per window: times, words, URL
    vectors: WindowVectors  # windows (W, E) and segments (W, S, E) per vector name


def ingest_samples(path_or_url: str, captions: str | None = None) -> list[schema.Sample]:
    """The samples ingest makes of one video (filters off, captions optional)."""
    from ingest import config as ingest_config
    from ingest.core import VideoFailure, VideoSource, process_video

    settings = ingest_config.load().ingest
    core = dataclasses.replace(
        settings.core,
        filters=ingest_config.FilterConfig(
            max_duration_s=None, min_words_per_window=None, require_captions=False
        ),
        segments=dataclasses.replace(settings.core.segments, min_segments=1),
    )
    local = Path(path_or_url)
    try:
        if "://" not in path_or_url and local.exists():
            source = VideoSource(local.stem, url=local.resolve().as_uri(), title=local.stem)
            cap = Path(captions) if captions else None
            return process_video(local, cap, core, source).samples
        from ingest.download import Downloader
        from ingest.refs import make_ref

        ref = make_ref(path_or_url, captions=captions)
        with tempfile.TemporaryDirectory(prefix="montage-encode-") as tmp:
            downloader = Downloader(settings.download, Path(tmp))
            try:
                with downloader.session(ref) as got:
                    title = str(got.info.get("title") or "")
                    source = VideoSource(ref.video_id, ref.shown_url, title, got.caption_kind)
                    return process_video(got.video_path, got.captions_path, core, source).samples
            finally:
                downloader.close()
    except VideoFailure as exc:
        raise ValueError(f"{path_or_url}: {exc}") from None


def encode_video(encoder: Encoder, path_or_url: str, captions: str | None = None) -> VideoVectors:
    """Per-window and per-segment vectors of every modality the video has."""
    samples = ingest_samples(path_or_url, captions)
    cfg, tok = encoder.loaded.decode, encoder.loaded.tokenizer
    examples, metas = [], []
    for s in samples:
        # through the format's bytes and its checked decoder, as the shards are read
        decoded = decode_sample(s.key, schema.encode(s))
        examples.append(to_example(decoded, cfg, tok))
        metas.append(decoded.meta)
    return VideoVectors(metas, encoder.encode_windows(collate(examples)))
