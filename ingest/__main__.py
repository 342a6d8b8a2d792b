"""`python -m ingest run`: run the ingest pipeline with a profile from pipelines.yaml;
`python -m ingest doctor`: say what a YouTube run needs and what is missing.

    python -m ingest doctor
    python -m ingest run --profile local --input videos.txt --output out/
    python -m ingest run --profile local --input videos.txt --output out/ --retry-failed
    python -m ingest run --profile dataflow --input gs://b/list.txt --output gs://b/shards \\
        --project P --region R --temp_location gs://b/tmp --sdk_container_image IMAGE

Any flag `run` does not know is passed to Beam as a pipeline option. Before it builds
the pipeline, `run` checks what it is about to use (`ingest.preflight`) and stops with
one line per missing piece: the runner's extra and the input and output filesystems;
on a local runner also ffmpeg, the cookies file and proxy, and, when the inputs name
YouTube videos, yt-dlp's JavaScript runtime, challenge solver and impersonation.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from typing import TextIO

# Idle OpenBLAS threads spin: one BLAS thread per worker process is faster here, and
# the workers inherit this environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ingest import doctor, preflight
from ingest.config import ConfigError
from ingest.inputs import InputError, read_inputs

log = logging.getLogger("ingest")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="download, align and shard a list of videos")
    run.add_argument("--input", required=True, help="list of ids/URLs (.txt, .csv, .tsv, .parquet)")
    run.add_argument("--output", required=True, help="output folder or URL (gs://, s3://)")
    run.add_argument("--profile", default="local", help="runner profile in pipelines.yaml")
    run.add_argument(
        "--config",
        default=None,
        help="pipelines.yaml to use (default: the one shipped with ingest)",
    )
    run.add_argument(
        "--retry-failed", action="store_true", help="rerun only videos whose row failed"
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one pipelines.yaml value, e.g. ingest.filters.min_words_per_window=20",
    )
    run.add_argument("--run-id", default=None, help="name of this run in the manifest")
    run.add_argument("-v", "--verbose", action="store_true")
    doctor.add_arguments(sub.add_parser("doctor", help=doctor.HELP))
    args, beam_args = parser.parse_known_args(argv)
    if args.command == "doctor" and beam_args:
        parser.error(f"doctor: unrecognized arguments: {' '.join(beam_args)}")
    return args, beam_args


def summary(output: str, started: float, counters: dict[str, int] | None = None) -> str:
    """What the run made, from the output's rows; ``counters``: the download step's
    pacing, breaker and proxy counts (`ingest.gate.COUNTERS`), shown when the site
    pushed back or a worker waited, tripped or rotated."""
    from shards import manifest

    rows = manifest.load_state(output).values()
    by_status = collections.Counter(r.status for r in rows)
    reasons = collections.Counter(f"{r.status}:{r.reason}" for r in rows if r.status != "ok")
    ok = [r for r in rows if r.status == "ok"]
    shards = {s for r in ok for s in r.shards}
    hours = sum(r.duration_ms for r in ok) / 3.6e6
    lines = [
        f"montage ingest: {sum(by_status.values())} videos in {time.monotonic() - started:.1f} s -> {output}",
        "  " + ", ".join(f"{k} {by_status.get(k, 0)}" for k in ("ok", "skipped", "failed")),
        f"  {sum(r.windows for r in ok)} windows, {sum(r.words for r in ok)} words, "
        f"{hours:.2f} h of video, {len(shards)} shards, {sum(r.bytes for r in ok) / 1e6:.1f} MB",
    ]
    lines += [f"  {n:6d}  {reason}" for reason, n in reasons.most_common(10)]
    c = collections.Counter(counters or {})
    if any(n for name, n in c.items() if name != "download_attempts"):  # quiet otherwise
        lines.append(
            f"  site: {c['download_attempts']} attempts, {c['pushed_back']} pushed back "
            f"(429 / sign-in); waited {c['pacing_wait_ms'] / 1000:.1f} s for the budget, "
            f"{c['breaker_wait_ms'] / 1000:.1f} s with the breaker open ({c['breaker_trips']} "
            f"trips, {c['breaker_skipped']} videos left for --retry-failed); "
            f"{c['proxy_rotations']} proxy rotations"
        )
    return "\n".join(lines)


def gate_counters(result) -> dict[str, int]:
    """The download step's counters (`ingest.gate.COUNTERS`) of a finished pipeline."""
    from apache_beam.metrics.metric import MetricsFilter

    from ingest import METRICS
    from ingest.gate import COUNTERS

    found: dict[str, int] = dict.fromkeys(COUNTERS, 0)
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS))["counters"]
    except (AttributeError, NotImplementedError, KeyError, ValueError):
        # a runner without metrics, or a job that was only written (Dataflow's
        # --template_location: "Job id is unknown")
        return found
    for c in counters:
        if c.key.metric.name in found:
            value = c.committed if c.committed is not None else c.attempted
            found[c.key.metric.name] += int(value or 0)
    return found


