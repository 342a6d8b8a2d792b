"""`make demo`: the whole Montage job on a generated narrated corpus, on one machine.

    corpus  generate narrated videos (espeak-ng speech, rendered pictures, ASR-style VTT)
    serve   serve them on 127.0.0.1, in the form yt-dlp downloads
    ingest  the Beam pipeline, local profile: yt-dlp -> aligned windows -> shards + manifest
    align   print what was aligned for one window (words, times, segments, sub-segments)
    tokens  `python -m model tokenizer`: a byte-level BPE learned from the training transcripts,
            written beside the training shards (training's `data.tokenizer: auto` takes it)
    inspect `python -m shards inspect` and `verify` on the shards
    train   `train.py fit` with configs/tiny.yaml + configs/demo.yaml on the CPU, validating on
            the held-out videos
    eval    zero-shot retrieval on the held-out videos (never trained on), beside chance
    show    the `shards show` picture of one held-out window

Every stage says what it does and how long it took; outputs go under --out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("demo")
ROOT = Path(__file__).resolve().parent
WINDOW_SEGMENTS = 4  # 20 s windows: more held-out windows to retrieve among than 80 s ones
# 64 videos to train on: with 32 the tiny model memorises its training windows and held-out
# recall stops rising after ~300 steps. 16 held out: 64 windows to retrieve among.
DEFAULT_VIDEOS, DEFAULT_HELDOUT = 80, 16
# configs/tiny.yaml, then the demo's changes to it
DEMO_CONFIGS = (ROOT / "configs" / "tiny.yaml", ROOT / "configs" / "demo.yaml")


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


def build_shards(
    st: Stages,
    out: Path,
    videos: int,
    heldout: int,
    seed: int = 0,
    duration_s: float = 80.0,
    config: Path = ROOT / "pipelines.yaml",
) -> Path | None:
    """Stages corpus, serve, ingest and tokens: ``out/corpus`` -> ``out/shards/{train,heldout}``
    and ``out/shards/train/tokenizer.json``.

    Returns the shards folder, or None when an ingest run failed. A second call on the same
    ``out`` renders nothing and downloads nothing: finished videos are kept and the
    manifest skips what is done.
    """
    from tqdm import tqdm

    from devtools.demo_corpus import generate_corpus, write_inputs
    from devtools.localserve import LocalServer
    from ingest import __main__ as ingest_cli

    corpus_dir, shards_dir = out / "corpus", out / "shards"
    with st.stage(
        "corpus", f"generating {videos} narrated videos of {duration_s:.0f} s in {corpus_dir}"
    ):
        # redrawn in place on a terminal; in a log (CI), a line every 30 s
        every = 0.1 if sys.stderr.isatty() else 30.0
        with tqdm(total=videos, unit="video", leave=False, mininterval=every) as bar:
            index = generate_corpus(
                corpus_dir,
                videos,
                seed=seed,
                duration_s=duration_s,
                heldout=heldout,
                workers=2,
                progress=lambda _video: bar.update(),
            )
        print(
            f"    {len(index.split('train'))} for training, {len(index.split('heldout'))} held out"
        )

    with LocalServer(corpus_dir) as server:
        with st.stage("serve", f"serving the corpus at {server.base_url}"):
            lists = {
                s: write_inputs(corpus_dir, server.base_url, s, "pages")
                for s in ("train", "heldout")
            }
            for split, path in lists.items():
                print(f"    {split}: {path}")
        for split in ("train", "heldout"):
            target = shards_dir / split
            with st.stage(
                f"ingest:{split}", f"Beam (local profile): {lists[split].name} -> {target}"
            ):
                rc = ingest_cli.main(
                    [
                        *("run", "--profile", "local", "--config", str(config)),
                        *("--input", str(lists[split]), "--output", str(target)),
                        *("--set", "ingest.shards.videos_per_group=4"),
                        *("--set", f"ingest.segments.window_segments={WINDOW_SEGMENTS}"),
                        *("--set", f"ingest.segments.window_stride={WINDOW_SEGMENTS}"),
                    ]
                )
                if rc != 0:
                    return None
    with st.stage("tokens", "python -m model tokenizer: a BPE from the training transcripts"):
        if train_tokenizer(shards_dir / "train") != 0:
            return None
    return shards_dir


def train_tokenizer(train_shards: Path) -> int:
    """`python -m model tokenizer` on the training shards, reporting truncation at the
    tiny preset's max_text_len."""
    from model.cli import main as model_cli
    from model.config import ModelConfig

    max_len = ModelConfig.from_name("tiny").max_text_len
    return model_cli.main(["tokenizer", str(train_shards), "--max-text-len", str(max_len)])


