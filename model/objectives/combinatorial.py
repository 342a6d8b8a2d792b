"""Everything at Once's combinatorial objective, per segment.

Each segment is one item with up to three modalities: v (its frame's tokens), t (its
words), a (its audio tokens). The joint transformer serves as the fusion transformer on
single-segment sequences of one modality (t, v, a) or two (va, ta, tv). A modality's
embedding is the mean of its fusion outputs, through its projection head, normalized;
a fused pair's embedding is the mean of its two members' normalized embeddings. The
loss is CombinatorialLoss over the configured pairs, on present-modality rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.backbone import Backbone
from model.batch import Batch
from model.config import CombinatorialLossConfig, ModelConfig
from model.layers import masked_mean
from model.losses.combinatorial import CombinatorialLoss
from model.objectives.common import Encoded


class CombinatorialObjective(nn.Module):
    @staticmethod
    def needs(cfg: CombinatorialLossConfig) -> set[str]:
        """Backbone parts this objective uses: audio only when a weighted pair has it."""
        pairs = [p for p, w in cfg.pair_weights.items() if w > 0]
        return {"joint"} | ({"audio"} if any("a" in p for p in pairs) else set())

    def __init__(self, model: ModelConfig, cfg: CombinatorialLossConfig) -> None:
        super().__init__()
        D, E = model.width, model.embed_dim
        self.loss = CombinatorialLoss(cfg.pair_weights, cfg.temperature)
        used = sorted({m for g in self.loss.groups() for m in g})
        self.proj = nn.ModuleDict({m: nn.Linear(D, E) for m in used})

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        seg = batch.segment_mask  # (B, S)
        builders = {
            "v": lambda: backbone.frame_part(encoded.frames, seg),
            "t": lambda: backbone.text_part(batch.text, batch.text_mask, seg),
            "a": lambda: backbone.audio_part(encoded.audio, seg, batch.audio_present),
        }
        parts = {m: builders[m]() for m in self.proj}  # only the modalities the pairs use
        present = {
            "v": seg.flatten(),  # (B*S,)
            "t": batch.text_present.any(-1).flatten(),
            "a": batch.audio_valid[:, :, 0].flatten(),
        }
        embeddings = {}
        for group in self.loss.groups():
            outputs = backbone.fuse([parts[m] for m in group], per_segment=True)
            members = [
                F.normalize(self.proj[m](masked_mean(out, parts[m][1], dim=2)), dim=-1)
                for m, out in zip(group, outputs, strict=True)
            ]  # each (B, S, E)
            embeddings[group] = torch.stack(members).mean(0).flatten(0, 1)  # (B*S, E)
        loss, pairs = self.loss(embeddings, present)
        return loss, pairs
