"""MIL-NCE against a direct, loop-by-loop implementation of its formula."""

import math

import torch

from model.objectives.losses.milnce import MilNceLoss


def direct_milnce(v, t, cand):
    """mean_i [log(sum_jk e^{x_ijk} + sum_jk e^{x_jik}) - log sum_k e^{x_iik}], x_ijk = v_i . t_jk."""
    N, K, _ = t.shape
    items = [i for i in range(N) if cand[i].any()]
    losses = []
    for i in items:
        terms = []
        for j in items:
            for k in range(K):
                if cand[j, k]:
                    terms.append(v[i] @ t[j, k])
                if cand[i, k]:
                    terms.append(v[j] @ t[i, k])
        pos = [v[i] @ t[i, k] for k in range(K) if cand[i, k]]
        losses.append(torch.logsumexp(torch.stack(terms), 0) - torch.logsumexp(torch.stack(pos), 0))
    return torch.stack(losses).mean()


def _inputs(seed, n=7, k=3, e=4):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.randn(n, k, e, generator=g, dtype=torch.float64).requires_grad_()
    cand = torch.rand(n, k, generator=g) < 0.6
    cand[0, 0] = True
    cand[1] = False  # an item without any caption is skipped
    return v, t, cand


def test_milnce_matches_direct_formula_value_and_gradients():
    v, t, cand = _inputs(0)
    ours = MilNceLoss()(v, t, cand)
    ref = direct_milnce(v, t, cand)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    for g1, g2 in zip(
        torch.autograd.grad(ours, (v, t)), torch.autograd.grad(ref, (v, t)), strict=True
    ):
        torch.testing.assert_close(g1.double(), g2, atol=1e-5, rtol=1e-5)


def test_milnce_single_candidate_single_item_is_log_two():
    v = torch.randn(1, 4)
    t = torch.randn(1, 1, 4)
    loss = MilNceLoss()(v, t, torch.ones(1, 1, dtype=torch.bool))
    assert abs(loss.item() - math.log(2.0)) < 1e-6  # the positive appears in both sums


def test_milnce_without_captions_is_zero_and_finite():
    v, t, cand = _inputs(1)
    loss = MilNceLoss()(v, t, torch.zeros_like(cand))
    assert loss.item() == 0.0
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(loss, (v, t)))
