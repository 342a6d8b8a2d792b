"""MIL-NCE with K candidate captions per video item (HowTo100M / MMV).

As in docs/DESIGN.md section 3, with scores x_ijk = v_i . t_jk (item i's video,
item j's k-th candidate caption):

    L = mean_i [ log( sum_jk e^{x_ijk} + sum_jk e^{x_jik} ) - log sum_k e^{x_iik} ]

over the items with at least one valid candidate; sums run over valid items j and
valid candidates k, on the batch gathered from every process.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.distributed import gather_features
from model.objectives.losses.common import NEG


class MilNceLoss(nn.Module):
    def forward(self, video: Tensor, text: Tensor, candidates: Tensor) -> Tensor:
        """video (N, E), text (N, K, E), candidates (N, K) bool (valid captions)."""
        N, K, E = text.shape
        assert video.shape == (N, E), f"video {tuple(video.shape)} vs text {tuple(text.shape)}"
        assert candidates.shape == (N, K) and candidates.dtype == torch.bool, (
            "candidates (N, K) bool"
        )
        video, text, candidates = gather_features(video.float(), text.float(), candidates)
        items = candidates.any(1)  # (N,)
        x = torch.einsum("id,jkd->ijk", video, text)  # (N, N, K)
        usable = items[:, None] & candidates  # (N, K): caption k of item j is a valid caption
        forward = x.masked_fill(~usable[None], NEG)  # x_ijk over valid (j, k)
        reverse = x.transpose(0, 1).masked_fill(~(items[None, :, None] & candidates[:, None]), NEG)
        # reverse[i, j, k] = x_jik over valid items j and item i's valid captions k
        denom = torch.logsumexp(torch.cat([forward.flatten(1), reverse.flatten(1)], 1), 1)  # (N,)
        positive = torch.diagonal(x, dim1=0, dim2=1).T.masked_fill(~candidates, NEG)  # (N, K)
        per_item = denom - torch.logsumexp(positive, 1)  # (N,)
        per_item = torch.where(items, per_item, torch.zeros_like(per_item))
        return per_item.sum() / items.sum().clamp(min=1)
