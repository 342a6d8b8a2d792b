"""Everything-at-Once combinatorial loss against a direct implementation."""

import torch
import torch.nn.functional as F

from model.config import CombinatorialLossConfig
from model.objectives.losses.combinatorial import CombinatorialLoss


def direct_norm_softmax(a, b, t):
    """-mean_i log softmax_j(S/t)_ii - mean_j log softmax_i(S/t)_jj, S = cosine similarity."""
    n = a.shape[0]
    S = torch.stack(
        [
            torch.stack([F.cosine_similarity(a[i], b[j], dim=0, eps=0) for j in range(n)])
            for i in range(n)
        ]
    )
    by_row = -torch.stack([F.log_softmax(S[i] / t, 0)[i] for i in range(n)]).mean()
    by_col = -torch.stack([F.log_softmax(S[:, j] / t, 0)[j] for j in range(n)]).mean()
    return by_row + by_col


def direct_combinatorial(emb, present, weights, t):
    num, den = 0.0, 0.0
    for pair, w in weights.items():
        left, right = pair.split("-")
        rows = [i for i in range(emb["t"].shape[0]) if all(present[m][i] for m in left + right)]
        if not rows:
            continue
        num = num + w * direct_norm_softmax(emb[left][rows], emb[right][rows], t)
        den = den + w
    return num / den


def _inputs(seed, n=10, e=5):
    g = torch.Generator().manual_seed(seed)
    emb = {
        k: torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
        for k in ("t", "v", "a", "va", "ta", "tv")
    }
    present = {m: torch.rand(n, generator=g) < 0.75 for m in "tva"}
    return emb, present


def test_combinatorial_matches_direct_formula_value_and_gradients():
    emb, present = _inputs(0)
    weights = CombinatorialLossConfig().pair_weights
    loss, pairs = CombinatorialLoss(weights, 0.05)(emb, present)
    ref = direct_combinatorial(emb, present, weights, 0.05)
    torch.testing.assert_close(loss.double(), ref, atol=1e-5, rtol=1e-5)
    leaves = list(emb.values())
    for g1, g2 in zip(
        torch.autograd.grad(loss, leaves), torch.autograd.grad(ref, leaves), strict=True
    ):
        torch.testing.assert_close(g1.double(), g2, atol=1e-5, rtol=1e-5)
    assert set(pairs) == set(weights)


def test_pair_with_no_present_rows_drops_out_of_the_weights():
    emb, present = _inputs(1)
    present["a"] = torch.zeros_like(present["a"])  # no audio anywhere: only t-v remains
    weights = CombinatorialLossConfig().pair_weights
    loss, pairs = CombinatorialLoss(weights, 0.05)(emb, present)
    only_tv = direct_combinatorial(emb, present, {"t-v": 1.0}, 0.05)
    torch.testing.assert_close(loss.double(), only_tv, atol=1e-5, rtol=1e-5)
    assert pairs["t-a"].item() == 0.0
    for g in torch.autograd.grad(loss, list(emb.values()), allow_unused=True):
        assert g is None or torch.isfinite(g).all()


def test_custom_weights_and_temperature():
    emb, present = _inputs(2)
    weights = {"t-v": 0.5, "v-a": 2.0}
    loss, _ = CombinatorialLoss(weights, 0.1)(emb, present)
    torch.testing.assert_close(
        loss.double(), direct_combinatorial(emb, present, weights, 0.1), atol=1e-5, rtol=1e-5
    )
    assert CombinatorialLoss(weights).groups() == ["a", "t", "v"]