def run(args: argparse.Namespace) -> int:
    from shards import layout, reader
    from shards.cli import main as shards_cli

    out: Path = args.out.resolve()  # every path handed to a subprocess is absolute
    st = Stages()
    step: Callable[[str, str], object] = st.stage
    shards_dir = build_shards(
        st, out, args.videos, args.heldout, args.seed, args.duration_s, args.config
    )
    if shards_dir is None:
        return 1

    with step("align", "one aligned window, as the shards hold it"):
        first = next(reader.iter_samples(layout.expand(str(shards_dir / "train"))[0]))
        print(format_window(first))

    with step("inspect", "python -m shards inspect / verify"):
        for split in ("train", "heldout"):
            if shards_cli.main(["inspect", "--summary", str(shards_dir / split)]) != 0:
                return 1
            if shards_cli.main(["verify", "-q", str(shards_dir / split)]) != 0:
                return 1

    runs = out / "runs"
    with step(
        "train",
        f"train.py fit --config configs/tiny.yaml --config configs/demo.yaml "
        f"({args.steps} steps, CPU) -> {runs}",
    ):
        rc = train(shards_dir, runs, args.steps)
        if rc != 0:
            return rc

    with step("eval", "zero-shot retrieval on held-out windows (the last validation)"):
        print(retrieval_table(last_validation(runs)))

    with step("show", f"shards show -> {out / 'sample.png'} (and sample.wav)"):
        shards_cli.main(
            [
                "show",
                str(shards_dir / "heldout"),
                "--index",
                "0",
                "--out",
                str(out / "sample.png"),
                "--wav",
                str(out / "sample.wav"),
            ]
        )

    print("\n" + st.report())
    write_receipt(out, args)
    return 0


RECEIPT = "demo-complete.json"


def source_state() -> str | None:
    """The commit and uncommitted changes of this checkout, as one hash (None outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        diff = subprocess.run(
            ["git", "diff", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        untracked = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return hashlib.sha256((head + diff + untracked).encode()).hexdigest()


def write_receipt(out: Path, args: argparse.Namespace) -> None:
    """What this finished run was made from: the learning test accepts it as its evidence
    instead of running the demo again, when the source and the sizes are the same."""
    receipt = {
        "source": source_state(),
        "videos": args.videos,
        "heldout": args.heldout,
        "steps": args.steps,
        "duration_s": args.duration_s,
        "seed": args.seed,
    }
    (out / RECEIPT).write_text(json.dumps(receipt, indent=1) + "\n")


def read_receipt(out: Path) -> dict | None:
    """The receipt of a finished run in ``out`` made from this very source, else None."""
    try:
        receipt = json.loads((out / RECEIPT).read_text())
    except (OSError, ValueError):
        return None
    state = source_state()
    return receipt if state is not None and receipt.get("source") == state else None


def train(
    shards_dir: Path,
    runs: Path,
    steps: int,
    configs: tuple[Path, ...] = DEMO_CONFIGS,
    extra: tuple[str, ...] = (),
) -> int:
    """`train.py fit` in its own process (the way users run it), with ``runs`` as its
    default_root_dir: checkpoints/, tensorboard/ and csv/ go there."""
    cmd = [sys.executable, str(ROOT / "train.py"), "fit"]
    for config in configs:  # later files change earlier ones
        cmd += ["--config", str(config)]
    cmd += [
        *("--data.train_shards", str(shards_dir / "train")),
        *("--data.val_shards", str(shards_dir / "heldout")),
        f"--trainer.max_steps={steps}",
        f"--trainer.default_root_dir={runs.resolve()}",
        *extra,
    ]
    # One BLAS/OpenMP thread per process: the loader worker and the model share two cores.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(cmd, env=env).returncode


def last_validation(runs: Path) -> dict[str, float]:
    """The last row of the CSV log that holds validation retrieval figures."""
    files = sorted(runs.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no metrics.csv under {runs}")
    rows = [r for r in csv.DictReader(files[-1].open()) if r.get("val/t2v_r1")]
    if not rows:
        raise SystemExit(f"{files[-1]} has no validation row")
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


def retrieval_table(metrics: dict[str, float]) -> str:
    """Recall@k and median rank per direction the run logged, with what chance would give
    (still frames: over the held-out stills)."""
    from model.eval.evaluation import SHORT

    n = metrics.get("val/n", 0.0)
    stills = metrics.get("val/n_stills", 0.0)
    lines = [
        f"    {int(n)} held-out windows; chance: R@1 {1 / n:.3f}, R@5 {min(5 / n, 1):.3f}, "
        f"R@10 {min(10 / n, 1):.3f}, median rank {(n + 1) / 2:.1f}"
        if n
        else "    no windows",
        f"    {'direction':<14} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'median rank':>12}  R@1 / chance",
    ]
    for name, key in SHORT.items():
        if f"val/{key}_r1" not in metrics:
            continue
        r1, among = metrics[f"val/{key}_r1"], stills if "image" in name else n
        lines.append(
            f"    {name:<14} {r1:6.3f} {metrics[f'val/{key}_r5']:6.3f} {metrics[f'val/{key}_r10']:6.3f} "
            f"{metrics[f'val/{key}_medr']:12.1f}  {r1 * among:5.1f}x"
        )
    if stills:
        lines.append(f"    (image <-> text: each of {int(stills)} held-out still frames alone)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help="videos in all")
    p.add_argument("--heldout", type=int, default=DEFAULT_HELDOUT, help="of them, held out")
    p.add_argument("--steps", type=int, default=600, help="training steps")
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
