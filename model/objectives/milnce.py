"""MIL-NCE objective: a frame against the K sub-segment captions nearest to it in time.

Item (b, s) pairs segment s's frame encoding with the span encodings of the K
sub-segments of the window whose centres are nearest to the frame (the segment's
midpoint); candidates without words, or outside the window, are invalid. A dual-encoder
objective: frame encoder and span encoder, no joint pass.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from model.config import SUBSEGMENTS, MilNceLossConfig, ModelConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone
from model.objectives.common import SPACES, TEXT_VIDEO, Encoded, window_mean
from model.objectives.losses.milnce import MilNceLoss


def candidate_index(num_segments: int, k: int) -> Tensor:
    """(S, K) flat sub-segment indices (s * 3 + j) nearest to each segment's midpoint.

    Ordered by distance, ties to the earlier one; -1 where the window has fewer than K.
    """
    n = num_segments * SUBSEGMENTS
    centre = torch.arange(num_segments)[:, None] * SUBSEGMENTS + SUBSEGMENTS // 2  # (S, 1)
    distance = (torch.arange(n)[None] - centre).abs()  # (S, 3S)
    order = (distance * n + torch.arange(n)).argsort(dim=1)  # stable tie-break by index
    idx = order[:, :k]
    if k > n:
        idx = torch.cat([idx, idx.new_full((num_segments, k - n), -1)], dim=1)
    return idx


class MilNceObjective(nn.Module):
    @staticmethod
    def needs(cfg: MilNceLossConfig) -> set[str]:
        """Backbone parts this objective uses (the frame encoder is always there)."""
        return {"spans"}

    def __init__(self, model: ModelConfig, cfg: MilNceLossConfig) -> None:
        super().__init__()
        self.k = cfg.num_candidates
        D, E = model.width, model.embed_dim
        self.video = nn.Linear(D, E)
        self.text = nn.Linear(D, E)
        self.loss = MilNceLoss()

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        S = batch.segment_mask.shape[1]
        idx = candidate_index(S, self.k).to(batch.text.device)  # (S, K)
        exists = idx >= 0
        safe = idx.clamp(min=0).flatten()  # (S*K,)
        captions = self.text(encoded.spans).flatten(1, 2)  # (B, 3S, E)
        text = captions[:, safe].unflatten(1, (S, self.k))  # (B, S, K, E)
        words = batch.text_present.flatten(1)[:, safe].unflatten(1, (S, self.k))  # (B, S, K)
        candidates = words & exists & batch.segment_mask[:, :, None]  # (B, S, K)
        video = self.video(encoded.frames.embedding)  # (B, S, E)
        loss = self.loss(video.flatten(0, 1), text.flatten(0, 1), candidates.flatten(0, 1))
        return loss, {"nce": loss}

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Text <-> video: the caption head over the sub-segments with words, the frame head
        over the real segments."""
        if TEXT_VIDEO not in spaces:
            return {}
        text = window_mean(self.text(encoded.spans), batch.text_present)  # (B, E)
        video = window_mean(self.video(encoded.frames.embedding), batch.segment_mask)
        return {TEXT_VIDEO: {"text": text, "video": video}}

    def scales(self) -> dict[str, Tensor]:
        """No learned scale."""
        return {}
