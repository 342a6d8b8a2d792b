"""ShardDataModule: Montage shards -> LoaderBatches, for Lightning (DDP-safe, resumable).

Wiring (LightningCLI)::

    data:
      class_path: model.data.datamodule.ShardDataModule
      init_args: {train_shards: "out/train/", val_shards: "out/val/", batch_size: 32,
                  steps_per_epoch: 2000, num_workers: 8, tokenizer: auto}

Link ``frame_size``, ``max_segments``, ``max_text_len``, ``audio_frames`` and ``n_mels``
with the model's ModelConfig, and ``data.vocab_size`` (known once the data module exists,
``apply_on="instantiate"``) to ``vocab_size``.

The loaders yield :class:`model.data.stream.LoaderBatch` (``.batch`` the model's Batch,
``.keys`` the sample keys, ``.skipped`` bad samples dropped since that worker's previous
batch, ``.position`` the batch's place in the epoch). Under Lightning the LightningModule
receives the plain :class:`model.data.batch.Batch`: this module's ``on_before_batch_transfer``
unwraps it after recording the position, adding ``skipped`` to ``skipped_total`` and
keeping ``last_keys``; log ``self.trainer.datamodule.skipped_total`` from the module.

Every rank runs ``steps_per_epoch`` training batches per epoch, whatever its shards hold,
so DDP never waits on a rank that ran dry. Validation reads each rank's shards once.

What ingest and the model must agree on is read from the shards themselves: before a
loader starts, the extraction parameters in the first sample of its first shard are
checked against the model's shapes (audio sub-segments, mel bins, mel frames), and the
training and validation shards against each other (segment length, sample rate, mel
parameters). A mismatch is a one-line ValueError naming the shard.

Position and resume. The data module tracks (epoch, batches consumed in the epoch); it is
the same on every rank, so rank 0's checkpoint restores every rank. Lightning saves and
restores it through :meth:`state_dict` / :meth:`load_state_dict`, and reports progress
through :meth:`on_before_batch_transfer`, which it calls for every training batch right
before ``training_step`` (after its prefetch, so a checkpoint at step k records k). If the
LightningModule overrides ``on_before_batch_transfer`` too, Lightning calls only the
module's, which must then call ``self.trainer.datamodule.on_before_batch_transfer(batch, i)``.
Each ``iter()`` of the training loader starts where the position points: a finished epoch
moves on to the next one, a partly consumed epoch continues at its next batch, decoding
nothing it skips.
Outside Lightning: call :meth:`set_epoch` before each epoch (like DistributedSampler) and
:meth:`mark_consumed` per batch if you want a resumable state.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader

from model.data.collate import DecodeConfig, params_problems
from model.data.loader import ShardStream, StreamConfig, check_enough_shards
from model.data.stream import LoaderBatch, StreamPosition
from model.data.tokenizer import Tokenizer, build_tokenizer, find_beside, tokenizer_state
from shards.layout import find_shards
from shards.reader import ShardError, first_meta
from shards.schema import ExtractionParams, SampleError

log = logging.getLogger(__name__)

STATE_VERSION = 1
# What training and validation shards must share to mean the same thing to the model.
SHARED_PARAMS = ("segment_ms", "subsegments", "sample_rate", "n_fft", "hop_length", "n_mels",
                 "mel_frames")  # fmt: skip


class TrainLoader(DataLoader):
    """A DataLoader that starts its stream at the data module's position on every ``iter()``.

    Workers are not persistent: each pass pickles the stream with its start position.
    """

    def __init__(self, stream: ShardStream, datamodule: ShardDataModule, **kwargs: Any) -> None:
        super().__init__(stream, batch_size=None, persistent_workers=False, **kwargs)
        self.datamodule = datamodule

    def __iter__(self) -> Iterator[LoaderBatch]:
        self.dataset.start = self.datamodule.begin_pass()
        return super().__iter__()

    # Lightning treats a loader with these as resumable (and says so in its warnings); the
    # state is the data module's, restored by whichever of the two Lightning calls first.
    def state_dict(self) -> dict[str, Any]:
        return self.datamodule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.datamodule.load_state_dict(state_dict)


class ShardDataModule(L.LightningDataModule):
    """Streams Montage shards with webdataset; see the module docstring.

    Args:
        train_shards: folder, brace pattern, glob or fsspec URL (``shards.layout.expand``);
            None only to validate or test without training.
        val_shards: the same for validation, or None.
        batch_size: windows per batch (a batch holds fewer when bad samples were dropped).
        steps_per_epoch: training batches per epoch on every rank.
        num_workers: DataLoader worker processes per rank (0: read in the main process).
        val_batch_size / val_num_workers: default to batch_size / num_workers.
        seed: fixes shard order, sample shuffling and resampling (with the epoch).
        shuffle_buffer: raw samples held for shuffling per worker (<= 1: off). Memory: a
            16-segment window is about 0.5 MB, so 256 hold about 130 MB per worker. Keep it
            below what one reader's shards hold, or consecutive passes mix (a window may
            then come back within a few batches).
        resampled: False: the shards are split disjointly over ranks x workers (needs at
            least that many shards, fails at start otherwise); True: every reader draws
            shards with replacement from all shards (any count; readers may overlap).
        tokenizer: ``auto`` (the ``tokenizer.json`` that ``python -m model tokenizer`` wrote
            beside the training shards, else bytes), ``bytes``, or the path or URL of a
            byte-level BPE ``tokenizer.json``. Checkpoints record the one used
            (:meth:`tokenizer_state`).
        frame_size, max_segments, max_text_len, audio_frames, n_mels: as in ModelConfig.
        rank, world_size: override the trainer's (tests, custom launchers).
        warn_every_s: at most one log line about skipped samples per worker per period.
    """

    def __init__(
        self,
        train_shards: str | None = None,
        val_shards: str | None = None,
        batch_size: int = 8,
        steps_per_epoch: int = 1000,
        num_workers: int = 4,
        val_batch_size: int | None = None,
        val_num_workers: int | None = None,
        seed: int = 0,
        shuffle_buffer: int = 256,
        resampled: bool = False,
        tokenizer: str = "auto",
        frame_size: tuple[int, int] = (192, 320),
        max_segments: int = 16,
        max_text_len: int = 32,
        audio_frames: int = 60,
        n_mels: int = 64,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        warn_every_s: float = 60.0,
    ) -> None:
        super().__init__()
        assert steps_per_epoch >= 1, f"steps_per_epoch must be >= 1, got {steps_per_epoch}"
        assert num_workers >= 0, f"num_workers must be >= 0, got {num_workers}"
        assert (rank is None) == (world_size is None), "give rank and world_size together"
        self.save_hyperparameters()
        self.train_spec, self.val_spec = train_shards, val_shards
        self.steps_per_epoch = steps_per_epoch
        self.num_workers = num_workers
        self.val_num_workers = num_workers if val_num_workers is None else val_num_workers
        self.pin_memory = pin_memory
        self.rank_override = None if rank is None else (rank, world_size)
        self.stream = StreamConfig(
            batch_size=batch_size,
            seed=seed,
            shuffle_buffer=shuffle_buffer,
            resampled=resampled,
            warn_every_s=warn_every_s,
        )
        self.val_stream = StreamConfig(
            batch_size=val_batch_size or batch_size, warn_every_s=warn_every_s
        )
        self.decode = DecodeConfig(
            frame_size=frame_size,
            max_segments=max_segments,
            max_text_len=max_text_len,
            audio_frames=audio_frames,
            n_mels=n_mels,
        )
        self.tokenizer_spec = tokenizer
        self._tokenizer: Tokenizer | None = None
        self.position = StreamPosition(epoch=0, index=0)  # index = batches consumed in the epoch
        self.skipped_total = 0  # bad samples dropped in batches that reached the model, this rank
        self.last_keys: list[str] = []  # sample keys of the last batch handed to the model
        self._train_urls: list[str] | None = None
        self._restored: dict[str, Any] | None = None
        self._val_urls: list[str] | None = None
        self._params: dict[str, tuple[str, ExtractionParams]] = {}  # what -> (shard, params)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer ``tokenizer`` names, read once (``auto`` looks beside the training
        shards; without training shards it means bytes)."""
        if self._tokenizer is None:
            if self.tokenizer_spec != "auto":
                self._tokenizer = build_tokenizer(self.tokenizer_spec)
            elif self.train_spec is None:
                self._tokenizer = build_tokenizer("bytes")
            else:
                self._tokenizer = find_beside(self.train_urls)
            log.info("tokenizer (%s): %r", self.tokenizer_spec, self._tokenizer)
        return self._tokenizer

    def tokenizer_state(self) -> dict[str, Any]:
        """What checkpoints record of the tokenizer (``model.data.tokenizer.from_state``)."""
        return tokenizer_state(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        """Token ids the loader emits lie in [0, vocab_size); link it to ModelConfig."""
        return self.tokenizer.vocab_size

    # ------------------------------------------------------------------ shards and world

    @property
    def train_urls(self) -> list[str]:
        if self._train_urls is None:
            if self.train_spec is None:
                raise ValueError("no train_shards configured")
            self._train_urls = find_shards(self.train_spec, "data.train_shards")
        return self._train_urls

    @property
    def val_urls(self) -> list[str]:
        if self._val_urls is None:
            assert self.val_spec is not None, "no val_shards configured"
            self._val_urls = find_shards(self.val_spec, "data.val_shards")
        return self._val_urls

    def check_shards(self, urls: list[str], what: str) -> None:
        """Raise ValueError when the shards were made for other shapes than the model's, or
        differently from the other split's. Reads the first sample's ``.json`` of the first
        shard; when that does not read, the stream's own counting of bad shards takes over."""
        try:
            params = first_meta(urls[0]).params
        except (ShardError, SampleError) as exc:
            log.debug("%s: cannot read the extraction parameters (%s)", what, exc)
            return
        if problems := params_problems(params, self.decode):
            raise ValueError(f"{what} {urls[0]}: the shards hold " + "; ".join(problems))
        self._params[what] = (urls[0], params)
        for other, (shard, theirs) in self._params.items():
            differ = [
                f"{k} {getattr(params, k)} vs {getattr(theirs, k)}"
                for k in SHARED_PARAMS
                if getattr(params, k) != getattr(theirs, k)
            ]
            if differ:
                raise ValueError(
                    f"{what} {urls[0]} and {other} {shard} were made differently: "
                    + ", ".join(differ)
                )

    def world(self) -> tuple[int, int]:
        """(rank, world_size): the override, else the trainer's, else torch.distributed's."""
        if self.rank_override is not None:
            return self.rank_override
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> TrainLoader:
        rank, world_size = self.world()
        if not self.stream.resampled:
            check_enough_shards(len(self.train_urls), world_size, self.num_workers, "train")
        self.check_shards(self.train_urls, "train_shards")
        stream = ShardStream(
            self.train_urls,
            self.stream,
            self.decode,
            self.tokenizer,
            rank=rank,
            world_size=world_size,
            steps_per_epoch=self.steps_per_epoch,
        )
        return TrainLoader(stream, self, num_workers=self.num_workers, pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        if self.val_spec is None:
            return []  # Lightning skips validation with an empty list
        rank, world_size = self.world()
        check_enough_shards(len(self.val_urls), world_size, self.val_num_workers, "val")
        self.check_shards(self.val_urls, "val_shards")
        stream = ShardStream(
            self.val_urls,
            self.val_stream,
            self.decode,
            self.tokenizer,
            rank=rank,
            world_size=world_size,
        )
        return DataLoader(
            stream, batch_size=None, num_workers=self.val_num_workers, pin_memory=self.pin_memory
        )

    # ------------------------------------------------------------------ position

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at its first batch; the current epoch keeps its position."""
        if epoch != self.position.epoch:
            self.position = StreamPosition(epoch, 0)

    def begin_pass(self) -> StreamPosition:
        """Where the next ``iter()`` of the training loader starts (a finished epoch rolls over)."""
        if self.position.index >= self.steps_per_epoch:
            self.position = StreamPosition(self.position.epoch + 1, 0)
        return StreamPosition(self.position.epoch, self.position.index)

    def mark_consumed(self, batch: LoaderBatch) -> None:
        """Record that the model took ``batch`` (a training batch; others are ignored)."""
        pos = batch.position
        if pos is None:
            return
        if (pos.epoch, pos.index + 1) > (self.position.epoch, self.position.index):
            self.position = StreamPosition(pos.epoch, pos.index + 1)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning calls this right before a batch goes to the model: record the
        position and skip count, keep the keys, and hand the model its plain Batch."""
        if not isinstance(batch, LoaderBatch):
            return batch
        self.mark_consumed(batch)
        self.skipped_total += batch.skipped
        self.last_keys = batch.keys
        return batch.batch

    def _layout(self) -> dict[str, Any]:
        """What must match for a saved position to mean the same samples."""
        _, world_size = self.world()
        urls = "\n".join(self.train_urls).encode()
        return {
            "seed": self.stream.seed,
            "batch_size": self.stream.batch_size,
            "shuffle_buffer": self.stream.shuffle_buffer,
            "resampled": self.stream.resampled,
            "num_workers": max(1, self.num_workers),
            "world_size": world_size,
            "shards": hashlib.sha256(urls).hexdigest()[:16],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": self.position.epoch,
            "consumed": self.position.index,
            "layout": self._layout(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position; with a different layout the interrupted epoch cannot be
        continued exactly, so training moves on to the next epoch (with a warning)."""
        assert state_dict.get("version") == STATE_VERSION, (
            f"data state version {state_dict.get('version')}"
        )
        epoch, consumed = int(state_dict["epoch"]), int(state_dict["consumed"])
        if self.train_spec is None:  # validating without training shards: nothing to check
            self.position = StreamPosition(epoch, consumed)
            return
        layout = self._layout()
        if consumed and state_dict["layout"] != layout:
            changed = sorted(k for k in layout if state_dict["layout"].get(k) != layout[k])
            log.warning(
                "data layout changed (%s): epoch %d cannot resume at batch %d; starting epoch %d",
                ", ".join(changed),
                epoch,
                consumed,
                epoch + 1,
            )
            epoch, consumed = epoch + 1, 0
        self.position = StreamPosition(epoch, consumed)
