"""``python -m shards COMMAND`` (also ``montage-shards``): look at shards without unpacking them.

Commands: ``inspect`` (what is there), ``verify`` (is it whole), ``show`` (one
sample as a picture, and as sound), ``sample`` (a few transcripts). PATH is an
output folder, a brace pattern, a glob, one tar, or an fsspec URL of those.

Exit status: 0 when all went well (for ``verify``: everything is whole); 1 when
the input is missing, damaged or does not match its manifest (one line per
problem, never a traceback); 2 for a malformed command line, or ``show``
without matplotlib (the ``tools`` extra); 130 on Ctrl-C.
Nothing is ever extracted to disk: members are read into memory by name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence

from shards import reader, schema
from shards.cli.locate import LocateError, locate

log = logging.getLogger("shards")

PROG = "montage-shards"


class CommandError(Exception):
    """Ends a command with a one-line message and exit status 1."""


class MissingExtra(Exception):
    """Ends a command that needs an optional dependency: one line, exit status 2."""


TOOLS_EXTRA = "pip install 'montage[tools]'"


def _out(text: str) -> None:
    sys.stdout.write(text)


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from shards.cli.inspection import format_report, inspect_shards

    report = inspect_shards(locate(args.path), quiet=args.quiet)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _out(format_report(report, table=not args.summary))
    for p in report.problems:
        _err(f"{PROG} inspect: {p.shard}: {p.key or '-'}: {p.reason}")
    if report.problems:
        _err(f"{PROG} inspect: {_count(len(report.problems), 'problem')}; `verify` checks all")
        return 1
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from shards.cli.inspection import human_bytes
    from shards.cli.verify import default_workers, verify_shards

    target = locate(args.path)
    workers = args.workers or default_workers()
    report = verify_shards(target, quiet=args.quiet, workers=workers)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        for p in report.problems:
            _out(f"{p}\n")
        manifest = report.manifest or "none beside the shards, not checked"
        verdict = "all whole" if report.ok else _count(len(report.problems), "problem")
        _out(
            f"verify: {_count(report.shards, 'shard')}, {_count(report.samples, 'sample')}, "
            f"{human_bytes(report.bytes)}; manifest: {manifest}; {verdict}\n"
        )
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    try:
        import matplotlib  # noqa: F401 (only checked for here; show imports what it draws with)
    except ImportError:
        raise MissingExtra(
            f"drawing needs matplotlib, which is not installed: {TOOLS_EXTRA}"
        ) from None
    from shards.cli.show import find_sample, render, write_wav

    shard, sample = find_sample(locate(args.path), key=args.key, index=args.index)
    png = render(sample, args.out, shard)
    _out(f"{png}: {sample.key} ({shard})\n")
    if args.wav:
        wav = write_wav(sample, args.wav, n_iter=args.iters)
        _out(f"{wav}: {sample.meta.n_segments * sample.meta.params.segment_ms / 1000:g} s\n")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from shards.cli.sample import format_sample, pick

    width = shutil.get_terminal_size((100, 24)).columns
    found = pick(locate(args.path), args.n, start=args.start, seed=args.seed)
    if not found:
        raise CommandError(f"{args.path}: no samples from position {args.start} on")
    _out("\n".join(format_sample(f, width) for f in found))
    bad = [f for f in found if f.meta is None]
    for f in bad:
        _err(f"{PROG} sample: {f.shard}: {f.key}: {f.error}")
    return 1 if bad else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect, verify and look at Montage shards."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    path_help = "output folder, shard file, brace pattern, glob or fsspec URL"

    p = sub.add_parser("inspect", help="totals, manifest status counts and a per-shard table")
    p.add_argument("path", metavar="PATH", help=path_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--summary", action="store_true", help="totals only, no per-shard table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="read everything; exit 1 if anything is wrong")
    p.add_argument("path", metavar="PATH", help=path_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="shards checked at once (default: one per CPU)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("show", help="draw one sample (frames, log-mel, words) into a PNG")
    p.add_argument("path", metavar="PATH", help=path_help)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="the sample's key, e.g. abc123_w0002")
    which.add_argument("--index", type=_non_negative, help="the sample's position (0-based)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the picture to write")
    p.add_argument("--wav", metavar="FILE.wav", help="also write the audio (Griffin-Lim)")
    p.add_argument("--iters", type=_positive, default=32, help="Griffin-Lim iterations")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("sample", help="print a few samples' transcripts with word times")
    p.add_argument("path", metavar="PATH", help=path_help)
    p.add_argument("-n", type=_positive, default=3, help="how many samples (default 3)")
    p.add_argument("--start", type=_non_negative, default=0, help="first sample's position")
    p.add_argument("--seed", type=int, help="pick the samples at random with this seed")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except BrokenPipeError:  # `... | head`: the reader went away
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except MissingExtra as exc:
        _err(f"{PROG} {args.command}: error: {exc}")
        return 2
    except (CommandError, LocateError, reader.ShardError, schema.SampleError) as exc:
        _err(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return 1
    except (ValueError, OSError, ImportError) as exc:  # an unwritable --out, gs:// without gcsfs
        log.debug("%s failed", args.command, exc_info=True)
        _err(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return 1
    except KeyboardInterrupt:
        _err(f"{PROG} {args.command}: interrupted")
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
