"""Masked visual modelling loss (VIOLETv2): L1 or L2 on masked frame patches only."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import require


class MaskedPatchLoss(nn.Module):
    def __init__(self, distance: str = "l2") -> None:
        super().__init__()
        require(
            distance in ("l1", "l2"),
            "model.objectives.mvm.distance",
            f"must be l1 or l2, got {distance!r}",
        )
        self.distance = distance

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """pred, target (..., P) per patch, mask (...) bool -> mean over masked patches.

        Per patch: mean over P of |pred - target| (l1) or (pred - target)^2 (l2).
        """
        assert pred.shape == target.shape, (
            f"pred {tuple(pred.shape)} vs target {tuple(target.shape)}"
        )
        assert mask.shape == pred.shape[:-1] and mask.dtype == torch.bool, "mask (...) bool"
        diff = pred.float() - target.float()
        per_patch = (diff.abs() if self.distance == "l1" else diff.pow(2)).mean(-1)
        per_patch = torch.where(mask, per_patch, torch.zeros_like(per_patch))
        return per_patch.sum() / mask.sum().clamp(min=1)
