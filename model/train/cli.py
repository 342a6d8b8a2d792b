"""Montage's LightningCLI (what `train.py` runs): ReserveModule and ShardDataModule.

Values that data and model share are linked, never given twice: the model's size preset
and `config` decide the shapes the loader produces (frame size, segments, tokens per
sub-segment, audio frames, mel bins); the data module's tokenizer decides the model's
vocabulary; the trainer's max_steps is the length of the learning-rate schedule.

Every checkpoint is loaded and saved through model/train/checkpoint.py (`trainer.plugins`
in the configs; installed here when a config leaves it out): weights_only=True, read
afresh from its URL, written under a temporary name beside it and renamed.

Where a run writes follows Lightning's convention: `--trainer.default_root_dir DIR` holds
the checkpoints (DIR/checkpoints), TensorBoard (DIR/tensorboard) and CSV logs (DIR/csv).
`logger: true` (the configs' setting) means those two loggers; a logger or checkpoint
callback configured with its own save_dir or dirpath keeps it.

`validate --ckpt_path FILE` without training shards: `data.tokenizer: auto` has no shards
to look beside, so it takes the tokenizer the checkpoint's run used (its record under
`montage_tokenizer`).
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel

from model.config import ModelConfig
from model.data.datamodule import ShardDataModule
from model.data.tokenizer import CHECKPOINT_KEY, TOKENIZER_FILE, from_state
from model.train.checkpoint import READ_ERRORS, CheckpointError, SafeCheckpointIO, unreadable
from model.train.module import ReserveModule
from model.train.quiet import quiet_lightning
from shards.layout import NoShards

log = logging.getLogger(__name__)

# DistributedDataParallel's switch for syncing buffers before forward (renamed in torch 2.13).
SYNC_BUFFERS = next(
    k
    for k in ("forward_sync_buffers", "broadcast_buffers")
    if k in inspect.signature(DistributedDataParallel).parameters
)
SHAPES = ("frame_size", "max_segments", "max_text_len", "audio_frames", "n_mels")
# The subcommands train.py offers. `test` has no test set to run on and `predict` has no
# output to write yet, so LightningCLI's versions of them are not offered.
SUBCOMMANDS = ("fit", "validate")
CHECKPOINT_CLASSES = ("lightning.pytorch.callbacks.ModelCheckpoint",)


def model_field(name: str, size: str, config: dict[str, Any] | None) -> Any:
    """One field of the ModelConfig that `model.size` and `model.config` describe."""
    return getattr(ModelConfig.from_name(size, **(config or {})), name)


def output_root(trainer: Any) -> str:
    """Where a run writes: ``trainer.default_root_dir``, else the working directory (as
    Lightning does)."""
    return os.fspath(trainer.get("default_root_dir") or os.getcwd())


def default_loggers(root: str) -> list[Logger]:
    """What `logger: true` means here: TensorBoard and CSV logs under the run's root."""
    return [TensorBoardLogger(root, name="tensorboard"), CSVLogger(root, name="csv")]


def place_checkpoints(trainer: Any) -> None:
    """Checkpoint callbacks with no dirpath write to ``<default_root_dir>/checkpoints``
    (Lightning would put them under a logger's versioned folder, where `--ckpt_path last`
    of the next run would not look)."""
    root = output_root(trainer)
    for spec in trainer.callbacks or []:
        init = getattr(spec, "init_args", None)
        if spec.class_path in CHECKPOINT_CLASSES and init is not None and init.dirpath is None:
            init.dirpath = os.path.join(root, "checkpoints")


def schedule_steps(max_steps: int) -> int | None:
    """The trainer's max_steps (-1: unbounded, so no decay) as the schedule's length."""
    return max_steps if max_steps > 0 else None


class MontageCLI(LightningCLI):
    """LightningCLI over ReserveModule and ShardDataModule; the module owns its optimizer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ReserveModule, ShardDataModule, auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in SHAPES:
            parser.link_arguments(
                ("model.size", "model.config"), f"data.{name}", partial(model_field, name)
            )
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("trainer.max_steps", "model.max_steps", schedule_steps)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads a local checkpoint's hyperparameters before the trainer exists
        # (torch.load with weights_only=True): its refusal reads as the plugin's one line.
        sub = self.config.get("subcommand")
        try:
            super()._parse_ckpt_path()
            if sub == "validate":
                self._tokenizer_from_checkpoint(self.config[sub])
        except READ_ERRORS as exc:
            raise unreadable(self.config[sub].get("ckpt_path"), exc) from None

    @staticmethod
    def _tokenizer_from_checkpoint(config: Any) -> None:
        """Validating a local checkpoint with `data.tokenizer: auto` and no training shards:
        the tokenizer its run used, written to a file of this process's that
        `data.tokenizer` then names (a run from before the record used bytes, as auto does)."""
        ckpt = config.get("ckpt_path")
        data = config.data
        if data.tokenizer != "auto" or data.train_shards is not None:
            return
        if not ckpt or not Path(ckpt).is_file():
            return
        state = torch.load(ckpt, weights_only=True, map_location="cpu", mmap=True)
        record = state.get(CHECKPOINT_KEY) if isinstance(state, dict) else None
        if not isinstance(record, dict) or record.get("kind") != "bpe":
            return
        try:
            from_state(record)  # a record that is not one: one line, before any work
        except ValueError as exc:
            raise CheckpointError(f"{ckpt}: {exc}") from None
        folder = tempfile.mkdtemp(prefix="montage-tokenizer-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = Path(folder) / TOKENIZER_FILE
        path.write_text(record["json"], encoding="utf-8")
        data.tokenizer = str(path)
        log.info("data.tokenizer auto: the checkpoint's, %s (%s)", record.get("sha256"), ckpt)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        offered = LightningCLI.subcommands()
        return {name: offered[name] for name in SUBCOMMANDS}

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        place_checkpoints(config.trainer)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = self._get(self.config_init, "trainer", default={})
        if trainer.get("logger") in (None, True):
            kwargs.setdefault("logger", default_loggers(output_root(trainer)))
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        strategy = self.trainer.strategy
        if not isinstance(strategy.checkpoint_io, SafeCheckpointIO):
            strategy.checkpoint_io = SafeCheckpointIO()
        if isinstance(strategy, DDPStrategy):
            # DDP broadcasts buffers before every forward, validation's too, and ranks run
            # different numbers of validation batches: that would hang. The model's only
            # buffers are constants (frame normalization), so there is nothing to broadcast.
            strategy._ddp_kwargs[SYNC_BUFFERS] = False


def main(args: list[str] | None = None) -> MontageCLI:
    quiet_lightning()
    return MontageCLI(args=args)


def run(args: list[str] | None = None) -> int:
    """`train.py`: the CLI, with the errors a user can cause as one line and an exit
    status (1: a checkpoint that cannot be loaded; 2: a shard path that names nothing)."""
    try:
        main(args)
    except CheckpointError as exc:
        print(f"train.py: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except NoShards as exc:
        print(f"train.py: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0
