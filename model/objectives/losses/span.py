"""MERLOT Reserve's contrastive span loss (docs/DESIGN.md section 3.1).

For paired queries x_l and targets y_l with a learned log-scale s (clipped at ln 100),
xh = norm(x) exp(s/2), yh = norm(y) exp(s/2), norm(x) = x / sqrt(|x|^2 + 1e-5):

    L = 1/2 [ mean_l (LSE_v xh_l.yh_v - xh_l.yh_l) + mean_l (LSE_u yh_l.xh_u - yh_l.xh_l) ]

over the valid rows l, u of the batch gathered from every process; v runs over the valid
rows and, when a term has them, its extra negatives: targets without a query that count
in the query -> target direction only (Reserve's audio term: every unmasked sub-segment's
audio). Each term (frame, audio, text) has its own scale; the span objective sums them.

Each term can also report how alike its rows are: the mean cosine between the queries of
two different valid rows, and the same for the targets. A term at chance with either near
1 has collapsed rather than merely not learnt yet (model.objectives.span.collapsed_terms).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model.distributed import gather_features
from model.objectives.losses.common import NEG, masked_row_col

# A term: (queries (N, E), targets (N, E), valid (N,) bool) or the same plus
# negatives (N,) bool, rows whose target is an extra negative.
Pair = tuple[Tensor, Tensor, Tensor] | tuple[Tensor, Tensor, Tensor, Tensor]


def l2norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """x / sqrt(|x|^2 + eps) over the last dim."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def chance(rows: Tensor, negatives: Tensor | int = 0) -> Tensor:
    """The term's value when every score is equal: 1/2 [ln(rows + negatives) + ln(rows)]
    (0 without rows). rows, negatives: counts, () tensors."""
    n = rows.float().clamp(min=1)
    return 0.5 * (torch.log(n + negatives) + torch.log(n))


def mean_cosine(z: Tensor, valid: Tensor) -> Tensor:
    """Mean cosine between the rows of z (N, E) over pairs of different valid (N,) rows,
    in O(N E): (|sum_l u_l|^2 - n) / (n (n - 1)) for the unit rows u_l; 0 below two rows."""
    u = l2norm(z.float()) * valid[:, None]
    n = valid.sum().float()
    total = u.sum(0)
    value = (total @ total - (u * u).sum()) / (n * (n - 1)).clamp(min=1.0)
    return torch.where(n > 1, value, torch.zeros_like(value))


def span_nce(
    x: Tensor, y: Tensor, valid: Tensor, log_scale: Tensor, negatives: Tensor | None = None
) -> Tensor:
    """One symmetric term on local rows: x, y (N, E), valid (N,) bool, log_scale () float,
    negatives (N,) bool or None (extra negatives of the query -> target direction)."""
    return _term(x, y, valid, log_scale, negatives)[0]


def _term(
    x: Tensor, y: Tensor, valid: Tensor, log_scale: Tensor, negatives: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss, chance, query mean cosine, target mean cosine) of one term; see span_nce."""
    assert x.shape == y.shape and x.dim() == 2, f"x {tuple(x.shape)} vs y {tuple(y.shape)}"
    assert valid.shape == x.shape[:1] and valid.dtype == torch.bool, "valid must be (N,) bool"
    if negatives is None:
        negatives = torch.zeros_like(valid)
    assert negatives.shape == valid.shape and negatives.dtype == torch.bool, "negatives (N,) bool"
    x, y, valid, negatives = gather_features(x.float(), y.float(), valid, negatives)
    half = torch.exp(log_scale.float() / 2)
    xh, yh = l2norm(x) * half, l2norm(y) * half  # (N_total, E)
    logits = xh @ yh.T  # (N_total, N_total) query l against target v
    _, col = masked_row_col(logits, valid)  # target l against the valid queries
    # query l against the valid targets and the extra negatives
    columns = valid | negatives
    scores = logits.masked_fill(~(valid[:, None] & columns[None, :]), NEG)
    row = torch.logsumexp(scores, dim=1) - scores.diagonal()  # (N_total,)
    n = valid.sum()
    row = torch.where(valid, row, torch.zeros_like(row)).sum() / n.clamp(min=1)
    level = chance(n, (columns & ~valid).sum()) * (n > 0)
    with torch.no_grad():
        alike = mean_cosine(x, valid), mean_cosine(y, valid)
    return 0.5 * (row + col), level, *alike


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

    def forward(
        self,
        pairs: dict[str, Pair],
        chances: dict[str, Tensor] | None = None,
        cosines: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """pairs: term -> (queries (N, E), targets (N, E), valid (N,) bool[, negatives (N,)
        bool]). Returns term losses; fills `chances` (term -> value at equal scores) and
        `cosines` (`query/<term>`, `target/<term>` -> mean cosine between valid rows) if given."""
        unknown = set(pairs) - set(self.log_scales)
        assert not unknown, f"no scale for terms {sorted(unknown)}"
        out = {}
        for t, (x, y, valid, *rest) in pairs.items():
            out[t], level, query, target = _term(
                x, y, valid, self.scale(t), rest[0] if rest else None
            )
            if chances is not None:
                chances[t] = level.detach()
            if cosines is not None:
                cosines[f"query/{t}"], cosines[f"target/{t}"] = query, target
        return out
