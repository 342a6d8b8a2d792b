"""MERLOT Reserve's contrastive span loss (docs/DESIGN.md section 3).

For paired queries x_l and targets y_l with a learned log-scale s (clipped at ln 100),
xh = norm(x) exp(s/2), yh = norm(y) exp(s/2), norm(x) = x / sqrt(|x|^2 + 1e-5):

    L = 1/2 [ mean_l (LSE_v xh_l.yh_v - xh_l.yh_l) + mean_l (LSE_v yh_l.xh_v - yh_l.xh_l) ]

over the valid rows of the batch gathered from every process. Each term (frame, audio,
text) has its own scale; the span objective sums them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model.distributed import gather_features
from model.objectives.losses.common import masked_row_col


def l2norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """x / sqrt(|x|^2 + eps) over the last dim."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def span_nce(x: Tensor, y: Tensor, valid: Tensor, log_scale: Tensor) -> Tensor:
    """One symmetric term on local rows: x, y (N, E), valid (N,) bool, log_scale () float."""
    assert x.shape == y.shape and x.dim() == 2, f"x {tuple(x.shape)} vs y {tuple(y.shape)}"
    assert valid.shape == x.shape[:1] and valid.dtype == torch.bool, "valid must be (N,) bool"
    x, y, valid = gather_features(x.float(), y.float(), valid)
    half = torch.exp(log_scale.float() / 2)
    xh, yh = l2norm(x) * half, l2norm(y) * half  # (N_total, E)
    row, col = masked_row_col(xh @ yh.T, valid)
    return 0.5 * (row + col)


class ContrastiveSpanLoss(nn.Module):
    """Named symmetric contrastive terms, each with a learnable log-scale."""

    def __init__(
        self,
        terms: tuple[str, ...] = ("frame", "audio", "text"),
        init_log_scale: float = 1.0,
        max_log_scale: float = math.log(100.0),
    ) -> None:
        super().__init__()
        self.max_log_scale = max_log_scale
        self.log_scales = nn.ParameterDict(
            {t: nn.Parameter(torch.tensor(float(init_log_scale))) for t in terms}
        )

    def scale(self, term: str) -> Tensor:
        """The term's log-scale, clipped at max_log_scale (no gradient above it)."""
        return self.log_scales[term].clamp(max=self.max_log_scale)

    def scales(self) -> dict[str, Tensor]:
        """Term -> exp of its clipped log-scale, detached (for logging)."""
        return {t: self.scale(t).detach().exp() for t in self.log_scales}

    def forward(self, pairs: dict[str, tuple[Tensor, Tensor, Tensor]]) -> dict[str, Tensor]:
        """pairs: term -> (queries (N, E), targets (N, E), valid (N,) bool). Returns term losses."""
        unknown = set(pairs) - set(self.log_scales)
        assert not unknown, f"no scale for terms {sorted(unknown)}"
        return {t: span_nce(x, y, v, self.scale(t)) for t, (x, y, v) in pairs.items()}
