"""Checkpoint files: loaded without running code, read afresh from where they are, written whole.

`SafeCheckpointIO` is the trainer's checkpoint plugin (`trainer.plugins` in configs/*.yaml;
train.py installs it when a config leaves it out), so `fit --ckpt_path PATH`, `--ckpt_path
last`, `validate --ckpt_path URL` and every save by `ModelCheckpoint` go through it.

Loading: a local path or any fsspec URL (http(s)://, gs://, s3://: the layer shards are read
through), read from that URL each time. No download cache, so `.../run2/last.ckpt` is never
answered with an earlier `.../run1/last.ckpt`. Always `torch.load(weights_only=True)`: the
file is unpickled with torch's allow-list of tensors, containers and plain values, and a
file that names anything else is refused before any of it runs. Montage's checkpoints need
nothing more (LightningCLI saves the hyperparameters as the config's plain values), so
nothing is added to the allow-list. Whatever cannot be loaded raises `CheckpointError`, one
line naming the URL.

Saving: the checkpoint is written to `<name>.tmp-<hex>` in the destination folder (so on the
destination's filesystem, never `$TMPDIR`), flushed and fsynced when local, then renamed over
`<name>` (`fs.mv`: `rename(2)` locally, a whole-object copy on object stores). A save killed
at any point leaves the previous checkpoint whole; at worst a stray `.tmp-` file remains,
which `--ckpt_path last` does not take for a checkpoint. A save that fails removes its temp.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from shards.layout import read_whole, write_atomically

TMP_MARK = ".tmp-"  # `<name>.tmp-<hex>`: a save in progress (or killed)

# What torch.load raises for a file it cannot or will not load: refused by the weights-only
# unpickler, truncated or not a checkpoint (zip reader), missing or unreachable (fsspec).
READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the URL."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def unreadable(url: str, exc: BaseException) -> CheckpointError:
    """The one-line error for `exc`, raised while loading the checkpoint at `url`."""
    if isinstance(exc, FileNotFoundError):
        return CheckpointError(f"{url}: no such checkpoint")
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower():
        named = re.search(r"GLOBAL (\S+)", str(exc))
        what = f"it names {named.group(1)}" if named else _first_line(exc)
        return CheckpointError(
            f"{url}: refused: {what}, which a checkpoint may not hold "
            "(loaded with weights_only=True; nothing in it was run)"
        )
    return CheckpointError(f"{url}: not a readable checkpoint ({_first_line(exc)})")


def load(url: str, map_location: Any = None) -> dict[str, Any]:
    """The checkpoint at a local path or fsspec URL, read now, with weights_only=True."""
    url = str(url)
    try:
        with read_whole(url) as f:
            state = torch.load(f, map_location=map_location, weights_only=True)
    except READ_ERRORS as exc:
        raise unreadable(url, exc) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{url}: holds a {type(state).__name__}, not a checkpoint")
    return state


def save(checkpoint: dict[str, Any], url: str) -> None:
    """Write `checkpoint` to `url` whole or not at all: a temp name beside it, then a rename."""
    write_atomically(str(url), lambda f: torch.save(checkpoint, f), TMP_MARK)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's CheckpointIO through `load` and `save` above (see the module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save(checkpoint, str(path))

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise CheckpointError(
                f"{path}: weights_only=False is not allowed: checkpoints load with weights_only=True"
            )
        return load(str(path), map_location)
