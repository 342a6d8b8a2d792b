"""What the loaders yield: the model's Batch with its bookkeeping (keys, drops, position)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from model.data.batch import Batch


@dataclass
class StreamPosition:
    """Where a training batch sits in its epoch (identical on every rank)."""

    epoch: int
    index: int  # 0-based batch index within the epoch, on this rank


@dataclass
class LoaderBatch:
    """What the loaders yield: the model's Batch plus bookkeeping the trainer may log.

    ``skipped``: bad samples (or shard read errors) this batch's worker dropped since its
    previous batch; sum it over batches (``self.log("data/skipped", float(b.skipped),
    reduce_fx="sum")``) for a total. A batch holds fewer than batch_size windows when
    some of its samples were dropped. ``position`` is None for validation batches.
    """

    batch: Batch
    keys: list[str]  # sample keys, in batch order
    skipped: int = 0
    position: StreamPosition | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LoaderBatch:
        """Lightning moves anything with ``.to``: only the tensors travel."""
        return replace(self, batch=self.batch.to(device, non_blocking=non_blocking))
