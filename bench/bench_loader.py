"""Loader throughput: samples/s and frames/s of ShardDataModule per worker count.

    python -m bench.bench_loader                      # workers 1 2, ~200 samples
    python -m bench.bench_loader --workers 1 4 8 16   # a 16-core machine

Builds realistic shards once (16-segment windows, 512x288 JPEGs cut from a generated
H.264 video when ffmpeg is there, else PIL-drawn pictures; (16, 64, 188) uint8 mels;
about 10 words per segment), then times, median of ``--repeats`` runs:

- ``tar read``: a plain sequential read of every member's bytes in one process (the
  floor: I/O and tar parsing, no decoding);
- ``loader W``: the training loader with W worker processes for one pass over as many
  samples as the shards hold (JPEG decode + resize/crop, mel dequantize/cut, tokenize,
  collate, inter-process transfer). ``steady`` leaves out worker start-up (time to the
  first batch).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too

from devtools.samples import PARAMS
from model.data.datamodule import ShardDataModule
from shards import schema
from shards.layout import expand
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter

SEGMENTS = 16
WORDS = [
    "we",
    "take",
    "the",
    "pan",
    "and",
    "heat",
    "some",
    "oil",
    "then",
    "add",
    "the",
    "onions",
    "and",
    "stir",
    "for",
    "three",
    "minutes",
]


def video_frames(n: int, tmp: Path) -> list[bytes] | None:
    """n JPEGs (512x288) of a generated video through the ingest frame extractor, or None."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        return None
    from devtools.mediagen import make_video
    from ingest.config import FrameConfig
    from ingest.media import extract_frames

    path = make_video(tmp / "bench.mp4", duration_s=n * 0.5 + 1, audio=None)
    return extract_frames(path, [250 + 500 * i for i in range(n)], FrameConfig())


def drawn_frames(n: int, seed: int = 0) -> list[bytes]:
    """n 512x288 JPEGs with gradients, shapes and noise (compress like real frames, roughly)."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:288, 0:512]
    for i in range(n):
        base = np.stack([(xx + 7 * i) % 256, (yy * 2 + 13 * i) % 256, (xx + yy) % 256], axis=-1)
        img = Image.fromarray(
            (base + rng.integers(0, 24, base.shape)).clip(0, 255).astype(np.uint8)
        )
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.integers(0, 480), rng.integers(0, 256)
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x, y, x + rng.integers(10, 120), y + rng.integers(10, 80)), fill=color)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_window(
    video: str, window: int, pool: list[bytes], rng: np.random.Generator
) -> schema.Sample:
    seg_ms = PARAMS.segment_ms
    start = window * SEGMENTS * seg_ms
    segs = [(start + i * seg_ms, start + (i + 1) * seg_ms) for i in range(SEGMENTS)]
    words = []
    for i, (s, _) in enumerate(segs):
        for j in range(10):
            t = s + 100 + j * 480
            words.append(
                schema.WordRecord(WORDS[(i + j) % len(WORDS)], t, t + 300, i, min(j // 4, 2))
            )
    mel, scale = schema.quantize_mel(rng.random((SEGMENTS, 64, 188), dtype=np.float32) * 6)
    meta = schema.SampleMeta(
        video_id=video,
        url=f"http://127.0.0.1/{video}.mp4",
        title=video,
        window=window,
        start_ms=segs[0][0],
        end_ms=segs[-1][1],
        segments=segs,
        words=words,
        caption_kind="auto",
        has_audio=True,
        params=PARAMS,
        mel_shape=tuple(mel.shape),
        mel_scale=scale.tolist(),
    )
    frames = [pool[(window * SEGMENTS + i) % len(pool)] for i in range(SEGMENTS)]
    return schema.Sample(meta=meta, frames=frames, mel=mel)


def build_shards(out: Path, samples: int, shards: int, tmp: Path) -> str:
    pool = video_frames(64, tmp)
    source = "video (ffmpeg testsrc2 via ingest.media.extract_frames)"
    if pool is None:
        pool, source = drawn_frames(64), "PIL-drawn"
    rng = np.random.default_rng(0)
    windows_per_video = 4
    per_shard = -(-samples // shards)
    with ShardWriter(str(out), "bench", ShardLimits(max_samples=per_shard)) as writer:
        for v in range(-(-samples // windows_per_video)):
            vid = f"bench{v:04d}"
            wins = [make_window(vid, w, pool, rng) for w in range(windows_per_video)]
            writer.add_video(wins, ManifestRow(video_id=vid, url="u", status="ok"))
    mean_kb = sum(len(f) for f in pool) / len(pool) / 1024
    return f"frames: {source}, 512x288, mean {mean_kb:.0f} KB"


def time_tar_read(urls: list[str]) -> tuple[float, int, int]:
    """(seconds, samples, bytes) for reading every member's bytes sequentially."""
    t0 = time.perf_counter()
    n_bytes = n_json = 0
    for url in urls:
        with tarfile.open(url, mode="r|") as tar:
            for info in tar:
                data = tar.extractfile(info).read()
                n_bytes += len(data)
                n_json += info.name.endswith(".json")
    return time.perf_counter() - t0, n_json, n_bytes


