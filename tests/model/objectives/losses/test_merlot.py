"""MERLOT's three losses against direct, element-by-element implementations of their
formulas (values and gradients), and the matching loss gathered over two processes."""

import math

import pytest
import torch
from torch import nn

from model.objectives.losses.merlot import masked_token_loss, match_nce, order_loss
from tests.helpers import average_over_ranks, on_gloo_ranks


def _close(a, b):
    torch.testing.assert_close(a.double(), b.double(), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- matching


def direct_match(f, t, valid, tau):
    """1/2 [mean_i (LSE_j c_ij - c_ii) + mean_i (LSE_j c_ji - c_ii)], c_ij = cos(f_i, t_j) / tau,
    i and j over the valid rows, written one row at a time."""
    rows = [i for i in range(f.shape[0]) if valid[i]]

    def c(i, j):
        return (f[i] @ t[j]) / (f[i].norm() * t[j].norm()) / tau

    to_text = [torch.logsumexp(torch.stack([c(i, j) for j in rows]), 0) - c(i, i) for i in rows]
    to_frame = [torch.logsumexp(torch.stack([c(j, i) for j in rows]), 0) - c(i, i) for i in rows]
    return 0.5 * (sum(to_text) / len(rows) + sum(to_frame) / len(rows))


def _pairs(seed, n=8, e=5):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
    t = torch.randn(n, e, generator=g, dtype=torch.float64).requires_grad_()
    valid = torch.rand(n, generator=g) < 0.7
    valid[:2] = True
    valid[-1] = False
    return f, t, valid


def test_matching_loss_equals_the_direct_formula_in_value_and_gradient():
    f, t, valid = _pairs(0)
    ours = match_nce(f, t, valid, temperature=0.05)
    ref = direct_match(f, t, valid, 0.05)
    _close(ours, ref)
    for g1, g2 in zip(
        torch.autograd.grad(ours, (f, t)), torch.autograd.grad(ref, (f, t)), strict=True
    ):
        torch.testing.assert_close(g1.double(), g2, atol=1e-5, rtol=1e-5)


def test_matching_ignores_invalid_rows_and_gives_them_no_gradient():
    f, t, valid = _pairs(1)
    full = match_nce(f, t, valid, 0.1)
    _close(full, match_nce(f[valid], t[valid], valid[valid], 0.1))
    gf, gt = torch.autograd.grad(full, (f, t))
    assert (gf[~valid] == 0).all() and (gt[~valid] == 0).all()
    assert gf[valid].abs().sum() > 0


def test_matching_one_row_is_zero_and_no_valid_row_is_zero_with_finite_gradients():
    f, t, valid = _pairs(2)
    one = torch.zeros_like(valid)
    one[0] = True
    assert abs(match_nce(f, t, one, 0.05).item()) < 1e-9  # the positive is the only candidate
    none = match_nce(f, t, torch.zeros_like(valid), 0.05)
    assert none.item() == 0.0
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(none, (f, t)))


# ----------------------------------------------------------------------------- MLM


def direct_mlm(logits, targets):
    """mean over masked tokens of -log softmax(logits_m)[target_m], and the share right."""
    losses, right = [], 0
    for m in range(logits.shape[0]):
        row = logits[m]
        losses.append(-(row[targets[m]] - torch.log(torch.exp(row).sum())))
        right += int(max(range(row.shape[0]), key=lambda v: row[v].item()) == targets[m].item())
    return sum(losses) / len(losses), right / logits.shape[0]


def test_masked_token_loss_equals_the_direct_formula_in_value_and_gradient():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 11, generator=g, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, 11, (6,), generator=g)
    targets[0] = logits[0].argmax()  # at least one right
    loss, accuracy = masked_token_loss(logits, targets)
    ref, ref_accuracy = direct_mlm(logits, targets)
    _close(loss, ref)
    assert accuracy.item() == pytest.approx(ref_accuracy) and accuracy.item() > 0
    (g1,) = torch.autograd.grad(loss, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g1.double(), g2, atol=1e-6, rtol=1e-6)


