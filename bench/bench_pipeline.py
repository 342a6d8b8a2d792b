"""End-to-end ingest throughput: the Beam pipeline (local profile) against the per-video floor.

In one run, on the same generated videos (2-minute 640x360 H.264 with speech-like
audio and ASR-style captions, served on 127.0.0.1 so yt-dlp downloads them):

- ``floor``: bare ffmpeg decoding the audio and the midpoint frames, plus librosa's
  mel on the audio (``bench_core.py``'s floor), per video, in a warm process;
- ``pipeline``: ``python -m ingest run --profile local`` with 1 and 2 worker
  processes on N videos: yt-dlp download, captions, frames, mel, shards, manifest,
  Beam start-up included.

Reported: video-minutes per core-second (CPU of the whole process tree, from
``getrusage(RUSAGE_CHILDREN)``) and per wall-second, and the ratio pipeline/floor
of CPU cost. Medians of ``--repeats``.

    .venv/bin/python bench/bench_pipeline.py --videos 8 --out /tmp/bench-pipeline.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.localserve import LocalServer  # noqa: E402
from devtools.mediagen import cached_speech_video  # noqa: E402


def floor_cpu(video: Path) -> float:
    """CPU seconds of bench_core.py's floor (bare ffmpeg + librosa) on ``video``, run as a program."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_core.py"), "--worker", "floor"]
    done = subprocess.run(
        [*cmd, "--video", str(video)], check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["cpu_total"]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_pipeline(site: Path, base_url: str, n: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        inputs = Path(tmp) / "in.csv"
        rows = [f"{base_url}/v{i}.mp4,{base_url}/v.en.vtt" for i in range(n)]
        inputs.write_text("url,captions\n" + "\n".join(rows) + "\n")
        cmd = [
            sys.executable,
            "-m",
            "ingest",
            "run",
            "--profile",
            "local",
            "--input",
            str(inputs),
            "--output",
            str(Path(tmp) / "out"),
            f"--direct_num_workers={workers}",
            "--set",
            "ingest.shards.videos_per_group=1",
        ]
        cpu0, wall0 = children_cpu(), time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
        if done.returncode != 0:
            raise SystemExit(f"pipeline failed:\n{done.stderr[-3000:]}")
        if f"ok {n}," not in done.stdout:
            raise SystemExit(f"not every video ok:\n{done.stdout}")
    return {"cpu": cpu, "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path("/tmp/montage-bench"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    print(f"preparing the 2-minute test video in {args.cache} ...", flush=True)
    video = cached_speech_video(args.cache, 120)
    minutes = 2.0
    floor_runs = [floor_cpu(video) for _ in range(args.repeats)]
    floor_cpu_per_min = statistics.median(floor_runs) / minutes

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-site-") as site_dir:
        site = Path(site_dir)
        for i in range(args.videos):
            shutil.copy(video, site / f"v{i}.mp4")  # the server refuses links out of its root
        shutil.copy(video.with_suffix(".en.vtt"), site / "v.en.vtt")
        with LocalServer(site) as server:
            run_pipeline(site, server.base_url, 1, 1)  # warm caches (numba, page cache)
            # fixed costs (Beam start-up, imports, first mel) vs the marginal cost per video
            small = [run_pipeline(site, server.base_url, 2, 1) for _ in range(args.repeats)]
            results["pipeline_w1_2videos"] = {
                "cpu": statistics.median(r["cpu"] for r in small),
                "wall": statistics.median(r["wall"] for r in small),
            }
            for w in args.workers:
                runs = [
                    run_pipeline(site, server.base_url, args.videos, w) for _ in range(args.repeats)
                ]
                results[f"pipeline_w{w}"] = {
                    "cpu": statistics.median(r["cpu"] for r in runs),
                    "wall": statistics.median(r["wall"] for r in runs),
                }

    total_min = args.videos * minutes
    table = [
        f"{'variant':<20} {'CPU s/video-min':>16} {'video-min/core-s':>17} {'video-min/wall-s':>17} {'cost vs floor':>14}",
        f"{'floor':<20} {floor_cpu_per_min:16.3f} {1 / floor_cpu_per_min:17.3f} {'':>17} {1.0:14.2f}",
    ]
    for name, r in results.items():
        n_min = 2 * minutes if name.endswith("_2videos") else total_min
        per_min = r["cpu"] / n_min
        table.append(
            f"{name:<20} {per_min:16.3f} {n_min / r['cpu']:17.3f} "
            f"{n_min / r['wall']:17.3f} {per_min / floor_cpu_per_min:14.2f}"
        )
    w1, w1_small = results.get("pipeline_w1"), results["pipeline_w1_2videos"]
    if w1 is not None and args.videos > 2:
        marginal = (w1["cpu"] - w1_small["cpu"]) / ((args.videos - 2) * minutes)
        fixed = w1_small["cpu"] - 2 * minutes * marginal
        table.append(
            f"{'marginal (w1)':<20} {marginal:16.3f} {1 / marginal:17.3f} {'':>17} "
            f"{marginal / floor_cpu_per_min:14.2f}   fixed per run: {fixed:.1f} CPU s"
        )
    if len(args.workers) > 1:
        w0, w1 = (results[f"pipeline_w{w}"] for w in args.workers[:2])
        table.append(
            f"wall speed-up {args.workers[0]} -> {args.workers[1]} workers: {w0['wall'] / w1['wall']:.2f}x"
        )
    print(f"{args.videos} videos x {minutes:.0f} min, medians of {args.repeats}")
    print("\n".join(table))
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "floor_cpu_per_min": floor_cpu_per_min,
                    "results": results,
                    "videos": args.videos,
                    "minutes_each": minutes,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
