"""Pacing achieved against the configured budget, on loopback, beside the unpaced rate.

    .venv/bin/python bench/bench_pacing.py [--workers 2] [--videos 16] [--budget 3600]

``--workers`` threads each stand for one worker of a job: each has its own production
`Downloader` (its own `Gate` and pacer, told there are ``--workers`` workers, as
``pacing.workers``), and downloads ``--videos`` small videos (a 2 s mp4 and its VTT)
from a loopback server that records when each request came. The same is run first
without a budget (the baseline: as fast as the machine goes), then with
``videos_per_hour_per_ip = --budget``. Rates are attempts per minute, from the times
the site saw each worker's video requests (its first video left out: that attempt also
builds yt-dlp's client), per worker, and the job's total (their sum: the workers start
together, so the span of all requests would count one extra attempt per worker).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.localserve import LocalServer
from devtools.mediagen import make_video, make_words, write_auto_vtt
from ingest.config import DownloadConfig, PacingConfig
from ingest.download import Downloader
from ingest.refs import make_ref


def per_minute(times: list[float]) -> float:
    times = sorted(times)
    return 60.0 * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def run(
    root: Path, workers: int, videos: int, budget: float | None, tag: str
) -> tuple[list[float], float]:
    """(each worker's rate, the total rate), attempts per minute, as the site saw them."""
    cfg = DownloadConfig(pacing=PacingConfig(budget, workers), socket_timeout_s=10.0)
    with LocalServer(root) as srv:

        def worker(k: int) -> None:
            dl = Downloader(cfg, root.parent / f"work-{tag}-{k}")
            for i in range(videos):
                ref = make_ref(srv.url(f"{tag}-w{k}-{i}.mp4"), srv.url("clip.en.vtt"))
                with dl.session(ref):
                    pass
            dl.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # from each worker's second video on: its first request also waited for yt-dlp's
        # client to be built, so it reached the site later than the attempt began
        each = [
            [srv.times(f"{tag}-w{k}-{i}.mp4")[0] for i in range(1, videos)] for k in range(workers)
        ]
    rates = [per_minute(t) for t in each]
    return rates, sum(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--videos", type=int, default=16, help="per worker")
    ap.add_argument("--budget", type=float, default=3600.0, help="videos per hour per IP")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        root.mkdir()
        clip = make_video(root / "clip.mp4", 2.0, width=160, height=120, fps=5)
        write_auto_vtt(root / "clip.en.vtt", make_words(2.0))
        for tag in ("free", "paced"):
            for k in range(args.workers):
                for i in range(args.videos):
                    os.link(clip, root / f"{tag}-w{k}-{i}.mp4")
        free_each, free_total = run(root, args.workers, args.videos, None, "free")
        paced_each, paced_total = run(root, args.workers, args.videos, args.budget, "paced")
    target_total = args.budget / 60.0
    target_each = target_total / args.workers
    print(
        f"{args.workers} workers x {args.videos} videos on loopback; budget {args.budget:g} "
        f"videos/h per IP (one IP)\n"
        f"{'':10s} {'per worker (attempts/min)':>34s} {'total':>8s}\n"
        f"{'unpaced':10s} {' '.join(f'{r:7.1f}' for r in free_each):>34s} {free_total:8.1f}\n"
        f"{'paced':10s} {' '.join(f'{r:7.1f}' for r in paced_each):>34s} {paced_total:8.1f}\n"
        f"{'budget':10s} {f'{target_each:7.1f} each':>34s} {target_total:8.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
