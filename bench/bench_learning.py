"""Held-out zero-shot recall@1 against training steps, per config: how fast each one learns.

    python bench/bench_learning.py --out /tmp/learning --videos 80 --heldout 16 --steps 600
                                       # the four default rows at the demo's size, this CPU
    python bench/bench_learning.py --out /tmp/learning --report-only   # tables again
    python bench/bench_learning.py --out /tmp/learning --videos 288 --heldout 32 \\
        --steps 3000 --val-every 250 \\
        --run tiny=configs/tiny.yaml+configs/demo.yaml \\
        --run base=configs/base.yaml+configs/demo-base.yaml      # one GPU
    python bench/bench_learning.py --out /tmp/learning --steps 200 --run merlot  # a named run
    python bench/bench_learning.py --out /tmp/learning --steps 300 --run span-one-sequence

The corpus is `make demo`'s (demo.py: generated narrated videos, served on 127.0.0.1,
ingested by the Beam pipeline into 20 s windows), larger by default; a second call with
the same --out renders and downloads nothing. Each --run trains its configs (read left
to right, as `train.py fit --config A --config B`) for --steps, validating on the
held-out windows every --val-every steps, each run in its own folder under OUT/runs.
A run named alone (`--run merlot`) is one of RUNS; without --run, the default
rows run.

The default rows: the span objective alone with Reserve's recipe (`span`) and with the
recipe Montage used before (`span-legacy`), the combinatorial loss alone (the demo's
objective, `combinatorial`), and the two together (`span+combinatorial`); the configs
that turn the demo's objective into the others are in bench/configs/.

The baseline, measured on the same held-out windows, is chance: recall@1 = 1 / windows,
and for each span term its value when every score is equal (`val/span/chance/<term>`).
Writes OUT/learning.csv (run, step, direction, r1, r1 / chance, median rank),
OUT/speed.csv (seconds per training step: the median of `perf/step_s`, and CPU seconds
of the training process per step, validation included), OUT/span_terms.csv (each span
term on the held-out windows at the last validation, beside chance, with the mean cosine
between its rows' queries and between their targets; a term at chance with either near 1
has collapsed) and OUT/learning.png (recall@1 / chance against steps), and prints the
tables.
Still frames (image <-> text) count chance over the stills. An objective that logs
a `chance` term (fac) gets its held-out loss printed beside it; objectives that log
more than retrieval (MERLOT: MLM and reordering losses and accuracies) get
OUT/objectives.csv, each such metric at the first training log and at every
validation, beside its chance level where it has one.
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script too

import demo  # noqa: E402

# Named runs: NAME -> configs, read left to right (`--run NAME`).
RUNS = {
    "tiny": demo.DEMO_CONFIGS,
    "merlot": (*demo.DEMO_CONFIGS, ROOT / "configs" / "merlot.yaml"),
    "fac": (*demo.DEMO_CONFIGS, ROOT / "configs" / "fac.yaml"),
}

# Metrics objectives log besides their loss (`train/...`, `val/...`), with their chance level
# (None: judged against their first logged value).
OBJECTIVE_METRICS = {
    "merlot/match": None,
    "merlot/mlm": None,
    "merlot/mlm_acc": None,
    "merlot/order": None,
    "merlot/order_acc": 0.5,  # two classes, balanced over pairs
}

DIRECTIONS = {
    "t2v": "text->video",
    "v2t": "video->text",
    "a2v": "audio->video",
    "v2a": "video->audio",
    "t2a": "text->audio",
    "a2t": "audio->text",
    "t2va": "text->fused",  # Everything at Once's text -> video + audio
    "i2t": "image->text",  # still frames through the video pathway (deflation)
    "t2i": "text->image",
}
STILLS = ("i2t", "t2i")  # scored over still frames (val/n_stills), not windows (val/n)


def parse_run(text: str) -> tuple[str, tuple[Path, ...]]:
    """``NAME=A.yaml+B.yaml`` -> (NAME, (A, B)), paths taken from the repository root; or a
    name of RUNS alone."""
    if text in RUNS:
        return text, RUNS[text]
    name, sep, files = text.partition("=")
    if not sep or not name or not files:
        raise argparse.ArgumentTypeError(f"expected NAME=CONFIG[+CONFIG...], got {text!r}")
    paths = tuple(p if p.is_absolute() else ROOT / p for p in map(Path, files.split("+")))
    for p in paths:
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{text!r}: no such config {p}")
    return name, paths


SPAN_TERMS = ("frame", "audio", "text")
BENCH = ROOT / "bench" / "configs"
DEFAULT_RUNS = {
    "span": (*demo.DEMO_CONFIGS, BENCH / "span.yaml"),
    "span-legacy": (*demo.DEMO_CONFIGS, BENCH / "span-legacy.yaml"),
    "combinatorial": demo.DEMO_CONFIGS,
    "span+combinatorial": (*demo.DEMO_CONFIGS, BENCH / "span-combinatorial.yaml"),
}
RUNS |= DEFAULT_RUNS
# the span row with one joint sequence per window: where its terms collapse
RUNS["span-one-sequence"] = (*DEFAULT_RUNS["span"], BENCH / "span-one-sequence.yaml")


def logged_rows(runs: Path) -> list[dict[str, float]]:
    """Every row of the run's CSV log (newest log), numbers only."""
    files = sorted(runs.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no metrics.csv under {runs}")
    return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(files[-1].open())]


