"""Throughput of `inspect` and `verify` against plain sequential reads of the same tars.

    .venv/bin/python bench/bench_inspect.py [--samples 300] [--segments 16] [--out bench.json]

Writes synthetic samples (``devtools.samples.make_sample`` with realistic frames:
smooth 512x288 JPEGs of about the size real frames have, 16 segments, a
uint8 mel) into shards with ``ShardWriter``, then times, in this process, the
median of ``--runs`` runs of:

- ``raw read``: every shard file read start to end in 1 MiB chunks;
- ``tar stream``: ``tarfile`` in stream mode, every member's bytes read;
- ``inspect``: ``shards.inspection.inspect_shards`` (headers + ``.json`` only);
- ``verify``: ``shards.verify.verify_shards`` (every member decoded and checked), with
  one worker and with ``--workers`` worker processes (default: one per CPU).

The files are in the page cache after the first pass, so this measures the
tools' CPU cost, not the disk. Synthetic words (3 per segment) make the json
smaller than real narration's (about 12 per segment).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.samples import make_sample
from shards.cli.inspection import inspect_shards
from shards.cli.locate import locate
from shards.cli.verify import default_workers, verify_shards
from shards.manifest import ManifestRow, consolidate
from shards.writer import ShardLimits, ShardWriter

log = logging.getLogger("bench_inspect")


def smooth_jpeg(seed: int, size: tuple[int, int] = (512, 288)) -> bytes:
    """A picture with the structure of a video frame: smooth shapes plus a little noise."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8))
    img = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-6, 7, img.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_shards(out: Path, n_samples: int, segments: int, per_video: int, per_shard: int) -> None:
    frames = [smooth_jpeg(i) for i in range(64)]  # reused: encoding is not what we measure
    with ShardWriter(str(out), "bench", ShardLimits(max_samples=per_shard)) as writer:
        for v in range(0, n_samples, per_video):
            vid = f"video{v:05d}"
            count = min(per_video, n_samples - v)
            samples = []
            for w in range(count):
                s = make_sample(vid, window=w, segments=segments)
                pics = [frames[(v + w * segments + i) % len(frames)] for i in range(segments)]
                samples.append(dataclasses.replace(s, frames=pics))
            row = ManifestRow(vid, f"http://127.0.0.1/{vid}", "ok", windows=count)
            writer.add_video(samples, row)
    consolidate(str(out), "bench")


def raw_read(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
    return n


def tar_stream(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        with p.open("rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for info in tar:
                fh = tar.extractfile(info)
                if fh is not None:
                    n += len(fh.read())
    return n


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--per-shard", type=int, default=50, help="samples per shard")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="verify worker processes"
    )
    parser.add_argument("--dir", type=Path, help="where to write the shards (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_inspect_") as tmp:
        out = args.dir or Path(tmp)
        t0 = time.perf_counter()
        write_shards(out, args.samples, args.segments, per_video=10, per_shard=args.per_shard)
        paths = sorted(out.glob("*.tar"))
        total = sum(p.stat().st_size for p in paths)
        print(
            f"{args.samples} samples x {args.segments} segments in {len(paths)} shards, "
            f"{total / 1e6:.1f} MB (written in {time.perf_counter() - t0:.1f} s); "
            f"median of {args.runs} runs, warm page cache"
        )
        target = locate(str(out))
        report = verify_shards(target)
        assert report.ok, f"bench shards should verify: {report.problems[:3]}"
        assert inspect_shards(target).samples == args.samples
        raw_read(paths)  # warm the cache
        cases = {
            "raw read": lambda: raw_read(paths),
            "tar stream": lambda: tar_stream(paths),
            "inspect": lambda: inspect_shards(target),
            "verify": lambda: verify_shards(target),
            f"verify x{args.workers}": lambda: verify_shards(target, workers=args.workers),
        }
        results = {name: median_time(fn, args.runs) for name, fn in cases.items()}

    base = results["tar stream"]
    print(f"{'':<12}{'seconds':>9}{'samples/s':>12}{'MB/s':>10}{'vs tar stream':>15}")
    rows = []
    for name, sec in results.items():
        row = {
            "case": name,
            "seconds": sec,
            "samples_per_s": args.samples / sec,
            "mb_per_s": total / 1e6 / sec,
            "time_vs_tar_stream": sec / base,
        }
        rows.append(row)
        print(
            f"{name:<12}{sec:>9.3f}{row['samples_per_s']:>12,.0f}{row['mb_per_s']:>10,.0f}"
            f"{row['time_vs_tar_stream']:>14.2f}x"
        )
    if args.out:
        meta = {"samples": args.samples, "segments": args.segments, "bytes": total}
        args.out.write_text(json.dumps({"setup": meta, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
