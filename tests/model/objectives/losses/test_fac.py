"""MMV's FAC loss against a direct, loop-by-loop implementation of its formula; its value
at chance; masks by property; and the two-process gathered loss and gradients."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.objectives.losses.fac import FacLoss, nce
from tests.helpers import average_over_ranks, on_gloo_ranks

TAU = 0.07


def cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def direct_nce(v, a, valid, tau):
    """1/2 [mean_i (LSE_j x_ij - x_ii) + mean_i (LSE_j x_ji - x_ii)], x_ij = cos(v_i, a_j) / tau."""
    rows = [i for i in range(v.shape[0]) if valid[i]]
    if not rows:
        return torch.zeros((), dtype=v.dtype)
    by_row, by_col = [], []
    for i in rows:
        by_row.append(
            torch.logsumexp(torch.stack([cos(v[i], a[j]) / tau for j in rows]), 0)
            - cos(v[i], a[i]) / tau
        )
        by_col.append(
            torch.logsumexp(torch.stack([cos(v[j], a[i]) / tau for j in rows]), 0)
            - cos(v[i], a[i]) / tau
        )
    return (torch.stack(by_row).mean() + torch.stack(by_col).mean()) / 2


def direct_milnce_cos(c, t, cand, tau):
    """mean_i [log(sum_jk e^{x_ijk} + sum_jk e^{x_jik}) - log sum_k e^{x_iik}], x_ijk = cos(c_i, t_jk) / tau."""
    N, K, _ = t.shape
    items = [i for i in range(N) if cand[i].any()]
    if not items:
        return torch.zeros((), dtype=c.dtype)
    losses = []
    for i in items:
        terms = []
        for j in items:
            for k in range(K):
                if cand[j, k]:
                    terms.append(cos(c[i], t[j, k]) / tau)
                if cand[i, k]:
                    terms.append(cos(c[j], t[i, k]) / tau)
        pos = [cos(c[i], t[i, k]) / tau for k in range(K) if cand[i, k]]
        losses.append(torch.logsumexp(torch.stack(terms), 0) - torch.logsumexp(torch.stack(pos), 0))
    return torch.stack(losses).mean()


def _inputs(seed, n=7, k=3, e=4):
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    video, audio, coarse, text = leaf(n, e), leaf(n, e), leaf(n, e), leaf(n, k, e)
    valid = torch.rand(n, generator=g) < 0.7
    valid[:2] = True
    cand = torch.rand(n, k, generator=g) < 0.6
    cand[0, 0] = True
    cand[1] = False  # an item without any caption is skipped by MIL-NCE
    return video, audio, valid, coarse, text, cand


def test_fac_matches_direct_formula_value_and_gradients():
    video, audio, valid, coarse, text, cand = _inputs(0)
    loss, terms = FacLoss(TAU, audio_weight=0.5, text_weight=2.0)(
        video, audio, valid, coarse, text, cand
    )
    va, vt = direct_nce(video, audio, valid, TAU), direct_milnce_cos(coarse, text, cand, TAU)
    ref = 0.5 * va + 2.0 * vt
    torch.testing.assert_close(terms["va"].double(), va, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["vt"].double(), vt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss.double(), ref, atol=1e-5, rtol=1e-5)
    leaves = (video, audio, coarse, text)
    for g1, g2 in zip(
        torch.autograd.grad(loss, leaves), torch.autograd.grad(ref, leaves), strict=True
    ):
        torch.testing.assert_close(g1.double(), g2, atol=1e-4, rtol=1e-4)


def test_one_valid_pair_scores_zero_nce():
    v, a = torch.randn(3, 4), torch.randn(3, 4)
    valid = torch.tensor([False, True, False])
    assert nce(v, a, valid, TAU).item() == pytest.approx(0.0, abs=1e-6)  # its own pair only


def test_nothing_valid_is_zero_with_finite_gradients():
    video, audio, valid, coarse, text, cand = _inputs(1)
    loss, terms = FacLoss(TAU)(
        video, audio, torch.zeros_like(valid), coarse, text, torch.zeros_like(cand)
    )
    assert loss.item() == 0.0 and terms["chance"].item() == 0.0
    grads = torch.autograd.grad(loss, (video, audio, coarse, text))
    assert all(torch.isfinite(g).all() for g in grads)


masks = st.integers(2, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=n, max_size=n),
    )
)


@settings(max_examples=40, deadline=None)
@given(masks, st.integers(0, 2**16))
def test_chance_is_the_loss_when_every_score_is_equal(mask, seed):
    valid, cand = torch.tensor(mask[0]), torch.tensor(mask[1])
    n = valid.shape[0]
    same = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss, terms = FacLoss(TAU, audio_weight=1.0, text_weight=0.5)(
        same.expand(n, 4), same.expand(n, 4), valid, same.expand(n, 4), same.expand(n, 3, 4), cand
    )
    torch.testing.assert_close(loss.double(), terms["chance"].double(), atol=1e-6, rtol=1e-6)
    if valid.sum() >= 2:
        assert terms["va"].item() == pytest.approx(math.log(int(valid.sum())), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(masks, st.integers(0, 2**16))
def test_rows_outside_the_masks_change_nothing(mask, seed):
    """Invalid audio rows and invalid captions may hold anything: the loss does not see them."""
    valid, cand = torch.tensor(mask[0]), torch.tensor(mask[1])
    n = valid.shape[0]
    g = torch.Generator().manual_seed(seed)
    video, audio, coarse = (torch.randn(n, 4, generator=g) for _ in range(3))
    text = torch.randn(n, 3, 4, generator=g)
    loss = FacLoss(TAU)(video, audio, valid, coarse, text, cand)[0]
    audio2, text2 = audio.clone(), text.clone()
    audio2[~valid] = 100 * torch.randn(int((~valid).sum()), 4, generator=g)
    text2[~cand] = 100 * torch.randn(int((~cand).sum()), 4, generator=g)
    other = FacLoss(TAU)(video, audio2, valid, coarse, text2, cand)[0]
    torch.testing.assert_close(loss, other, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- two processes

ROWS = (5, 3)  # unequal rows per rank


def _data():
    """The full batch, identical in every process (rank r uses its ROWS[r] slice)."""
    g = torch.Generator().manual_seed(0)
    n = sum(ROWS)
    return {
        "x": torch.randn(n, 6, generator=g),
        "y": torch.randn(n, 6, generator=g),
        "t": torch.randn(n, 3, 6, generator=g),
        "valid": torch.rand(n, generator=g) < 0.8,
        "cand": torch.rand(n, 3, generator=g) < 0.6,
    }


def _loss(data, rows):
    """FAC through small linear heads on `rows`; returns (loss, chance, parameter gradients)."""
    torch.manual_seed(1)
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(6, 4) for k in ("v", "a", "t")})
    heads["c"] = torch.nn.Linear(4, 4)  # fine -> coarse
    v = heads["v"](data["x"][rows])
    loss, terms = FacLoss(TAU)(
        v,
        heads["a"](data["y"][rows]),
        data["valid"][rows],
        heads["c"](v),
        heads["t"](data["t"][rows]),
        data["cand"][rows],
    )
    grads = dict(
        zip(
            [k for k, _ in heads.named_parameters()],
            torch.autograd.grad(loss, list(heads.parameters())),
            strict=True,
        )
    )
    return loss.detach(), terms["chance"], grads


def _rank(rank, world):
    start = sum(ROWS[:rank])
    loss, chance, grads = _loss(_data(), slice(start, start + ROWS[rank]))
    average_over_ranks(grads.values())
    return {"loss": loss, "chance": chance, "grads": grads}


def test_two_process_gathered_fac_equals_single_process_on_concatenated_batch(tmp_path):
    got = on_gloo_ranks(_rank, len(ROWS), tmp_path / "rank0.pt")
    loss, chance, grads = _loss(_data(), slice(0, sum(ROWS)))
    torch.testing.assert_close(got["loss"], loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["chance"], chance, atol=1e-5, rtol=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(got["grads"][name], g, atol=1e-5, rtol=1e-5, msg=name)
    local, _, _ = _loss(_data(), slice(0, ROWS[0]))
    assert not torch.allclose(local, loss), "negatives from the other rank change the loss"