def time_loader(
    spec: str, workers: int, batch_size: int, steps: int, frame_size
) -> tuple[float, float, int, int]:
    """(total s, steady samples/s, samples, frames) for one pass of the training loader."""
    dm = ShardDataModule(
        spec,
        batch_size=batch_size,
        steps_per_epoch=steps,
        num_workers=workers,
        shuffle_buffer=64,
        frame_size=frame_size,
        max_segments=SEGMENTS,
    )
    t0 = time.perf_counter()
    first = None
    samples = frames = first_samples = 0
    for lb in dm.train_dataloader():
        n = lb.batch.batch_size
        samples += n
        frames += int(lb.batch.segment_mask.sum())
        if first is None:
            first, first_samples = time.perf_counter(), n
    end = time.perf_counter()
    steady = (samples - first_samples) / (end - first) if end > first else float("nan")
    return end - t0, steady, samples, frames


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--shards", type=int, default=16, help="at least max(--workers)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frame-size", type=int, nargs=2, default=[192, 320])
    p.add_argument("--dir", type=Path, help="keep/reuse shards here (default: a temp dir)")
    args = p.parse_args()
    assert args.shards >= max(args.workers), "need at least one shard per worker (--shards)"

    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    out = args.dir or tmp / "shards"
    if not (out.exists() and expand(str(out))):
        t = time.perf_counter()
        note = build_shards(out, args.samples, args.shards, tmp)
        print(f"built shards in {time.perf_counter() - t:.1f} s; {note}")
    urls = expand(str(out))
    size_mb = sum(Path(u).stat().st_size for u in urls) / 1e6
    _, n_samples, _ = time_tar_read(urls)  # also warms the page cache
    steps = n_samples // args.batch_size
    print(
        f"{len(urls)} shards, {n_samples} samples x {SEGMENTS} segments, {size_mb:.0f} MB; "
        f"batch {args.batch_size}, frame size {tuple(args.frame_size)}; median of {args.repeats}\n"
    )
    print(
        f"{'mode':<14}{'workers':>8}{'samples/s':>11}{'frames/s':>10}{'per worker':>12}{'steady s/s':>12}{'MB/s':>8}"
    )

    runs = [time_tar_read(urls) for _ in range(args.repeats)]
    sec = statistics.median(r[0] for r in runs)
    print(
        f"{'tar read':<14}{1:>8}{n_samples / sec:>11.0f}{n_samples * SEGMENTS / sec:>10.0f}{n_samples / sec:>12.0f}{'':>12}{size_mb / sec:>8.0f}"
    )
    for w in args.workers:
        res = [
            time_loader(str(out), w, args.batch_size, steps, tuple(args.frame_size))
            for _ in range(args.repeats)
        ]
        total = statistics.median(r[0] for r in res)
        steady_rate = statistics.median(r[1] for r in res)
        samples, frames = res[0][2], res[0][3]
        print(
            f"{'loader':<14}{w:>8}{samples / total:>11.1f}{frames / total:>10.0f}"
            f"{samples / total / w:>12.1f}{steady_rate:>12.1f}{size_mb * samples / n_samples / total:>8.1f}"
        )
    shutil.rmtree(tmp, ignore_errors=True)  # the video and, without --dir, the shards


if __name__ == "__main__":
    main()
