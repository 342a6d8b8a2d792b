"""Pretraining objectives: each runs the backbone on a batch and applies its loss.

An objective is an `nn.Module` holding its own heads and loss, called as
`objective(backbone, encoded, batch, generator)` and returning `(loss, terms)`: the
objective's scalar loss and its named parts for logging. `model.reserve.Reserve`
builds the enabled ones from `ObjectiveConfig` and weights them.
"""

from model.objectives.combinatorial import CombinatorialObjective
from model.objectives.common import Encoded
from model.objectives.milnce import MilNceObjective, candidate_index
from model.objectives.mvm import MvmObjective
from model.objectives.span import SpanObjective

__all__ = [
    "CombinatorialObjective",
    "Encoded",
    "MilNceObjective",
    "MvmObjective",
    "SpanObjective",
    "candidate_index",
]
