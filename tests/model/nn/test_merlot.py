"""MERLOT's masks and reordering plans: properties over random inputs (hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.nn.merlot import Reorder, mlm_masks, order_pairs, pair_labels, reorder_plan

FAST = settings(max_examples=60, deadline=None)


@st.composite
def token_rows(draw):
    """(eligible (B, N) bool, scores (B, N) distinct floats, rate, share, seed)."""
    B = draw(st.integers(1, 4))
    N = draw(st.integers(1, 24))
    bits = draw(st.lists(st.booleans(), min_size=B * N, max_size=B * N))
    eligible = torch.tensor(bits).view(B, N)
    seed = draw(st.integers(0, 2**31 - 1))
    scores = torch.randperm(B * N, generator=torch.Generator().manual_seed(seed)).view(B, N) / 10.0
    rate = draw(st.floats(0.01, 1.0))
    share = draw(st.floats(0.0, 1.0))
    return eligible, scores.float(), rate, share, seed


@FAST
@given(token_rows())
def test_mlm_masks_take_the_count_from_eligible_tokens_the_most_attended_first(case):
    eligible, scores, rate, share, seed = case
    before = (eligible.clone(), scores.clone())
    masked = mlm_masks(eligible, scores, rate, share, torch.Generator().manual_seed(seed))
    assert torch.equal(before[0], eligible) and torch.equal(before[1], scores), "inputs unchanged"
    assert not (masked & ~eligible).any(), "only eligible tokens are masked"
    for b in range(eligible.shape[0]):
        n = int(eligible[b].sum())
        count = 0 if n == 0 else min(n, max(1, int(rate * n + 0.5)))
        assert int(masked[b].sum()) == count
        top = int(share * count + 0.5)
        ranked = sorted(
            (i for i in range(eligible.shape[1]) if eligible[b, i]), key=lambda i: -scores[b, i]
        )
        assert all(masked[b, i] for i in ranked[:top]), "the most attended tokens are masked"
    again = mlm_masks(eligible, scores, rate, share, torch.Generator().manual_seed(seed))
    assert torch.equal(masked, again), "same seed, same masks"


def test_with_the_whole_share_by_attention_the_masks_are_the_top_scores():
    eligible = torch.tensor([[True, True, False, True, True, True]])
    scores = torch.tensor([[0.1, 0.5, 9.0, 0.3, 0.7, 0.2]])  # the ineligible one scores highest
    masked = mlm_masks(eligible, scores, rate=0.4, attention_share=1.0)  # round(0.4 * 5) = 2
    assert masked.tolist() == [[False, True, False, False, True, False]]


def test_uniform_masks_are_spread_over_every_eligible_token():
    eligible = torch.ones(2000, 10, dtype=torch.bool)
    scores = torch.arange(10.0).expand(2000, 10)  # attention would always pick the last ones
    masked = mlm_masks(eligible, scores, 0.2, 0.0, torch.Generator().manual_seed(0))
    share = masked.float().mean(0)  # per position: 2 of 10 masked, so about 0.2 each
    assert (share - 0.2).abs().max() < 0.04


@st.composite
def windows(draw):
    """(segment_mask (B, S) with at least one real segment per row, rate, seed)."""
    B = draw(st.integers(1, 6))
    S = draw(st.integers(1, 16))
    lengths = draw(st.lists(st.integers(1, S), min_size=B, max_size=B))
    mask = torch.arange(S)[None] < torch.tensor(lengths)[:, None]
    return mask, draw(st.floats(0.0, 1.0)), draw(st.integers(0, 2**31 - 1))


@FAST
@given(windows())
def test_reorder_plan_permutes_only_the_shuffled_real_segments(case):
    mask, rate, seed = case
    plan = reorder_plan(mask, rate, torch.Generator().manual_seed(seed))
    B, S = mask.shape
    for b in range(B):
        source, shuffled = plan.source[b].tolist(), plan.shuffled[b]
        assert sorted(source) == list(range(S)), "a permutation of the slots"
        assert not (shuffled & ~mask[b]).any(), "only real segments are shuffled"
        k = int(shuffled.sum())
        assert k == 0 or 2 <= k <= int(mask[b].sum())
        for i in range(S):
            if shuffled[i]:
                assert shuffled[source[i]], "a shuffled slot shows a shuffled frame"
            else:
                assert source[i] == i, "the other slots keep their frame"
    again = reorder_plan(mask, rate, torch.Generator().manual_seed(seed))
    assert torch.equal(plan.source, again.source) and torch.equal(plan.shuffled, again.shuffled)


@FAST
@given(windows())
def test_pair_labels_say_which_shuffled_frame_comes_first(case):
    mask, rate, seed = case
    plan = reorder_plan(mask, rate, torch.Generator().manual_seed(seed))
    labels, valid = pair_labels(plan)
    S = mask.shape[1]
    expected_pairs = [(a, b) for a in range(S) for b in range(a + 1, S)]
    assert [tuple(p) for p in order_pairs(S).T.tolist()] == expected_pairs
    assert labels.shape == valid.shape == (mask.shape[0], len(expected_pairs))
    for row in range(mask.shape[0]):
        for p, (a, b) in enumerate(expected_pairs):
            both = bool(plan.shuffled[row, a] and plan.shuffled[row, b])
            assert bool(valid[row, p]) == both
            first = int(plan.source[row, a]) < int(plan.source[row, b])
            assert bool(labels[row, p]) == first


def test_pair_labels_of_a_hand_made_shuffle():
    # slots 0..3; slots 1, 2, 3 shuffled: they show segments 3, 1, 2
    plan = Reorder(
        shuffled=torch.tensor([[False, True, True, True]]), source=torch.tensor([[0, 3, 1, 2]])
    )
    labels, valid = pair_labels(plan)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert valid.tolist() == [[False, False, False, True, True, True]]
    assert labels[valid].tolist() == [False, False, True]


def test_the_share_of_shuffled_windows_is_the_rate_and_rate_one_takes_them_all():
    mask = torch.ones(4000, 8, dtype=torch.bool)
    mask[:, 5:] = False
    plan = reorder_plan(mask, 0.4, torch.Generator().manual_seed(1))
    picked = plan.shuffled.any(1).float().mean().item()
    assert 0.37 < picked < 0.43
    sizes = plan.shuffled.sum(1)[plan.shuffled.any(1)]
    assert set(sizes.tolist()) == {2, 3, 4, 5}, "k uniform in 2..n"
    single = torch.zeros(3, 4, dtype=torch.bool)
    single[:, 0] = True
    assert not reorder_plan(single, 1.0).shuffled.any(), "one frame cannot be reordered"
    assert reorder_plan(mask[:50], 1.0).shuffled.any(1).all()
    assert not reorder_plan(mask[:50], 0.0).shuffled.any()
