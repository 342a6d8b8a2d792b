"""Pretraining losses as functions of tensors, each in its own module.

Contrastive losses gather their features across processes through
`model.distributed.gather_features`; with one process they are plain functions of
their inputs. Rows are marked valid or not by bool masks (no dynamic shapes), so an
absent modality gives a zero term with finite gradients.
"""

from model.objectives.losses.combinatorial import CombinatorialLoss, norm_softmax
from model.objectives.losses.fac import FacLoss, nce
from model.objectives.losses.merlot import masked_token_loss, match_nce, order_loss
from model.objectives.losses.milnce import MilNceLoss
from model.objectives.losses.mvm import MaskedPatchLoss
from model.objectives.losses.span import ContrastiveSpanLoss, l2norm, span_nce

__all__ = [
    "CombinatorialLoss",
    "ContrastiveSpanLoss",
    "FacLoss",
    "MaskedPatchLoss",
    "MilNceLoss",
    "l2norm",
    "masked_token_loss",
    "match_nce",
    "nce",
    "norm_softmax",
    "order_loss",
    "span_nce",
]
