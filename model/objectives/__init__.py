"""Pretraining objectives: each runs the backbone on a batch and applies its loss.

An objective is an `nn.Module` holding its own heads and loss, called as
`objective(backbone, encoded, batch, generator)` and returning `(loss, terms)`: the
objective's scalar loss and its named parts for logging. Besides, `embed(backbone,
encoded, batch, spaces)` gives the window embeddings of the spaces it aligns and
`scales()` its learned contrastive scales (model/objectives/common.py): evaluation and
logging read an objective through these two only. `model.objectives.reserve.Reserve`
builds the enabled ones from `ObjectiveConfig` and weights them.
"""

from model.objectives.combinatorial import CombinatorialObjective
from model.objectives.common import (
    AUDIO_VIDEO,
    SPACES,
    TEXT_AUDIO,
    TEXT_FUSED,
    TEXT_VIDEO,
    Encoded,
    window_mean,
)
from model.objectives.fac import FacObjective
from model.objectives.merlot import MerlotObjective
from model.objectives.milnce import MilNceObjective, candidate_index
from model.objectives.mvm import MvmObjective
from model.objectives.span import SpanObjective

__all__ = [
    "AUDIO_VIDEO",
    "SPACES",
    "TEXT_AUDIO",
    "TEXT_FUSED",
    "TEXT_VIDEO",
    "CombinatorialObjective",
    "Encoded",
    "FacObjective",
    "MerlotObjective",
    "MilNceObjective",
    "MvmObjective",
    "SpanObjective",
    "candidate_index",
    "window_mean",
]
