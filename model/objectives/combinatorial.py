"""Everything at Once's combinatorial objective, per segment.

Each segment is one item with up to three modalities: v (its frame's tokens), t (its
words), a (its audio tokens). The joint transformer serves as the fusion transformer on
single-segment sequences of one modality (t, v, a) or two (va, ta, tv). A modality's
embedding is the mean of its fusion outputs, through its projection head, normalized;
a fused pair's embedding is the mean of its two members' normalized embeddings. The
loss is CombinatorialLoss over the configured pairs, on present-modality rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import CombinatorialLossConfig, ModelConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone, Part
from model.nn.layers import masked_mean
from model.objectives.common import AUDIO_VIDEO, SPACES, TEXT_VIDEO, Encoded, window_mean
from model.objectives.losses.combinatorial import CombinatorialLoss

NAMES = {"t": "text", "v": "video", "a": "audio"}
LETTERS = {TEXT_VIDEO: "tv", AUDIO_VIDEO: "av"}  # each space's modalities


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
        builders, present = _inputs(backbone, encoded, batch)
        parts = {m: builders[m]() for m in self.proj}  # only the modalities the pairs use
        embeddings = {}
        for group in self.loss.groups():
            outputs = backbone.fuse([parts[m] for m in group], per_segment=True)
            members = [
                F.normalize(self.proj[m](masked_mean(out, parts[m][1], dim=2)), dim=-1)
                for m, out in zip(group, outputs, strict=True)
            ]  # each (B, S, E)
            embeddings[group] = torch.stack(members).mean(0).flatten(0, 1)  # (B*S, E)
        loss, pairs = self.loss(embeddings, {m: p.flatten() for m, p in present.items()})
        return loss, pairs

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Window embeddings of the spaces whose two modalities have a head here: each
        modality alone through the fusion transformer per segment, then its head, averaged
        over the segments that hold it (video serves both spaces)."""
        builders, present = _inputs(backbone, encoded, batch)
        wanted = {s: LETTERS[s] for s in spaces if set(LETTERS[s]) <= set(self.proj)}
        windows = {}
        for m in sorted(set().union(*wanted.values())):
            part = builders[m]()
            (out,) = backbone.fuse([part], per_segment=True)  # (B, S, T, D)
            units = self.proj[m](masked_mean(out, part[1], dim=2))  # (B, S, E)
            windows[m] = window_mean(units, present[m])  # (B, E)
        return {s: {NAMES[m]: windows[m] for m in ms} for s, ms in wanted.items()}

    def scales(self) -> dict[str, Tensor]:
        """No learned scale: the temperature is fixed."""
        return {}


def _inputs(
    backbone: Backbone, encoded: Encoded, batch: Batch
) -> tuple[dict[str, Callable[[], Part]], dict[str, Tensor]]:
    """Per modality: a builder of its joint-input part, and the (B, S) segments that hold it."""
    seg = batch.segment_mask  # (B, S)
    builders = {
        "v": lambda: backbone.frame_part(encoded.frames, seg),
        "t": lambda: backbone.text_part(batch.text, batch.text_mask, seg),
        "a": lambda: backbone.audio_part(encoded.audio, seg, batch.audio_present),
    }
    present = {"v": seg, "t": batch.text_present.any(-1), "a": batch.audio_valid[:, :, 0]}
    return builders, present
