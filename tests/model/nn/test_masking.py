"""Span and MVM masks: budgets, eligibility, disjoint views, determinism, purity."""

import pytest
import torch

from model.data.batch import SpanMasks
from model.nn.masking import borrow_tokens, cell_masks, choose, span_masks


def _inputs(B=4, S=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    segment_mask = torch.ones(B, S, dtype=torch.bool)
    segment_mask[1, 10:] = False  # a short window
    audio_present = torch.tensor([True, True, False, True])[:B]
    text_present = torch.rand(B, S, 3, generator=g) < 0.7
    text_present &= segment_mask[:, :, None]
    return segment_mask, audio_present, text_present


def test_span_masks_shared_budget_split_between_views_and_disjoint():
    seg, audio, words = _inputs()
    g = torch.Generator().manual_seed(1)
    m = span_masks(seg, audio, words, 0.25, 0.25, g, budget="shared")
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
    m = span_masks(seg, audio, words, 0.25, 0.25, torch.Generator().manual_seed(2), budget="shared")
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


# ----------------------------------------------------------------------------- Reserve's recipe


def _round_half_up(x: float) -> int:
    return int(x + 0.5)


def test_per_view_budget_masks_a_quarter_in_each_view_disjoint():
    seg, audio, words = _inputs()
    m = span_masks(seg, audio, words, 0.25, 0.0, torch.Generator().manual_seed(4))
    m.check(4, 16)
    for b in range(4):
        real = 3 * int(seg[b].sum())
        want = _round_half_up(0.25 * real)
        assert int(m.text_view[b].sum()) == want, b  # 12 of 48; 8 of 30 (7.5 rounds up)
        assert int(m.audio_view[b].sum()) == (want if audio[b] else 0), b
    assert int(m.text_view[0].sum()) + int(m.audio_view[0].sum()) == 24  # Reserve's 12 + 12
    assert not (m.text_view & m.audio_view).any()
    assert not (m.audio_view & ~words).any()
    assert not m.text_view[1, 10:].any() and not m.audio_view[1, 10:].any()
    assert not m.frames.any(), "the vision-free frame term masks no frame"


def _neighbours(audio_view, words):
    """Independent: every sub-segment next to an audio-view MASK (window order) with words,
    not itself masked there."""
    B, S, _ = audio_view.shape
    a, w = audio_view.reshape(B, -1).tolist(), words.reshape(B, -1).tolist()
    out = torch.zeros(B, 3 * S, dtype=torch.bool)
    for b in range(B):
        for i in range(3 * S):
            if a[b][i]:
                for j in (i - 1, i + 1):
                    if 0 <= j < 3 * S and w[b][j] and not a[b][j]:
                        out[b, j] = True
    return out.view(B, S, 3)


def test_audio_view_words_are_the_masked_neighbours_with_words():
    seg, audio, words = _inputs()
    always = span_masks(
        seg, audio, words, generator=torch.Generator().manual_seed(5), neighbour_text_p=1.0
    )
    assert always.audio_view_words.any()
    assert torch.equal(always.audio_view_words, _neighbours(always.audio_view, words))
    never = span_masks(
        seg, audio, words, generator=torch.Generator().manual_seed(5), neighbour_text_p=0.0
    )
    assert torch.equal(never.audio_view, always.audio_view)
    assert not never.audio_view_words.any()
    some = span_masks(seg, audio, words, generator=torch.Generator().manual_seed(5))
    assert not (some.audio_view_words & ~always.audio_view_words).any()


def test_vision_free_pass_coin_respects_what_a_sample_has():
    seg, audio, words = _inputs()
    words[3] = False  # sample 3: audio, no words
    for p, expect in ((1.0, [True, True, True, False]), (0.0, [False, False, True, False])):
        m = span_masks(
            seg, audio, words, generator=torch.Generator().manual_seed(6), pass_words_p=p
        )
        assert m.pass_words.tolist() == expect, p  # sample 2 has no audio: always words


def _cells(rows, L=4):
    """rows: per flattened sub-segment a list of token ids -> text, text_mask (1, S, 3, L)."""
    text = torch.zeros(1, len(rows), L, dtype=torch.long)
    for i, ids in enumerate(rows):
        text[0, i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return text.view(1, -1, 3, L), (text != 0).view(1, -1, 3, L)


def test_an_empty_masked_subsegment_borrows_one_token_from_a_neighbour():
    #        0       1   2        3   4       5
    rows = [[5, 6], [], [7, 8, 9], [], [10], [11, 12]]
    text, mask = _cells(rows)
    masked = torch.tensor([False, True, False, True, False, False]).view(1, 2, 3)
    keep = masked.clone()
    keep[0, 1, 2] = True  # sub-segment 5 may not give (say, masked in the audio view)
    new_text, new_mask = borrow_tokens(text, mask, masked, keep)
    got = [new_text.view(6, 4)[i][new_mask.view(6, 4)[i]].tolist() for i in range(6)]
    # 1 takes the last token of 0; 3 takes the last of 2 (4 has only one token to give)
    assert got == [[5], [6], [7, 8], [9], [10], [11, 12]]
    assert torch.equal(text, _cells(rows)[0]) and torch.equal(mask, _cells(rows)[1]), "pure"
    # with 0 unable to give, 2 would give its first token to 1, but it gives its last to 3
    keep[0, 0, 0] = True
    new_text, new_mask = borrow_tokens(text, mask, masked, keep)
    got = [new_text.view(6, 4)[i][new_mask.view(6, 4)[i]].tolist() for i in range(6)]
    assert got == [[5, 6], [], [7, 8], [9], [10], [11, 12]]
    # with 3 not masked, 2 gives its first token to 1 and moves the rest left
    masked[0, 1, 0] = False
    new_text, new_mask = borrow_tokens(text, mask, masked, keep | masked)
    got = [new_text.view(6, 4)[i][new_mask.view(6, 4)[i]].tolist() for i in range(6)]
    assert got == [[5, 6], [7], [8, 9], [], [10], [11, 12]]
    assert bool((new_text[~new_mask] == 0).all()), "freed slots hold PAD"
