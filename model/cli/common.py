"""What the model commands share: the checkpoint and device options, loading, progress."""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from model.cli.main import CommandError
from model.inference import CheckpointError, Encoder, load_checkpoint


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a checkpoint written by train.py fit (path or fsspec URL)")  # fmt: skip
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or auto (cuda when there is one; bf16 there)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, metavar="N",
                        help="windows per forward pass (default 16)")  # fmt: skip


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: no CUDA device here")
    return device


def encoder_from(args: argparse.Namespace) -> Encoder:
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    return Encoder(loaded, device_of(args.device), args.batch_size)


def bar(total: int, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr, shown only on a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())
