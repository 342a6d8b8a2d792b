"""Small synthetic samples for tests of the shard format (no media tools needed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from shards import schema


def jpeg(seed: int, size: tuple[int, int] = (64, 36)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


PARAMS = schema.ExtractionParams(
    segment_ms=5000,
    subsegments=3,
    sample_rate=22050,
    n_fft=1536,
    hop_length=588,
    n_mels=64,
    fmin=20.0,
    fmax=11025.0,
    log_offset=0.1,
    mel_frames=188,
    frame_short_side=288,
    frame_max_long_side=512,
)


def make_sample(
    video_id: str = "vid",
    window: int = 0,
    segments: int = 4,
    audio: bool = True,
    words_per_segment: int = 3,
) -> schema.Sample:
    seg_ms = PARAMS.segment_ms
    start = window * segments * seg_ms
    segs = [(start + i * seg_ms, start + (i + 1) * seg_ms) for i in range(segments)]
    words = []
    for i, (s, _) in enumerate(segs):
        for j in range(words_per_segment):
            w0 = s + 400 + j * 1500
            words.append(schema.WordRecord(f"w{i}_{j}", w0, w0 + 300, i, min(j, 2)))
    mel = scale = shape = None
    if audio:
        rng = np.random.default_rng(window)
        mel_f = rng.random((segments, 64, 188)).astype(np.float32) * 5
        mel, s = schema.quantize_mel(mel_f)
        scale, shape = s.tolist(), tuple(mel.shape)
    meta = schema.SampleMeta(
        video_id=video_id,
        url=f"http://127.0.0.1/{video_id}.mp4",
        title=f"Title {video_id}",
        window=window,
        start_ms=segs[0][0],
        end_ms=segs[-1][1],
        segments=segs,
        words=words,
        caption_kind="auto",
        has_audio=audio,
        params=PARAMS,
        mel_shape=shape,
        mel_scale=scale,
    )
    frames = [jpeg(window * 100 + i) for i in range(segments)]
    return schema.Sample(meta=meta, frames=frames, mel=mel)
