"""``python -m model COMMAND``: the tools that use what a run learned.

Each command lives in its own module of this package and is imported only when it
runs, so ``--help`` is quick and one command's optional dependency never stops
another. A command module offers ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; it raises :class:`CommandError` for a failure the user can fix.

Exit status: 0 when all went well; 1 when the input is missing or unusable (one line,
never a traceback); 2 for a malformed command line or a missing optional dependency;
130 on Ctrl-C. Training is ``train.py``'s; nothing here imports it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("model")

PROG = "python -m model"

# name -> module under model.cli; the order is the order of `--help`.
COMMANDS = ("tokenizer", "embed", "search", "evaluate")


class CommandError(Exception):
    """Ends a command with a one-line message and exit status 1."""


class MissingExtra(Exception):
    """Ends a command that needs an optional dependency: one line, exit status 2."""


def _available() -> dict[str, object]:
    found = {}
    for name in COMMANDS:
        try:
            found[name] = importlib.import_module(f"model.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"model.cli.{name}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Use a trained Montage model: tokenizer, embed, search, evaluate."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
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
        _err(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return 2
    except (CommandError, ValueError, OSError) as exc:
        log.debug("%s failed", args.command, exc_info=True)
        _err(f"{PROG} {args.command}: error: {_one_line(exc)}")
        return 1
    except KeyboardInterrupt:
        _err(f"{PROG} {args.command}: interrupted")
        return 130


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
