"""What the cost model (bench/cost_model.py, docs/SCALE.md) needs, measured in one run, and
ingest to loopback S3 against a local folder on the same videos.

On N copies of a 2-minute 640x360 speech video with ASR captions, served on 127.0.0.1,
`python -m ingest run --profile local` with one worker process:

- ``small``: 1 video (Beam start-up, imports, the first mel: the fixed cost, plus one video);
- ``local``: N videos to a local folder;
- ``s3``: the same N videos to s3:// on moto's server on loopback (devtools/objectstores.py).

Per run: CPU seconds of the whole process tree, wall seconds, the largest process's peak
RSS, and from the manifest the shard bytes and video minutes. Derived: the marginal CPU
seconds per video-minute (``local`` minus ``small``, per extra minute), the fixed CPU per
run, shard bytes per video-minute, and S3/local ratios. Medians of ``--repeats``,
alternating local and s3 so drift hits both.

    .venv/bin/python bench/bench_scale.py --videos 8 --repeats 1 --out bench/scale-measured.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.localserve import LocalServer  # noqa: E402
from devtools.mediagen import cached_speech_video  # noqa: E402
from devtools.objectstores import LoopbackS3  # noqa: E402

# Runs a command and writes its rusage as JSON: the whole tree's CPU, its largest process's
# peak RSS. It is the subreaper of the tree and waits for every process in it, so that no
# process escapes the count however its parent leaves (`python -m ingest` ends with os._exit).
MEASURE = """
import ctypes, json, os, resource, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
t = time.perf_counter()
rc = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "wall": time.perf_counter() - t,
    "cpu": u.ru_utime + u.ru_stime, "max_rss_mb": u.ru_maxrss / 1024}))
"""


def measured_run(inputs: str, out: str, env: dict[str, str], tmp: Path) -> dict[str, float]:
    cmd = [
        sys.executable, "-m", "ingest", "run", "--profile", "local", "--input", inputs,
        "--output", out, "--direct_num_workers=1",
    ]  # fmt: skip
    report = tmp / "rusage.json"
    subprocess.run(
        [sys.executable, "-c", MEASURE, str(report), *cmd], cwd=ROOT, env=env, check=True
    )
    usage = json.loads(report.read_text())
    if usage["rc"] != 0:
        raise SystemExit(f"ingest to {out} exited {usage['rc']}")
    from shards import manifest

    rows = [r for r in manifest.load_state(out).values() if r.status == "ok"]
    usage["video_min"] = sum(r.duration_ms for r in rows) / 60_000
    usage["shard_bytes"] = sum(r.bytes for r in rows)
    usage["videos_ok"] = len(rows)
    return usage


def put_list(url: str, base: str, n: int, env: dict[str, str]) -> None:
    import fsspec

    text = "url,captions\n" + "".join(f"{base}/v{i}.mp4,{base}/v.en.vtt\n" for i in range(n))
    os.environ.update(env)
    with fsspec.open(url, "w") as f:
        f.write(text)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path("/tmp/montage-bench"))
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    print(f"preparing the 2-minute test video in {args.cache} ...", flush=True)
    video = cached_speech_video(args.cache, 120)
    runs: dict[str, list[dict[str, float]]] = {"small": [], "local": [], "s3": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_dir,
        LoopbackS3() as s3,
    ):
        tmp = Path(tmp_dir)
        (site := tmp / "site").mkdir()
        for i in range(args.videos):
            shutil.copy(video, site / f"v{i}.mp4")
        shutil.copy(video.with_suffix(".en.vtt"), site / "v.en.vtt")
        env = dict(os.environ, **s3.env)
        bucket = s3.make_bucket("bench")
        with LocalServer(site) as server:
            put_list(str(tmp / "one.csv"), server.base_url, 1, {})
            put_list(str(tmp / "all.csv"), server.base_url, args.videos, {})
            put_list(f"{bucket}/all.csv", server.base_url, args.videos, s3.env)
            measured_run(str(tmp / "one.csv"), str(tmp / "warm"), env, tmp)  # numba, page cache
            for r in range(args.repeats):
                print(f"repeat {r + 1}/{args.repeats} ...", flush=True)
                runs["small"].append(
                    measured_run(str(tmp / "one.csv"), str(tmp / f"s{r}"), env, tmp)
                )
                runs["local"].append(
                    measured_run(str(tmp / "all.csv"), str(tmp / f"l{r}"), env, tmp)
                )
                runs["s3"].append(measured_run(f"{bucket}/all.csv", f"{bucket}/out{r}", env, tmp))
    small, local, s3r = (median_of(runs[k]) for k in ("small", "local", "s3"))
    marginal = (local["cpu"] - small["cpu"]) / (local["video_min"] - small["video_min"])
    result = {
        "videos": args.videos,
        "repeats": args.repeats,
        "video_minutes_each": small["video_min"],
        "cpu_s_per_video_min": marginal,
        "fixed_cpu_s_per_run": small["cpu"] - small["video_min"] * marginal,
        "fixed_wall_s_per_run": small["wall"] - small["video_min"] * marginal,
        "shard_bytes_per_video_min": local["shard_bytes"] / local["video_min"],
        "max_rss_mb": max(local["max_rss_mb"], s3r["max_rss_mb"]),
        "runs": {"small": small, "local": local, "s3": s3r},
        "s3_over_local_wall": s3r["wall"] / local["wall"],
        "s3_over_local_cpu": s3r["cpu"] / local["cpu"],
        "cpu_count": os.cpu_count(),
    }
    print(
        f"{args.videos} videos x {small['video_min']:.1f} min, one worker, medians of {args.repeats}"
    )
    print(f"{'run':<8}{'wall s':>9}{'CPU s':>9}{'video-min/wall-s':>18}{'peak RSS MB':>13}")
    for name, r in result["runs"].items():
        rate = r["video_min"] / r["wall"]
        print(f"{name:<8}{r['wall']:9.1f}{r['cpu']:9.1f}{rate:18.3f}{r['max_rss_mb']:13.0f}")
    print(
        f"marginal {marginal:.2f} CPU s per video-minute; fixed {result['fixed_cpu_s_per_run']:.1f}"
        f" CPU s per run; {result['shard_bytes_per_video_min'] / 1e6:.2f} MB of shards per"
        f" video-minute; s3/local wall {result['s3_over_local_wall']:.2f}x,"
        f" CPU {result['s3_over_local_cpu']:.2f}x"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
