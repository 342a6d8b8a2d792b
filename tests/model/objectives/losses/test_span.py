"""Contrastive span loss against a direct, row-by-row implementation of its formula."""

import math

import pytest
import torch

from model.objectives.losses.span import ContrastiveSpanLoss, mean_cosine
from tests.helpers import direct_span, direct_span_with_negatives


def _leaves(seed, n=9, e=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
    valid = torch.rand(n, generator=g) < 0.7
    valid[0] = True
    return x, y, valid


def _grads(loss, *leaves):
    return torch.autograd.grad(loss, leaves)


def test_span_loss_matches_direct_formula_value_and_gradients():
    x, y, valid = _leaves(0)
    module = ContrastiveSpanLoss(("audio",), init_log_scale=1.0).double()
    ours = module({"audio": (x, y, valid)})["audio"]
    s = module.log_scales["audio"]
    ref = direct_span(x, y, valid, s)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    for g_ours, g_ref in zip(_grads(ours, x, y, s), _grads(ref, x, y, s), strict=True):
        torch.testing.assert_close(g_ours.double(), g_ref, atol=1e-5, rtol=1e-5)


def test_span_loss_in_float32_matches_the_float64_formula():
    x, y, valid = _leaves(1, n=16, e=32)
    module = ContrastiveSpanLoss(("text",), init_log_scale=2.0)
    ours = module({"text": (x.float(), y.float(), valid)})["text"]
    ref = direct_span(x, y, valid, torch.tensor(2.0, dtype=torch.float64))
    assert abs(ours.item() - ref.item()) < 1e-5


def test_invalid_rows_do_not_change_loss_or_get_gradient():
    x, y, valid = _leaves(2)
    module = ContrastiveSpanLoss(("frame",)).double()
    full = module({"frame": (x, y, valid)})["frame"]
    sub = module({"frame": (x[valid], y[valid], valid[valid])})["frame"]
    torch.testing.assert_close(full, sub)
    gx, gy = _grads(full, x, y)
    assert (gx[~valid] == 0).all() and (gy[~valid] == 0).all()
    assert gx[valid].abs().sum() > 0


def test_log_scale_is_clipped_at_ln_100():
    x, y, valid = _leaves(3)
    module = ContrastiveSpanLoss(("audio",), init_log_scale=7.0).double()
    high = module({"audio": (x, y, valid)})["audio"]
    (g,) = _grads(high, module.log_scales["audio"])
    assert g.item() == 0.0, "no gradient above the clip"
    at_clip = ContrastiveSpanLoss(("audio",), init_log_scale=math.log(100.0)).double()
    torch.testing.assert_close(high, at_clip({"audio": (x, y, valid)})["audio"])


def test_each_term_has_its_own_scale_and_init():
    module = ContrastiveSpanLoss()
    assert set(module.log_scales) == {"frame", "audio", "text"}
    assert all(p.item() == 1.0 for p in module.log_scales.values())


def test_no_valid_row_gives_zero_with_finite_gradients():
    x, y, _ = _leaves(4)
    valid = torch.zeros(x.shape[0], dtype=torch.bool)
    module = ContrastiveSpanLoss(("text",)).double()
    loss = module({"text": (x, y, valid)})["text"]
    assert loss.item() == 0.0
    for g in _grads(loss, x, y, module.log_scales["text"]):
        assert torch.isfinite(g).all()


def test_extra_negatives_enter_only_the_query_to_target_direction():
    x, y, valid = _leaves(5, n=12)
    negatives = ~valid & (torch.arange(12) % 2 == 0)  # some rows without a query
    negatives[valid.nonzero()[0]] = True  # a valid row marked too changes nothing
    module = ContrastiveSpanLoss(("audio",), init_log_scale=1.5).double()
    chances = {}
    ours = module({"audio": (x, y, valid, negatives)}, chances)["audio"]
    s = module.log_scales["audio"]
    ref = direct_span_with_negatives(x, y, valid, negatives, s)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    for g_ours, g_ref in zip(_grads(ours, x, y, s), _grads(ref, x, y, s), strict=True):
        torch.testing.assert_close(g_ours.double(), g_ref, atol=1e-5, rtol=1e-5)
    without = module({"audio": (x, y, valid)})["audio"]
    assert ours.item() > without.item(), "more negatives, higher loss"
    n, m = int(valid.sum()), int((negatives & ~valid).sum())
    assert m > 0
    assert chances["audio"].item() == pytest.approx(0.5 * (math.log(n + m) + math.log(n)))


def test_chance_is_the_value_when_every_score_is_equal():
    n = 7
    x = torch.ones(n, 4, dtype=torch.float64)  # every query and target the same direction
    valid = torch.ones(n, dtype=torch.bool)
    valid[5:] = False
    negatives = torch.zeros(n, dtype=torch.bool)
    negatives[6] = True
    module = ContrastiveSpanLoss(("audio", "text")).double()
    chances = {}
    losses = module({"audio": (x, x, valid, negatives), "text": (x, x, valid)}, chances)
    assert losses["text"].item() == pytest.approx(math.log(5))
    assert losses["audio"].item() == pytest.approx(0.5 * (math.log(6) + math.log(5)))
    for term in ("audio", "text"):
        assert chances[term].item() == pytest.approx(losses[term].item())


def test_mean_cosine_matches_every_pair_of_different_valid_rows():
    z = torch.randn(9, 5, dtype=torch.float64)
    valid = torch.tensor([True, True, False, True, True, False, True, True, True])
    u = torch.nn.functional.normalize(z[valid], dim=-1)
    pairs = [float(u[i] @ u[j]) for i in range(len(u)) for j in range(len(u)) if i != j]
    assert mean_cosine(z, valid).item() == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    assert mean_cosine(z, torch.zeros(9, dtype=torch.bool)).item() == 0.0
    one = torch.zeros(9, dtype=torch.bool)
    one[3] = True
    assert mean_cosine(z, one).item() == 0.0  # no pair


def test_a_collapsed_term_reports_cosines_of_one():
    n = 6
    x = torch.randn(n, 4, dtype=torch.float64)
    same = torch.ones(n, 4, dtype=torch.float64) * 3.0  # every row the same direction
    valid = torch.ones(n, dtype=torch.bool)
    module = ContrastiveSpanLoss(("audio", "text")).double()
    chances, cosines = {}, {}
    losses = module({"audio": (x, same, valid), "text": (same, same, valid)}, chances, cosines)
    assert cosines["target/audio"].item() == pytest.approx(1.0)
    assert cosines["query/audio"].item() < 0.9  # random queries are not alike
    assert cosines["query/text"].item() == pytest.approx(1.0)
    assert cosines["target/text"].item() == pytest.approx(1.0)
    assert losses["text"].item() == pytest.approx(chances["text"].item())  # all scores equal
