"""The full pretraining model: a Reserve backbone plus the objectives chosen in config.

    model = Reserve(ModelConfig.from_name("tiny"), ObjectiveConfig())
    out = model(batch)            # ReserveOutput
    out.loss.backward()           # sum over enabled objectives of weight * loss
    out.terms                     # {"span": ..., "span/frame": ..., ...} detached, for logging
    model.embed(batch)            # {"text-video": {"text": (B, E), "video": (B, E)}, ...}

An objective is enabled when its weight in ObjectiveConfig is above zero. Only enabled
objectives build heads, and the backbone builds only the encoders they need, so every
parameter gets a gradient and DDP runs without find_unused_parameters.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone
from model.nn.layers import init_weights
from model.objectives import (
    SPACES,
    CombinatorialObjective,
    Encoded,
    FacObjective,
    MerlotObjective,
    MilNceObjective,
    MvmObjective,
    SpanObjective,
)

# Which objective supplies a space in `embed`: the first enabled one that aligns it, in this
# order (the combinatorial heads, then FAC's, MIL-NCE's, MERLOT's matching heads, then the
# span terms'; see model/eval/evaluation.py). Objectives not named here come after, in config
# order.
EMBEDDING_PREFERENCE = ("combinatorial", "fac", "milnce", "merlot", "span")

OBJECTIVES = {
    "span": SpanObjective,
    "combinatorial": CombinatorialObjective,
    "milnce": MilNceObjective,
    "mvm": MvmObjective,
    "fac": FacObjective,
    "merlot": MerlotObjective,
}


@dataclass
class ReserveOutput:
    loss: Tensor  # () weighted sum of the enabled objectives
    terms: dict[str, Tensor] = field(default_factory=dict)  # name -> () detached


class Reserve(nn.Module):
    def __init__(
        self, config: ModelConfig | None = None, objectives: ObjectiveConfig | None = None
    ) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.objective_config = objectives or ObjectiveConfig()
        weights = self.objective_config.weights()
        self.weights = {name: weights[name] for name in self.objective_config.enabled()}
        needs = set().union(
            *(OBJECTIVES[n].needs(getattr(self.objective_config, n)) for n in self.weights)
        )
        self.backbone = Backbone(
            self.config, audio="audio" in needs, spans="spans" in needs, joint="joint" in needs
        )
        self.objectives = nn.ModuleDict(
            {
                name: OBJECTIVES[name](self.config, getattr(self.objective_config, name))
                for name in self.weights
            }
        )
        for objective in self.objectives.values():
            objective.apply(init_weights)

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> ReserveOutput:
        """Loss of the enabled objectives on one batch; masks come from batch.masks or generator."""
        S = batch.segment_mask.shape[1]
        assert self.config.max_segments >= S, (
            f"{S} segments > max_segments {self.config.max_segments}"
        )
        assert batch.text.shape[-1] <= self.config.max_text_len, (
            f"{batch.text.shape[-1]} tokens per sub-segment > max_text_len {self.config.max_text_len}"
        )
        encoded = Encoded(self.backbone, batch)
        total = torch.zeros((), device=batch.frames.device)
        terms: dict[str, Tensor] = {}
        for name, objective in self.objectives.items():
            loss, parts = objective(self.backbone, encoded, batch, generator)
            total = total + self.weights[name] * loss
            terms[name] = loss.detach()
            terms.update({f"{name}/{k}": v.detach() for k, v in parts.items()})
        return ReserveOutput(loss=total, terms=terms)

    def embed(self, batch: Batch, spaces: Collection[str] = SPACES) -> dict[str, dict[str, Tensor]]:
        """Window embeddings per space, each from the first enabled objective (in
        EMBEDDING_PREFERENCE order) that aligns it; spaces no objective aligns are absent.
        Through each objective's public `embed` only. Gradients flow: wrap in no_grad."""
        encoded = Encoded(self.backbone, batch)
        order = [n for n in EMBEDDING_PREFERENCE if n in self.objectives]
        order += [n for n in self.objectives if n not in order]
        out: dict[str, dict[str, Tensor]] = {}
        for name in order:
            missing = [s for s in spaces if s not in out]
            if missing:
                out |= self.objectives[name].embed(self.backbone, encoded, batch, missing)
        return out

    def scales(self) -> dict[str, Tensor]:
        """`<objective>/<term>` -> the learned contrastive scale of every enabled objective."""
        return {
            f"{name}/{term}": value
            for name, objective in self.objectives.items()
            for term, value in objective.scales().items()
        }

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
