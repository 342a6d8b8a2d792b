"""LightningModule around `Reserve`: optimizer, schedule, logging. No hardware, no dataset.

Configured through LightningCLI (`model.class_path: model.module.ReserveModule`):

    model:
      size: base                  # preset; `config` fields override it
      config: {frame_size: [192, 320]}
      objectives: {span: {weight: 1.0}, mvm: {weight: 0.5}}
      lr: 4.0e-4
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import lightning as L
import torch
from torch import Tensor

from model.batch import Batch
from model.config import ModelConfig, ObjectiveConfig
from model.reserve import Reserve

log = logging.getLogger(__name__)


class ReserveModule(L.LightningModule):
    def __init__(
        self,
        size: str = "base",
        config: dict[str, Any] | None = None,
        objectives: ObjectiveConfig | None = None,
        lr: float = 4e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        warmup_steps: int = 1000,
        max_steps: int | None = None,
        min_lr_ratio: float = 0.0,
    ) -> None:
        """size: preset name; config: ModelConfig fields overriding it; the rest: AdamW and a
        linear-warmup then cosine schedule (constant after warmup when max_steps is None)."""
        super().__init__()
        self.save_hyperparameters()
        model_config = replace(ModelConfig.from_name(size), **(config or {}))
        self.model = Reserve(model_config, objectives or ObjectiveConfig())
        log.info("Reserve %s: %.1fM parameters", size, self.model.num_params() / 1e6)

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch).loss

    def _step(self, batch: Batch, stage: str) -> Tensor:
        out = self.model(batch)
        self.log(
            f"{stage}/loss",
            out.loss,
            prog_bar=True,
            batch_size=batch.batch_size,
            sync_dist=stage != "train",
        )
        self.log_dict(
            {f"{stage}/{k}": v for k, v in out.terms.items()},
            batch_size=batch.batch_size,
            sync_dist=stage != "train",
        )
        return out.loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        fused = all(p.is_cuda for p in self.parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.eps,
            fused=fused,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, hp.warmup_steps, hp.max_steps, hp.min_lr_ratio)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def lr_factor(step: int, warmup: int, total: int | None, min_ratio: float = 0.0) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
