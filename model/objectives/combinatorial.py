"""Everything at Once's combinatorial objective, per segment.

Each segment is one item with up to three modalities: v (its frame's tokens), t (its
words), a (its audio tokens). The joint transformer serves as the fusion transformer on
single-segment sequences of one modality (t, v, a) or two (va, ta, tv). A modality's
embedding is the mean of its fusion outputs, through its projection head, normalized;
a fused pair's embedding is the mean of its two members' normalized embeddings. The
loss is CombinatorialLoss over the configured pairs, on present-modality rows.

At test time (`embed`, `embed_group`) any subset of modalities is fused the same way,
in windows of any number of segments; the text <-> fused space pairs `t` with `va`,
EAO's headline text -> video + audio direction (docs/DESIGN.md section 3.7).
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
from model.objectives.common import (
    AUDIO_VIDEO,
    SPACES,
    TEXT_AUDIO,
    TEXT_FUSED,
    TEXT_VIDEO,
    Encoded,
    window_mean,
)
from model.objectives.losses.combinatorial import CombinatorialLoss

NAMES = {"t": "text", "v": "video", "a": "audio", "va": "fused"}
# Each space's two sides as modality groups (a group of two is fused in one pass).
SIDES = {
    TEXT_VIDEO: ("t", "v"),
    AUDIO_VIDEO: ("a", "v"),
    TEXT_AUDIO: ("t", "a"),
    TEXT_FUSED: ("t", "va"),
}


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
        """Window embeddings of the spaces whose modalities all have a head here: text, video
        and audio each alone through the fusion transformer (video serves two spaces), and
        for text <-> fused, video and audio fused in one pass (EAO's text -> video+audio)."""
        wanted = {s: SIDES[s] for s in spaces if s in SIDES and self.covers("".join(SIDES[s]))}
        groups = sorted({g for sides in wanted.values() for g in sides})
        windows = {g: self.embed_group(backbone, encoded, batch, g) for g in groups}
        return {s: {NAMES[g]: windows[g] for g in sides} for s, sides in wanted.items()}

    def covers(self, group: str) -> bool:
        """Whether every modality of `group` ('t', 'va', ...) has a head here."""
        return set(group) <= set(self.proj)

    def embed_group(self, backbone: Backbone, encoded: Encoded, batch: Batch, group: str) -> Tensor:
        """(B, E) window embedding of any subset of modalities ('v', 'ta', 'tva', ...), for
        windows of any number of segments: per segment, the group's modalities in one fusion
        pass, each member through its head and normalized, averaged over the members the
        segment holds; then averaged over the segments that hold any of them. A window
        longer than max_segments is fused max_segments segments at a time (the fusion is per
        segment; only the segment-index embedding restarts)."""
        assert group and self.covers(group), f"no head for every modality of {group!r}"
        S, most = batch.num_segments, backbone.config.max_segments
        if most >= S:
            units, held = self._segment_units(backbone, encoded, batch, group)
        else:
            chunks = [_segments(batch, start, min(start + most, S)) for start in range(0, S, most)]
            pieces = [self._segment_units(backbone, Encoded(backbone, c), c, group) for c in chunks]
            units = torch.cat([u for u, _ in pieces], dim=1)  # (B, S, E)
            held = torch.cat([h for _, h in pieces], dim=1)  # (B, S)
        return window_mean(units, held)  # (B, E)

    def _segment_units(
        self, backbone: Backbone, encoded: Encoded, batch: Batch, group: str
    ) -> tuple[Tensor, Tensor]:
        """Per-segment embeddings of `group` (B, S, E) and the segments holding any of it (B, S)."""
        builders, present = _inputs(backbone, encoded, batch)
        parts = [builders[m]() for m in group]
        outputs = backbone.fuse(parts, per_segment=True)  # each (B, S, T_m, D)
        members = torch.stack(
            [
                F.normalize(self.proj[m](masked_mean(out, part[1], dim=2)), dim=-1)
                for m, out, part in zip(group, outputs, parts, strict=True)
            ]
        )  # (M, B, S, E)
        held = torch.stack([present[m] for m in group])  # (M, B, S)
        units = (members * held[..., None]).sum(0) / held.sum(0).clamp(min=1)[..., None]
        return units, held.any(0)

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


def _segments(batch: Batch, start: int, stop: int) -> Batch:
    """Segments start..stop of every window, as windows of their own (no span masks)."""
    return Batch(
        frames=batch.frames[:, start:stop],
        audio=batch.audio[:, start:stop],
        text=batch.text[:, start:stop],
        text_mask=batch.text_mask[:, start:stop],
        segment_mask=batch.segment_mask[:, start:stop],
        audio_present=batch.audio_present,
    )