def validation_rows(runs: Path) -> list[dict[str, float]]:
    """Every CSV row with validation retrieval figures, in step order (newest log)."""
    return [r for r in logged_rows(runs) if "val/t2v_r1" in r]


def objective_rows(results: dict[str, list[dict[str, float]]]) -> list[dict[str, object]]:
    """OBJECTIVE_METRICS against steps: the first training value of each, then every
    validation value (logged rows of each run, as logged_rows gives them)."""
    out = []
    for name, rows in results.items():
        for metric, chance in OBJECTIVE_METRICS.items():
            train = [r for r in rows if f"train/{metric}" in r][:1]
            points = [("train", r, r[f"train/{metric}"]) for r in train]
            points += [("val", r, r[f"val/{metric}"]) for r in rows if f"val/{metric}" in r]
            for split, r, value in points:
                out.append(
                    {
                        "run": name,
                        "step": int(r["step"]) + 1,
                        "split": split,
                        "metric": metric,
                        "value": round(value, 4),
                        "chance": "" if chance is None else chance,
                    }
                )
    return out


def span_terms(name: str, rows: list[dict[str, float]]) -> list[dict[str, object]]:
    """Each span term on the held-out windows at the last validation, beside chance."""
    last = [r for r in rows if "val/span/frame" in r]
    if not last:
        return []
    r = last[-1]
    return [
        {
            "run": name,
            "step": int(r["step"]) + 1,
            "term": term,
            "value": round(r[f"val/span/{term}"], 3),
            "chance": round(r[f"val/span/chance/{term}"], 3),
            "below_chance": round(r[f"val/span/chance/{term}"] - r[f"val/span/{term}"], 3),
            # mean cosine between different rows' queries, and targets: near 1, collapsed
            **{
                f"{side}_cos": round(r[key], 3)
                if (key := f"val/span/cos/{side}/{term}") in r
                else ""
                for side in ("query", "target")
            },
        }
        for term in SPAN_TERMS
        if f"val/span/chance/{term}" in r
    ]


def speed(name: str, rows: list[dict[str, float]], cpu_s: float | None, steps: int) -> dict:
    """Seconds per training step: the median logged wall time, CPU seconds when measured."""
    step_s = [r["perf/step_s"] for r in rows if "perf/step_s" in r]
    return {
        "run": name,
        "steps": steps,
        "wall_s_per_step": round(statistics.median(step_s), 3) if step_s else "",
        "cpu_s_per_step": round(cpu_s / steps, 3) if cpu_s is not None else "",
    }


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    if rows:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def table(results: dict[str, list[dict[str, float]]]) -> list[dict[str, object]]:
    out = []
    for name, rows in results.items():
        for r in rows:
            for short, direction in DIRECTIONS.items():
                if f"val/{short}_r1" not in r:
                    continue
                n = r["val/n_stills"] if short in STILLS else r["val/n"]
                r1 = r[f"val/{short}_r1"]
                out.append(
                    {
                        "run": name,
                        "step": int(r["step"]) + 1,  # Lightning logs the 0-based step index
                        "direction": direction,
                        "windows": int(n),
                        "r1": round(r1, 4),
                        "r1_vs_chance": round(r1 * n, 2),
                        "median_rank": r[f"val/{short}_medr"],
                    }
                )
    return out


