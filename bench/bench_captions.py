"""Caption parse time against file size: the linear rolling-caption dedupe against the
quadratic one it replaced, on the same generated files in the same run.

    .venv/bin/python bench/bench_captions.py [--sizes 25 50 100 200 400 800] [--runs 3]

Two shapes of generated YouTube auto-caption file at each size (KB):

- ``youtube``: YouTube's rolling layout (``devtools.mediagen.write_auto_vtt``): two-line
  cues, each repeating the line before it, 10 ms cues between them;
- ``long cues``: one word per line in 2 long cues of plain lines (after one
  word-tagged cue, so the file is read as auto captions). A cue is compared with
  the end of the one before it: the old dedupe's worst case, its cost growing with
  the square of the cue length.

Both algorithms run ``ingest.captions.parse_vtt`` on the same text; only the dedupe
(``captions._repeated``) is swapped. Medians of ``--runs`` runs. The old one is not
run at the larger sizes once its runs at one size took over ``--old-budget-s`` in all.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.captiongen import dedupe, long_cue_vtt, quadratic_repeated
from devtools.mediagen import make_words, write_auto_vtt
from ingest import captions


def youtube_vtt(kb: float, tmp: Path) -> str:
    """A rolling-layout auto-caption file of about `kb` KB (its length in video seconds scaled)."""
    per_second = len(write_auto_vtt(tmp / "probe.vtt", make_words(120)).read_bytes()) / 120
    return write_auto_vtt(tmp / "yt.vtt", make_words(kb * 1024 / per_second)).read_text()


def sized_long_cue_vtt(kb: float) -> str:
    per_line = len(long_cue_vtt(1000).encode()) / 1000
    return long_cue_vtt(int(kb * 1024 / per_line))


def median_s(text: str, runs: int, budget_s: float = float("inf")) -> tuple[float, bool]:
    """Median seconds of parse_vtt(text) over `runs` runs, fewer if one takes over
    `budget_s`; and whether one did."""
    times: list[float] = []
    while len(times) < runs and sum(times) <= budget_s:
        t0 = time.perf_counter()
        captions.parse_vtt(text, "bench.vtt")
        times.append(time.perf_counter() - t0)
    return statistics.median(times), sum(times) > budget_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[25, 50, 100, 200, 400, 800])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--old-budget-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    print(f"{'shape':<10} {'KB':>6} {'lines':>7} {'old s':>9} {'new s':>8} {'old/new':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ("youtube", "long cues"):
            old_alive = True
            for kb in args.sizes:
                if shape == "youtube":
                    text = youtube_vtt(kb, Path(tmp))
                else:
                    text = sized_long_cue_vtt(kb)
                new, _ = median_s(text, args.runs)
                size, lines = len(text.encode()) / 1024, text.count("\n")
                if old_alive:
                    with dedupe(quadratic_repeated):
                        old, over = median_s(text, args.runs, args.old_budget_s)
                    old_alive = not over
                    row = f"{old:9.3f} {new:8.3f} {old / new:8.1f}"
                else:
                    row = f"{'-':>9} {new:8.3f} {'-':>8}"
                print(f"{shape:<10} {size:6.0f} {lines:7d} {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
