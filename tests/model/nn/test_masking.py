"""Span and MVM masks: budgets, eligibility, disjoint views, determinism, purity."""

import pytest
import torch

from model.data.batch import SpanMasks
from model.nn.masking import cell_masks, choose, span_masks


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread beats two on a busy 2-core machine (by 5-10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(B=4, S=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    segment_mask = torch.ones(B, S, dtype=torch.bool)
    segment_mask[1, 10:] = False  # a short window
    audio_present = torch.tensor([True, True, False, True])[:B]
    text_present = torch.rand(B, S, 3, generator=g) < 0.7
    text_present &= segment_mask[:, :, None]
    return segment_mask, audio_present, text_present


def test_span_masks_budget_split_between_views_and_disjoint():
    seg, audio, words = _inputs()
    m = span_masks(seg, audio, words, 0.25, 0.25, torch.Generator().manual_seed(1))
    m.check(4, 16)
    # sample 0: 48 sub-segments -> 12 masked, 6 text->audio and 6 audio->text
    assert int(m.text_view[0].sum()) == 6
    assert int(m.audio_view[0].sum()) == 6
    # sample 1: 10 real segments -> round(7.5) = 8 masked (4 + 4), none in padding
    assert int(m.text_view[1].sum()) + int(m.audio_view[1].sum()) == 8
    assert not m.text_view[1, 10:].any() and not m.audio_view[1, 10:].any()
    assert not (m.text_view & m.audio_view).any()
    # audio->text queries need words to predict
    assert not (m.audio_view & ~words).any()


def test_span_masks_without_audio_mask_only_words_in_the_text_view():
    seg, audio, words = _inputs()
    m = span_masks(seg, audio, words, 0.25, 0.25, torch.Generator().manual_seed(2))
    assert not m.audio_view[2].any(), "no audio view queries for a sample without audio"
    assert int(m.text_view[2].sum()) == 12
    assert not (m.text_view[2] & ~words[2]).any(), "without audio a text-view MASK needs words"


def test_frame_masks_share_and_at_least_one():
    seg, audio, words = _inputs()
    m = span_masks(seg, audio, words, 0.25, 0.25, torch.Generator().manual_seed(3))
    assert m.frames.sum(1).tolist() == [4, 3, 4, 4]  # 0.25 * 10 = 2.5 rounds half up to 3
    one = span_masks(seg[:, :1], audio, words[:, :1], 0.25, 0.25, torch.Generator().manual_seed(3))
    assert one.frames.all(), "a one-segment window still masks its frame"


def test_span_masks_are_a_pure_function_of_inputs_and_seed():
    seg, audio, words = _inputs()
    before = (seg.clone(), audio.clone(), words.clone())
    a = span_masks(seg, audio, words, generator=torch.Generator().manual_seed(7))
    b = span_masks(seg, audio, words, generator=torch.Generator().manual_seed(7))
    c = span_masks(seg, audio, words, generator=torch.Generator().manual_seed(8))
    for x, y in zip(
        (a.text_view, a.audio_view, a.frames), (b.text_view, b.audio_view, b.frames), strict=True
    ):
        assert torch.equal(x, y)
    assert not torch.equal(a.text_view, c.text_view)
    assert all(torch.equal(x, y) for x, y in zip(before, (seg, audio, words), strict=True))


def test_choose_picks_exact_counts_among_eligible():
    eligible = torch.tensor([[True, False, True, True], [False, False, True, False]])
    picked = choose(eligible, torch.tensor([2, 3]), torch.Generator().manual_seed(0))
    assert picked.sum(1).tolist() == [2, 1]
    assert not (picked & ~eligible).any()


def test_cell_masks_count_per_frame():
    m = cell_masks((2, 3), 60, 0.3, torch.Generator().manual_seed(0))
    assert m.shape == (2, 3, 60)
    assert (m.sum(-1) == 18).all()


def test_span_masks_check_rejects_overlapping_views():
    t = torch.zeros(1, 2, 3, dtype=torch.bool)
    t[0, 0, 0] = True
    bad = SpanMasks(text_view=t, audio_view=t.clone(), frames=torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(AssertionError, match="disjoint"):
        bad.check(1, 2)