def chance_losses(
    results: dict[str, list[dict[str, float]]],
) -> list[tuple[str, int, str, float, float]]:
    """(run, step, objective, held-out loss, its value at chance) for every objective that
    logs a `chance` term."""
    out = []
    for name, rows in results.items():
        for r in rows:
            for key in sorted(k for k in r if k.startswith("val/") and k.endswith("/chance")):
                objective = key.removeprefix("val/").removesuffix("/chance")
                if f"val/{objective}" in r:
                    out.append((name, int(r["step"]) + 1, objective, r[f"val/{objective}"], r[key]))
    return out


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = (
        ("text->video", "video->text"),
        ("audio->video", "video->audio"),
        ("text->audio", "audio->text"),
        ("text->fused", "image->text"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharey=True)
    axes = axes.flatten()
    for ax, directions in zip(axes, pairs, strict=True):
        for run in dict.fromkeys(r["run"] for r in rows):
            for direction, style in zip(directions, ("-o", "--s"), strict=True):
                pts = [r for r in rows if r["run"] == run and r["direction"] == direction]
                if pts:
                    ax.plot(
                        [p["step"] for p in pts],
                        [p["r1_vs_chance"] for p in pts],
                        style,
                        label=f"{run} {direction}",
                    )
        ax.axhline(1.0, color="grey", lw=1, ls=":", label="chance")
        ax.set_xlabel("training step")
        ax.set_title(" / ".join(directions))
        ax.legend(fontsize=8)
    for ax in axes[::2]:
        ax.set_ylabel("held-out recall@1 / chance")
    n = rows[0]["windows"] if rows else 0
    fig.suptitle(f"Zero-shot retrieval on {n} held-out windows (chance R@1 = 1/{n})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--videos", type=int, default=160, help="videos in all")
    p.add_argument("--heldout", type=int, default=32, help="of them, held out")
    p.add_argument("--duration-s", type=float, default=80.0)
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument(
        "--run",
        type=parse_run,
        action="append",
        help="NAME=CONFIG[+CONFIG...] (repeatable); default: the four rows of the module doc",
    )
    p.add_argument(
        "--train-arg",
        action="append",
        default=[],
        help="one more train.py argument for every run, e.g. --train-arg=--trainer.devices=1",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: the tables and plot of the runs already under OUT/runs",
    )
    args = p.parse_args(argv)
    runs = dict(args.run or DEFAULT_RUNS)

    st = demo.Stages()
    cpu: dict[str, float] = {}
    if args.report_only:
        runs = {n: c for n, c in runs.items() if (args.out / "runs" / n / "csv").is_dir()}
        if not runs:
            raise SystemExit(f"no runs under {args.out / 'runs'}")
    else:
        shards = demo.build_shards(
            st, args.out, args.videos, args.heldout, args.seed, args.duration_s
        )
        if shards is None:
            return 1
    for name, configs in runs.items():
        if args.report_only:
            continue
        with st.stage(
            f"train:{name}", f"{' + '.join(c.name for c in configs)}, {args.steps} steps"
        ):
            started, cpu_before = time.monotonic(), children_cpu_s()
            extra = (
                f"--trainer.val_check_interval={args.val_every}",
                "--trainer.check_val_every_n_epoch=null",
                "--trainer.num_sanity_val_steps=0",
                *args.train_arg,
            )
            rc = demo.train(shards, args.out / "runs" / name, args.steps, configs, extra)
            if rc != 0:
                return rc
            cpu[name] = children_cpu_s() - cpu_before
            print(f"    {name}: {args.steps / (time.monotonic() - started):.2f} steps/s")
    logs = {name: logged_rows(args.out / "runs" / name) for name in runs}
    results = {name: [r for r in rows if "val/t2v_r1" in r] for name, rows in logs.items()}
    rows = table(results)
    steps = {name: int(max(r["step"] for r in log)) + 1 for name, log in logs.items()}
    speeds = [speed(n, logs[n], cpu.get(n), steps[n]) for n in runs]
    terms = [t for n in runs for t in span_terms(n, logs[n])]
    write_csv(rows, args.out / "learning.csv")
    write_csv(speeds, args.out / "speed.csv")
    write_csv(terms, args.out / "span_terms.csv")
    plot(rows, args.out / "learning.png")
    print(f"\nheld-out recall@1 (x chance), {rows[0]['windows']} windows:")
    width = max(8, *(len(n) for n in results))
    header = f"{'run':<{width}} {'step':>6}  " + "  ".join(f"{d:>18}" for d in DIRECTIONS.values())
    print(header)
    for name in results:
        for step in dict.fromkeys(r["step"] for r in rows if r["run"] == name):
            cells = {r["direction"]: r for r in rows if r["run"] == name and r["step"] == step}
            line = "  ".join(
                f"{cells[d]['r1']:8.3f} ({cells[d]['r1_vs_chance']:5.1f}x)"
                if d in cells
                else " " * 18
                for d in DIRECTIONS.values()
            )
            print(f"{name:<{width}} {step:>6}  {line}")
    print("\nseconds per training step (wall: median of perf/step_s; CPU: whole run / steps):")
    for s in speeds:
        print(
            f"{s['run']:<{width}} {s['wall_s_per_step']!s:>8} wall  {s['cpu_s_per_step']!s:>8} CPU"
        )
    if terms:
        print(
            "\nspan terms on the held-out windows at the last validation (nats), and the mean"
            "\ncosine between different rows' queries and their targets (a term at chance"
            "\nwith either near 1 has collapsed):"
        )
        for t in terms:
            print(
                f"{t['run']:<{width}} {t['term']:<6} {t['value']:7.3f}  chance {t['chance']:7.3f}"
                f"  below chance {t['below_chance']:6.3f}"
                f"  cosines {t['query_cos']!s:>6} {t['target_cos']!s:>6}"
            )
    extra = objective_rows(logs)
    if extra:
        write_csv(extra, args.out / "objectives.csv")
        print("\nobjective metrics (first training log, then each validation):")
        for r in extra:
            chance = f"  (chance {r['chance']})" if r["chance"] != "" else ""
            print(
                f"{r['run']:<{width}} {r['step']:>6} {r['split']:<5} {r['metric']:<18}"
                f" {r['value']:8.4f}{chance}"
            )
    losses = chance_losses(results)
    if losses:
        print("\nheld-out loss beside its value at chance (all scores equal):")
        for name, step, objective, value, level in losses:
            print(f"{name:<{width}} {step:>6}  {objective:<8} {value:8.3f}  chance {level:8.3f}")
    print(f"\nwrote learning.csv, speed.csv, span_terms.csv and learning.png in {args.out}")
    if st.report().strip():
        print("\n" + st.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
