"""Everything at Once's combinatorial contrastive loss (docs/DESIGN.md section 3).

NormSoftmax(S) = -mean_i log softmax_j(S/t)_ii - mean_j log softmax_i(S/t)_jj for a
cosine-similarity matrix S, both directions summed, t = 0.05. Over pairs p of
embedding sets (single modalities t, v, a and fused pairs va, ta, tv), each on the rows
where all its modalities are present:

    L = sum_p w_p NormSoftmax(S_p) / sum_p w_p

A pair with no present row in the (gathered) batch drops out of both sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import require
from model.distributed import gather_features
from model.objectives.losses.common import masked_row_col


def norm_softmax(a: Tensor, b: Tensor, valid: Tensor, temperature: float) -> Tensor:
    """a, b (N, E) paired rows, valid (N,) bool -> NormSoftmax over the valid rows (local)."""
    assert a.shape == b.shape and a.dim() == 2, f"a {tuple(a.shape)} vs b {tuple(b.shape)}"
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T  # (N, N)
    row, col = masked_row_col(sim / temperature, valid)
    return row + col


def split_pair(pair: str) -> tuple[str, str]:
    """'t-va' -> ('t', 'va')."""
    left, right = pair.split("-")
    return left, right


class CombinatorialLoss(nn.Module):
    def __init__(self, pair_weights: dict[str, float], temperature: float = 0.05) -> None:
        super().__init__()
        key = "model.objectives.combinatorial."
        require(temperature > 0, key + "temperature", f"must be > 0, got {temperature}")
        self.pair_weights = {p: w for p, w in pair_weights.items() if w > 0}
        require(bool(self.pair_weights), key + "pair_weights", "needs a pair with weight > 0")
        self.temperature = temperature

    def groups(self) -> list[str]:
        """Embedding sets the weighted pairs need ('t', 'v', 'va', ...)."""
        return sorted({g for p in self.pair_weights for g in split_pair(p)})

    def forward(
        self, embeddings: dict[str, Tensor], present: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """embeddings: group -> (N, E); present: modality ('t', 'v', 'a') -> (N,) bool.

        Returns the weighted loss and each pair's NormSoftmax.
        """
        groups = self.groups()
        mods = sorted(present)
        gathered = gather_features(
            *(embeddings[g].float() for g in groups), *(present[m] for m in mods)
        )
        emb = dict(zip(groups, gathered[: len(groups)], strict=True))
        pres = dict(zip(mods, gathered[len(groups) :], strict=True))
        total = weight = torch.zeros((), device=gathered[0].device)
        pairs = {}
        for p, w in self.pair_weights.items():
            left, right = split_pair(p)
            valid = torch.stack([pres[m] for m in left + right]).all(0)  # (N,)
            pairs[p] = norm_softmax(emb[left], emb[right], valid, self.temperature)
            has = valid.any().float()
            total = total + w * has * pairs[p]
            weight = weight + w * has
        return total / weight.clamp(min=1e-12), pairs
