"""Shared pieces of the contrastive losses."""

from __future__ import annotations

import torch
from torch import Tensor

# Fill for excluded logits: exp(NEG - max) is exactly 0 in float32, and a row with nothing
# valid stays finite (its loss is then dropped), so no NaN reaches a gradient.
NEG = -1e9


def masked_row_col(logits: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the diagonal, by rows and by columns, over the valid rows only.

    logits (N, N) with positives on the diagonal; valid (N,) bool. Returns
    (mean_l [LSE_v logits[l, v] - logits[l, l]], mean_l [LSE_v logits[v, l] - logits[l, l]]),
    both over valid l and v; zero when no row is valid.
    """
    assert logits.dim() == 2 and logits.shape[0] == logits.shape[1] == valid.shape[0]
    pair = valid[:, None] & valid[None, :]  # (N, N)
    logits = logits.masked_fill(~pair, NEG)
    diag = logits.diagonal()  # (N,)
    row = torch.logsumexp(logits, dim=1) - diag  # (N,)
    col = torch.logsumexp(logits, dim=0) - diag  # (N,)
    count = valid.sum().clamp(min=1)
    zero = torch.zeros_like(row)
    return torch.where(valid, row, zero).sum() / count, torch.where(valid, col, zero).sum() / count
