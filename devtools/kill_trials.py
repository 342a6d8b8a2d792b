"""Kill an ingest run at random moments, resume it, and count what the kill cost.

    python -m devtools.kill_trials --trials 10 --videos 8 --workers 2 --seed 0

Each trial ingests the same list of generated videos (served on 127.0.0.1) into a fresh
output with its own temp folder: ``python -m ingest run`` is started in its own process
group, SIGKILLed (with its workers) at a moment drawn uniformly from the length of an
uninterrupted run, then run again to the end. Counted per trial:

- ``partial`` / ``scratch``: partial files in the output's ``_tmp/`` and download folders
  (``montage-dl-<pid>-*``) in the temp folder, right after the kill (what it left);
- ``left_partial`` / ``left_scratch``: how many of those were still there after the resume;
- ``dupes``: windows found more than once over all shards;
- ``lost``: input videos without an ``ok`` row whose windows are all in the shards;
- ``rewritten``: shards that had landed before the kill and changed afterwards;
- ``unreadable``: shards that do not read to their end;
- ``rc``: the exit status of the resumed run.

The last line is the totals as JSON. Exit status 1 if any trial lost, doubled or
rewrote anything, or left anything behind.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from devtools import mediagen
from devtools.localserve import LocalServer

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ("partial", "scratch", "left_partial", "left_scratch", "dupes", "lost", "rewritten")


def write_config(path: Path, sleep_s: float) -> Path:
    """pipelines.yaml with small windows, groups of two videos and a pause before each
    download (so that a group's shard stays open, partial, for a while)."""
    cfg = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    ing = cfg["ingest"]
    ing["segments"].update(window_segments=2, window_stride=2, min_segments=1)
    ing["filters"].update(min_words_per_window=5)
    ing["download"].update(sleep_interval_s=sleep_s)
    ing["shards"].update(videos_per_group=2, min_groups=2)
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(config: Path, inputs: Path, out: Path, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "ingest", "run", "--config", str(config), "--input", str(inputs),
        "--output", str(out), f"--direct_num_workers={workers}",
    ]  # fmt: skip


def start(cmd: list[str], temp: Path) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(temp), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def leftovers(out: Path, temp: Path) -> tuple[set[str], set[str]]:
    tmp = out / "_tmp"
    partial = {p.name for p in tmp.iterdir()} if tmp.is_dir() else set()
    return partial, {p.name for p in temp.glob("montage-dl-*")}


def check(out: Path, n_videos: int) -> dict[str, int]:
    """Duplicates, losses and unreadable shards of a finished output."""
    from shards import layout, manifest, reader

    seen: collections.Counter = collections.Counter()
    unreadable = 0
    for url in layout.expand(str(out)):
        try:
            for sample in reader.iter_samples(url):
                seen[sample.key] += 1
        except Exception:  # any failure to read counts
            unreadable += 1
    rows = manifest.load_state(str(out))
    ok = [r for r in rows.values() if r.status == "ok"]
    whole = [r for r in ok if all(seen[f"{r.video_id}_w{w:04d}"] >= 1 for w in range(r.windows))]
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    return {"dupes": dupes, "lost": n_videos - len(whole), "unreadable": unreadable}


def trial(n: int, at_s: float, config: Path, inputs: Path, work: Path, args) -> dict:
    out, temp = work / f"out{n}", work / f"temp{n}"
    temp.mkdir()
    cmd = command(config, inputs, out, args.workers)
    proc = start(cmd, temp)
    try:
        proc.wait(timeout=at_s)
        finished = True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = False
    landed = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    partial, scratch = leftovers(out, temp)
    resumed = start(cmd, temp)
    rc = resumed.wait(timeout=600)
    left_partial, left_scratch = leftovers(out, temp)
    rewritten = sum((out / name).read_bytes() != data for name, data in landed.items())
    result = {
        "trial": n, "kill_s": round(at_s, 2), "finished": finished, "landed": len(landed),
        "partial": len(partial), "scratch": len(scratch),
        "left_partial": len(partial & left_partial), "left_scratch": len(scratch & left_scratch),
        "rewritten": rewritten, "rc": rc, **check(out, args.videos),
    }  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(temp, ignore_errors=True)
    return result


def run_trials(args) -> list[dict]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-trials-", dir=args.work))
    try:
        site = work / "site"
        site.mkdir()
        mediagen.make_video(site / "v.mp4", 11.0, audio="speech", width=320, height=180)
        mediagen.write_auto_vtt(site / "v.en.vtt", mediagen.make_words(11.0, seed=1))
        for i in range(args.videos):
            shutil.copy(site / "v.mp4", site / f"v{i}.mp4")
        config = write_config(work / "pipelines.yaml", args.sleep_s)
        with LocalServer(site) as srv:
            rows = [f"{srv.url(f'v{i}.mp4')},{srv.url('v.en.vtt')}" for i in range(args.videos)]
            inputs = work / "in.csv"
            inputs.write_text("url,captions\n" + "\n".join(rows) + "\n")
            (work / "temp").mkdir()
            began = time.monotonic()
            proc = start(command(config, inputs, work / "whole", args.workers), work / "temp")
            if proc.wait(timeout=600) != 0:
                raise SystemExit("the uninterrupted run failed")
            whole_s = time.monotonic() - began
            print(f"uninterrupted run: {whole_s:.1f} s", flush=True)  # noqa: T201
            results = []
            for n in range(args.trials):
                results.append(trial(n, rng.uniform(0.2, whole_s), config, inputs, work, args))
                print(json.dumps(results[-1]), flush=True)  # noqa: T201
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.kill_trials", description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sleep-s", type=float, default=1.0, help="pause before each download")
    parser.add_argument("--work", default=None, help="folder for the trials' files")
    args = parser.parse_args(argv)
    results = run_trials(args)
    totals = {k: sum(r[k] for r in results) for k in (*COUNTS, "unreadable")}
    totals |= {
        "trials": len(results),
        "killed": sum(not r["finished"] for r in results),
        "resume_failed": sum(r["rc"] != 0 for r in results),
    }
    print(json.dumps(totals))  # noqa: T201
    bad = ("left_partial", "left_scratch", "dupes", "lost", "rewritten", "unreadable")
    return 1 if totals["resume_failed"] or any(totals[k] for k in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
