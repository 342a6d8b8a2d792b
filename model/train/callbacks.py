"""Training callbacks: throughput and data-wait logging, and a per-rank sample recorder.

Both are configured in the trainer's ``callbacks`` list (configs/*.yaml)::

    - class_path: model.train.callbacks.TrainSpeed
    - class_path: model.train.callbacks.KeyRecorder
      init_args: {dirpath: runs/keys}
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from model.data.batch import Batch

log = logging.getLogger(__name__)


class TrainSpeed(Callback):
    """Logs, per training step, averages over the last ``window`` steps:

    - ``perf/samples_per_s``: windows per second over all ranks (this rank's batches times
      the world size, over this rank's wall time from one step's end to the next's);
    - ``perf/data_wait_s``: seconds per step spent waiting for the batch (from the previous
      step's end to this step's start: the loader, and a checkpoint save when one happens);
    - ``perf/step_s``: seconds per step in all;
    - ``data/skipped``: bad samples the loaders dropped so far, summed over ranks.

    Time spent in validation is not counted. The first two show in the progress bar.
    """

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"TrainSpeed window: must be >= 1, got {window}")
        self.steps: deque[tuple[float, float, int]] = deque(maxlen=window)  # (step s, wait s, n)
        self._last_end = time.perf_counter()
        self._wait = 0.0

    def _restart_clock(self, *_: Any) -> None:
        self._last_end = time.perf_counter()

    on_train_epoch_start = _restart_clock  # the loader starts its workers: that counts as wait
    on_validation_end = _restart_clock

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        self._wait = time.perf_counter() - self._last_end

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
    ) -> None:
        now = time.perf_counter()
        self.steps.append((now - self._last_end, self._wait, batch.batch_size))
        self._last_end = now
        seconds = sum(s for s, _, _ in self.steps)
        samples = sum(n for _, _, n in self.steps) * trainer.world_size
        pl_module.log("perf/samples_per_s", samples / seconds, prog_bar=True)
        wait = sum(w for _, w, _ in self.steps) / len(self.steps)
        pl_module.log("perf/data_wait_s", wait, prog_bar=True)
        pl_module.log("perf/step_s", seconds / len(self.steps))
        skipped = getattr(trainer.datamodule, "skipped_total", 0)
        pl_module.log("data/skipped", float(skipped), reduce_fx="sum", sync_dist=True)


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and bytes, in order (equal iff bitwise equal)."""
    h = hashlib.sha256()
    for name, t in state_dict.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class KeyRecorder(Callback):
    """Writes what each rank trained on, for debugging data splits, resume and DDP sync.

    ``dirpath/keys-rank{R}.jsonl`` gets one line per training step, appended as it ends:
    ``{"step": global step after it, "epoch": ..., "keys": [sample keys of the batch]}``.
    At the end of ``fit``, ``dirpath/end-rank{R}.json`` holds the global step and a digest
    of the weights: replicas in sync have equal digests.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def _path(self, trainer: L.Trainer, name: str, suffix: str) -> Path:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        return self.dirpath / f"{name}-rank{trainer.global_rank}{suffix}"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
    ) -> None:
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "keys": list(trainer.datamodule.last_keys),
        }
        with self._path(trainer, "keys", ".jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        end = {"step": trainer.global_step, "weights": weights_digest(pl_module.state_dict())}
        self._path(trainer, "end", ".json").write_text(json.dumps(end))
        log.info("rank %d ended at step %d, weights %s", trainer.global_rank, *end.values())