def test_masked_token_loss_of_uniform_logits_is_log_vocabulary():
    loss, _ = masked_token_loss(torch.zeros(4, 50), torch.tensor([3, 7, 0, 49]))
    assert loss.item() == pytest.approx(math.log(50))


def test_no_masked_token_is_zero_loss_with_a_graph():
    head = nn.Linear(3, 9)
    loss, accuracy = masked_token_loss(head(torch.zeros(0, 3)), torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0 and accuracy.item() == 0.0
    loss.backward()
    assert head.weight.grad is not None and (head.weight.grad == 0).all()


# ----------------------------------------------------------------------------- reordering


def direct_order(logits, labels, valid):
    """mean over valid pairs of -log softmax(logits_p)[label_p] (class 1: a comes first)."""
    losses, right = [], 0
    for idx in zip(*torch.nonzero(valid, as_tuple=True), strict=True):
        row, label = logits[idx], int(labels[idx])
        losses.append(-(row[label] - torch.log(torch.exp(row[0]) + torch.exp(row[1]))))
        right += int((row[1] > row[0]).item() == bool(label))
    return sum(losses) / len(losses), right / len(losses)


def test_order_loss_equals_the_direct_formula_in_value_and_gradient():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 10, 2, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.rand(3, 10, generator=g) < 0.5
    valid = torch.rand(3, 10, generator=g) < 0.6
    valid[0, 0] = True
    loss, accuracy = order_loss(logits, labels, valid)
    ref, ref_accuracy = direct_order(logits, labels, valid)
    _close(loss, ref)
    assert accuracy.item() == pytest.approx(ref_accuracy)
    (g1,) = torch.autograd.grad(loss, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g1.double(), g2, atol=1e-6, rtol=1e-6)
    assert (g1[~valid] == 0).all(), "invalid pairs get no gradient"


def test_order_loss_without_valid_pairs_is_zero_and_finite():
    logits = torch.randn(2, 3, 2, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.bool)
    loss, accuracy = order_loss(logits, none, none)
    assert loss.item() == 0.0 and accuracy.item() == 0.0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all()


# ----------------------------------------------------------------------------- two processes


ROWS = (5, 3)  # unequal rows per rank, as at the end of an epoch
FEATURES, EMBED = 6, 4


def _data():
    g = torch.Generator().manual_seed(0)
    n = sum(ROWS)
    valid = torch.rand(n, generator=g) < 0.8
    valid[0] = valid[-1] = True  # both ranks hold valid rows
    return torch.randn(n, FEATURES, generator=g), torch.randn(n, FEATURES, generator=g), valid


def _loss(rows):
    """Matching loss on `rows` through two small heads, seeded identically everywhere."""
    torch.manual_seed(1)
    frame, text = nn.Linear(FEATURES, EMBED), nn.Linear(FEATURES, EMBED)
    f, t, valid = _data()
    loss = match_nce(frame(f[rows]), text(t[rows]), valid[rows], 0.1)
    params = [*frame.parameters(), *text.parameters()]
    return loss.detach(), list(torch.autograd.grad(loss, params))


def _rank(rank, world):
    start = sum(ROWS[:rank])
    loss, grads = _loss(slice(start, start + ROWS[rank]))
    average_over_ranks(grads)
    return {"loss": loss, "grads": grads}


def test_two_process_matching_loss_takes_negatives_from_both_ranks(tmp_path):
    """Gathered over two gloo processes, loss and averaged gradients equal one process on the
    concatenated batch, and differ from the loss of a rank's own rows."""
    got = on_gloo_ranks(_rank, len(ROWS), tmp_path / "rank0.pt")
    ref_loss, ref_grads = _loss(slice(0, sum(ROWS)))
    torch.testing.assert_close(got["loss"], ref_loss, atol=1e-5, rtol=1e-5)
    for g, ref in zip(got["grads"], ref_grads, strict=True):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5)
    own_loss, _ = _loss(slice(0, ROWS[0]))
    assert abs(own_loss.item() - got["loss"].item()) > 1e-4, "negatives crossed ranks"
