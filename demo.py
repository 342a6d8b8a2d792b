"""`make demo`: the whole Montage job on a generated narrated corpus, on one machine.

    corpus  generate narrated videos (espeak-ng speech, rendered pictures, ASR-style VTT)
    serve   serve them on 127.0.0.1, in the form yt-dlp downloads
    ingest  the Beam pipeline, local profile: yt-dlp -> aligned windows -> shards + manifest
    align   print what was aligned for one window (words, times, segments, sub-segments)

Every stage says what it does and how long it took; outputs go under --out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("demo")


class Stages:
    """Runs named stages in order, printing a line before and after each."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        print(f"\n==> [{name}] {what}", flush=True)
        started = time.monotonic()
        yield
        self.times[name] = time.monotonic() - started
        print(f"    [{name}] done in {self.times[name]:.1f} s", flush=True)

    def report(self) -> str:
        rows = [f"  {name:<10} {secs:7.1f} s" for name, secs in self.times.items()]
        return (
            "stage times:\n"
            + "\n".join(rows)
            + f"\n  {'total':<10} {sum(self.times.values()):7.1f} s"
        )


def format_window(sample) -> str:
    """A window's words by segment and sub-segment, with times: what the model will see."""
    m = sample.meta
    lines = [
        f"{m.key}  '{m.title}'  [{m.start_ms / 1000:.1f} s, {m.end_ms / 1000:.1f} s)  "
        f"{m.n_segments} segments, {len(m.words)} words, audio {'yes' if m.has_audio else 'no'}",
    ]
    for i, (s, e) in enumerate(m.segments):
        words = [w for w in m.words if w.segment == i]
        parts = []
        for sub in range(m.params.subsegments):
            text = " ".join(
                f"{w.text}@{w.start_ms / 1000:.2f}" for w in words if w.subsegment == sub
            )
            parts.append(text or "-")
        lines.append(f"  seg {i:2d} [{s / 1000:6.1f}, {e / 1000:6.1f})  " + " | ".join(parts))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ingest import __main__ as ingest_cli
    from ingest.demo_corpus import generate_corpus, write_inputs
    from ingest.localserve import LocalServer
    from shards import reader

    out: Path = args.out
    corpus_dir, shards_dir = out / "corpus", out / "shards"
    st = Stages()
    step: Callable[[str, str], object] = st.stage

    with step(
        "corpus",
        f"generating {args.videos} narrated videos of {args.duration_s:.0f} s in {corpus_dir}",
    ):
        index = generate_corpus(
            corpus_dir,
            args.videos,
            seed=args.seed,
            duration_s=args.duration_s,
            heldout=args.heldout,
            workers=2,
        )
        print(
            f"    {len(index.split('train'))} for training, {len(index.split('heldout'))} held out"
        )

    with LocalServer(corpus_dir) as server:
        with step("serve", f"serving the corpus at {server.base_url}"):
            lists = {
                s: write_inputs(corpus_dir, server.base_url, s, "txt") for s in ("train", "heldout")
            }
            for split, path in lists.items():
                print(f"    {split}: {path}")
        for split in ("train", "heldout"):
            target = shards_dir / split
            with step(f"ingest:{split}", f"Beam (local profile): {lists[split].name} -> {target}"):
                rc = ingest_cli.main(
                    [
                        "run",
                        "--profile",
                        "local",
                        "--input",
                        str(lists[split]),
                        "--output",
                        str(target),
                        "--config",
                        str(args.config),
                        "--set",
                        "ingest.shards.videos_per_group=4",
                    ]
                )
                if rc != 0:
                    return rc

    with step("align", "one aligned window, as the shards hold it"):
        first = next(reader.iter_samples(reader.expand(str(shards_dir / "train"))[0]))
        print(format_window(first))

    print("\n" + st.report())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--heldout", type=int, default=6)
    p.add_argument("--duration-s", type=float, default=80.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--config", type=Path, default=Path(__file__).resolve().parent / "pipelines.yaml"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
