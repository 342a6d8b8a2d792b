"""`python -m ingest doctor`: what a YouTube run needs, each line with its fix.

    python -m ingest doctor
    python -m ingest doctor --profile dataflow --output gs://bucket/shards

It reads the same pipelines.yaml (``--config``, ``--set``) and profile as ``ingest
run`` and prints one line per check (`ingest.preflight`): ffmpeg and ffprobe, yt-dlp's
version and age, the JavaScript runtime and whether yt-dlp accepts it, the challenge
solver, impersonation, the cookies file and proxy when set, the filesystems of the
input and output URLs (and of gs:// and s3://, optional unless used), and the Beam
runner's extra. Exit 0 only when a YouTube run can work (no line is ``missing``),
1 otherwise, 2 when the command is misused.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from ingest.config import ConfigError
from ingest.preflight import Check

HELP = "say what a YouTube run needs and what is missing, with the fix for each"
WIDTH = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="local", help="runner profile in pipelines.yaml")
    parser.add_argument("--config", default=None, help="pipelines.yaml (default: the shipped one)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one pipelines.yaml value, as for `ingest run`",
    )
    parser.add_argument("--input", default=None, help="the input list a run would read")
    parser.add_argument("--output", default=None, help="the output folder or URL a run would write")


def table(checks: list[Check]) -> str:
    """Status, name and what was found; the fix on the line below, indented."""
    name_w = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        head = f"  {c.status:<8} {c.name:<{name_w}}  "
        lines.append(head + c.detail)
        if c.fix and c.status != "ok":
            lines += textwrap.wrap(
                f"fix: {c.fix}",
                WIDTH,
                initial_indent=" " * len(head),
                subsequent_indent=" " * (len(head) + 5),
                break_on_hyphens=False,
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ingest import config, preflight

    try:
        settings = config.load(args.config, args.overrides)
        profile = settings.profile(args.profile)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    urls = [u for u in (args.input, args.output) if u]
    checks = preflight.doctor_checks(settings.ingest.download, profile.runner, urls)
    failed = [c for c in checks if c.failed]
    print(f"montage doctor: a YouTube run with profile {args.profile} ({profile.runner})")  # noqa: T201
    print(table(checks))  # noqa: T201
    if failed:
        names = ", ".join(c.name for c in failed)
        print(f"not ready: {len(failed)} missing ({names})")  # noqa: T201
        return 1
    print("ready: a YouTube run can work")  # noqa: T201
    return 0
