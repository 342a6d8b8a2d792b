"""MERLOT's three losses (docs/DESIGN.md section 3.8).

- matching: frames f_i and their segments' transcripts t_i, cosine similarities over
  temperature tau, over the valid rows of the batch gathered from every process:

      L_match = 1/2 [ mean_i (LSE_j c_ij - c_ii) + mean_i (LSE_j c_ji - c_ii) ],
      c_ij = cos(f_i, t_j) / tau

- masked language modelling: mean cross-entropy of the vocabulary logits at the masked
  tokens against the tokens they hid;
- reordering: mean cross-entropy of two-way logits (second class: "a comes first") over
  the valid pairs.

The last two are local (nothing to gather); each also returns its accuracy, for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.distributed import gather_features
from model.objectives.losses.common import masked_row_col


def match_nce(frames: Tensor, texts: Tensor, valid: Tensor, temperature: float) -> Tensor:
    """frames, texts (N, E) paired rows, valid (N,) bool -> L_match over the gathered batch."""
    assert frames.shape == texts.shape and frames.dim() == 2, (
        f"frames {tuple(frames.shape)} vs texts {tuple(texts.shape)}"
    )
    assert valid.shape == frames.shape[:1] and valid.dtype == torch.bool, "valid (N,) bool"
    frames, texts, valid = gather_features(frames.float(), texts.float(), valid)
    sim = F.normalize(frames, dim=-1) @ F.normalize(texts, dim=-1).T / temperature  # (N, N)
    row, col = masked_row_col(sim, valid)
    return 0.5 * (row + col)


def masked_token_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """logits (M, V) at the masked tokens, targets (M,) -> (mean cross-entropy, accuracy).

    With no masked token both are zero (the loss keeps its graph, so every head gets a
    gradient, of zero).
    """
    assert logits.dim() == 2 and targets.shape == logits.shape[:1], "logits (M, V), targets (M,)"
    if targets.numel() == 0:
        zero = logits.float().sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(logits.float(), targets)
    accuracy = (logits.argmax(-1) == targets).float().mean()
    return loss, accuracy.detach()


def order_loss(logits: Tensor, labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """logits (..., 2), labels and valid (...) bool -> (mean cross-entropy, accuracy) over the
    valid pairs; zero when none is valid."""
    assert logits.shape[-1] == 2 and logits.shape[:-1] == labels.shape == valid.shape, (
        f"logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, valid {tuple(valid.shape)}"
    )
    per_pair = F.cross_entropy(
        logits.float().flatten(0, -2), labels.flatten().long(), reduction="none"
    )
    right = (logits.argmax(-1) == labels.long()).flatten().float()
    keep = valid.flatten()
    count = keep.sum().clamp(min=1)
    zero = torch.zeros_like(per_pair)
    loss = torch.where(keep, per_pair, zero).sum() / count
    accuracy = torch.where(keep, right, zero).sum() / count
    return loss, accuracy.detach()