class _QuietBeam(logging.Filter):
    """Without -v, Beam's records below ERROR stay out of the terminal: runner start-up,
    the notices its imports log about optional Google Cloud clients, and the worker log
    lines its job service relays. Montage's own warnings pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_beam = record.name.startswith("apache_beam") or f"{os.sep}apache_beam{os.sep}" in (
            record.pathname or ""
        )
        return record.levelno >= logging.ERROR or not from_beam


@contextlib.contextmanager
def workers_output_to(path: str) -> Iterator[TextIO]:
    """Point file descriptor 2 at ``path`` while the pipeline runs, and yield a stream on
    the terminal for this process's own output.

    The local runner's worker processes inherit this process's stderr and log to it at
    INFO from their first line, before any pipeline option reaches them; they write to
    ``path`` instead, which is kept when the run fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    previous, sys.stderr = sys.stderr, terminal
    try:
        yield terminal
    finally:
        terminal.flush()
        sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()


@contextlib.contextmanager
def command_logging(verbose: bool) -> Iterator[logging.StreamHandler]:
    """The root logger for one command: to stderr, Beam's chatter only with -v. What
    was there before (a caller's own set-up, when run in-process) is put back after."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_QuietBeam())
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield handler
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)


def runner_of(pipeline_args: list[str]) -> str | None:
    for i, arg in enumerate(pipeline_args):
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
        if arg == "--runner" and i + 1 < len(pipeline_args):
            return pipeline_args[i + 1]
    return None


def refused(checks: list[preflight.Check], hint: str = "") -> bool:
    """Print one error line per failed check (``hint`` appended); whether there was one."""
    failed = [c for c in checks if c.failed]
    for check in failed:
        print(f"error: {check.line()}{hint}", file=sys.stderr)  # noqa: T201
    return bool(failed)


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "doctor":
        return doctor.run(args)
    with command_logging(args.verbose) as handler:
        return run(args, beam_args, handler)


def run(args: argparse.Namespace, beam_args: list[str], handler: logging.StreamHandler) -> int:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from ingest import config, pacing, proxies
    from ingest.pipeline import build_pipeline
    from ingest.progress import LOCAL_RUNNERS, ProgressBar
    from shards.manifest import new_run_id

    try:
        settings = config.load(args.config, args.overrides)
        pipeline_args = settings.profile(args.profile).pipeline_args(beam_args)
        # decided here, once: the workers share no memory and may not have the file
        download = pacing.for_run(proxies.for_run(settings.ingest.download), pipeline_args)
        ingest_cfg = dataclasses.replace(settings.ingest, download=download)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    runner = runner_of(pipeline_args)
    local = runner in LOCAL_RUNNERS
    if refused(preflight.launch_checks(runner, [args.input, args.output])):
        return 2
    try:
        # fail now, with a clear message: a list that is missing, unreadable or empty
        total, youtube = 0, False
        for line in read_inputs(args.input):
            total += 1
            youtube = youtube or preflight.is_youtube(line.url)
        if not total:
            raise InputError(f"{args.input}: lists no videos (expected one id or URL per line)")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    # this machine's workers download: what they need must be here (remote workers have
    # the image's)
    needs = preflight.download_checks(settings.ingest.download, youtube) if local else []
    if refused(needs, " (python -m ingest doctor: all a YouTube run needs)" if youtube else ""):
        return 2
    run = args.run_id or new_run_id()
    print(  # noqa: T201
        f"montage ingest: run {run}, {total} input lines, profile {args.profile} "
        f"({runner}) -> {args.output}" + ("" if args.verbose else "  (-v: runner logs)"),
        file=sys.stderr,
    )
    log.info("pipeline options: %s", " ".join(pipeline_args))
    started = time.monotonic()
    progress = tempfile.mkdtemp(prefix="montage-progress-") if local else None
    fd, runner_log = tempfile.mkstemp(prefix=f"montage-ingest-{run}-", suffix=".log")
    os.close(fd)
    try:
        with contextlib.ExitStack() as stack:
            if local and not args.verbose:
                terminal = sys.stderr
                handler.setStream(stack.enter_context(workers_output_to(runner_log)))
                stack.callback(handler.setStream, terminal)
            if progress:
                stack.enter_context(ProgressBar(progress, total, sys.stderr))
            with beam.Pipeline(options=PipelineOptions(pipeline_args)) as p:
                build_pipeline(
                    p, args.input, args.output, ingest_cfg, run, args.retry_failed, progress
                )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        kept = f"; runner output: {runner_log}" if os.path.getsize(runner_log) else ""
        if not kept:
            os.unlink(runner_log)
        print(f"error: the pipeline failed: {first[:500]}{kept}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        if progress:
            shutil.rmtree(progress, ignore_errors=True)
    os.unlink(runner_log)
    print(summary(args.output, started, gate_counters(p.result)))  # noqa: T201
    return 0


def cli() -> None:
    """The command line's entry: `main`, then leave without interpreter finalization.

    After a run of Beam's local runner (FnApiRunner), daemon threads of its gRPC servers
    and gRPC's own event-engine threads are still alive in this process. Finalizing the
    interpreter under them destroys running C++ threads, which aborts the process
    (SIGABRT, exit 134, "terminate called without an active exception") after correct
    output, about once in 20 runs of a 4-video list here. So once the run's result is
    known and everything is flushed, the process exits with that status directly.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors and --help
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # noqa: T201
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # noqa: T201
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
