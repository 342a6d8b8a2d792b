"""Masked visual modelling (VIOLETv2): predict pixel / HOG targets of masked patches.

Per frame, `mask_ratio` of the pooled cells (frame_pool x frame_pool patches, i.e.
blockwise masking) have their patches replaced by the frame encoder's MASK embedding.
The frames then go through the joint transformer with the words (text view, nothing
else masked), and a linear head per target maps each frame-token output to the targets
of its cell's patches. The loss is taken on masked patches of real segments only.
This objective owns the patch MASK embedding.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from model.config import ModelConfig, MvmLossConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone
from model.nn.encoders import cells_to_patches
from model.nn.layers import learned
from model.nn.masking import cell_masks
from model.nn.targets import hog_targets, pixel_targets
from model.objectives.common import SPACES, Encoded
from model.objectives.losses.mvm import MaskedPatchLoss


class MvmObjective(nn.Module):
    @staticmethod
    def needs(cfg: MvmLossConfig) -> set[str]:
        """Backbone parts this objective uses."""
        return {"joint"}

    def __init__(self, model: ModelConfig, cfg: MvmLossConfig) -> None:
        super().__init__()
        self.model_cfg = model
        self.cfg = cfg
        self.mask_token = learned(model.width)  # replaces a masked patch's embedding in the ViT
        p = model.patch_size
        dims = {"pixel": p * p * 3, "hog": cfg.hog_bins * (p // cfg.hog_cell) ** 2}
        self.dims = {t: dims[t] for t in cfg.targets}
        cell = model.frame_pool**2
        self.heads = nn.ModuleDict(
            {t: nn.Linear(model.width, cell * d) for t, d in self.dims.items()}
        )
        self.loss = MaskedPatchLoss(cfg.distance)

    def targets(self, frames: Tensor) -> dict[str, Tensor]:
        """frames (B, S, 3, H, W) -> target -> (B, S, P, dim)."""
        flat, p = frames.flatten(0, 1), self.model_cfg.patch_size
        out = {}
        for t in self.dims:
            if t == "pixel":
                out[t] = pixel_targets(flat, p, self.cfg.norm_pixels)
            else:
                out[t] = hog_targets(flat, p, self.cfg.hog_cell, self.cfg.hog_bins)
        return {t: v.unflatten(0, frames.shape[:2]) for t, v in out.items()}

    def to_patches(self, pred: Tensor, dim: int) -> Tensor:
        """Per-cell predictions (B, S, Nv, k*k*dim) -> per-patch (B, S, P, dim), patch order."""
        B, S = pred.shape[:2]
        hp, wp = self.model_cfg.patch_grid
        k = self.model_cfg.frame_pool
        pred = pred.reshape(B, S, hp // k, wp // k, k, k, dim)
        return pred.permute(0, 1, 2, 4, 3, 5, 6).reshape(B, S, hp * wp, dim)

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        B, S = batch.segment_mask.shape
        cfg = self.model_cfg
        cells = cell_masks(
            (B, S), cfg.frame_tokens, self.cfg.mask_ratio, generator, batch.frames.device
        )
        patch_mask = cells_to_patches(cells, cfg)  # (B, S, P)
        frames = backbone.encode_frames(batch.frames, patch_mask, self.mask_token)
        joint = backbone.text_view(frames, batch.text, batch.text_mask, batch.segment_mask)
        scored = patch_mask & batch.segment_mask[:, :, None]  # (B, S, P)
        terms = {}
        for t, target in self.targets(batch.frames).items():
            pred = self.to_patches(self.heads[t](joint.frames), self.dims[t])  # (B, S, P, dim)
            terms[t] = self.loss(pred, target, scored)
        return torch.stack(list(terms.values())).mean(), terms

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Nothing: masked visual modelling aligns no two modalities."""
        return {}

    def scales(self) -> dict[str, Tensor]:
        """No learned scale."""
        return {}
