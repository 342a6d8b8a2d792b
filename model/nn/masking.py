"""Masks for the span objective and for masked visual modelling, as pure functions.

Everything here is a pure function of its inputs and a `torch.Generator`: the same
inputs and seed give the same masks, inputs are never modified, and a caller may draw
`span_masks` ahead and put the result in `Batch.masks` (the model draws them otherwise;
`SpanMasks`, the record, lives with the batch in model/data/batch.py).

Span masks (MERLOT Reserve, docs/DESIGN.md section 3.1), per sample, over its real
sub-segments in window order:

- text view (frames + words): `text_view` sub-segments have their words replaced by MASK
  (and MASKAUDIO). Any real sub-segment when the sample has audio, else one with words.
- audio view (frames + audio): `audio_view` sub-segments have their audio replaced by
  MASK; only sub-segments with words, never one the text view chose.
- counts: `mask_rate` of the real sub-segments in each view (`per_view`, Reserve: 12 + 12
  of 48), or one such budget split between the views, half rounded up to the text view
  (`shared`). A sample without audio has no audio view.
- `audio_view_words`: with chance `neighbour_text_p` per audio-view MASK, its two
  neighbours (the sub-segments before and after it in the window) show their words in the
  audio view instead of their audio; only neighbours with words that are not masked there.
- `pass_words` (vision-free frame term): a coin per sample, words with `pass_words_p`,
  else audio; a sample without audio always gets words, one without words audio.
- `frames` (the masked-frames frame term only): `frame_mask_rate` of a sample's real
  frames, at least one when the rate is above zero.

`borrow_tokens` is Reserve's span adjustment: a text-view MASK over a sub-segment without
words takes one token from a neighbour that can spare it. (Reserve also pulls a word cut
by a sub-segment border into the masked span; Montage assigns whole words to one
sub-segment, model/data/collate.py, so no word is ever cut.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.config import PAD_ID, SUBSEGMENTS
from model.data.batch import SpanMasks


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def choose(eligible: Tensor, counts: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per row, a uniformly random subset of `counts[row]` eligible positions.

    eligible: (B, N) bool; counts: (B,) int. Returns (B, N) bool; a row with fewer
    eligible positions than its count gets all of them.
    """
    assert eligible.dim() == 2 and counts.shape == eligible.shape[:1], (
        "eligible (B, N), counts (B,)"
    )
    scores = _rand(tuple(eligible.shape), generator, eligible.device)  # (B, N) in [0, 1)
    scores = scores.masked_fill(~eligible, 2.0)  # ineligible sort last
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, N) rank of each position
    return (rank < counts[:, None]) & eligible


def _round(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).long()


def span_masks(
    segment_mask: Tensor,
    audio_present: Tensor,
    text_present: Tensor,
    mask_rate: float = 0.25,
    frame_mask_rate: float = 0.0,
    generator: torch.Generator | None = None,
    *,
    budget: str = "per_view",
    neighbour_text_p: float = 0.8,
    pass_words_p: float = 0.5,
) -> SpanMasks:
    """Draw the span masks of a batch (see the module docstring for the rules).

    segment_mask (B, S) bool, audio_present (B,) bool, text_present (B, S, 3) bool.
    """
    B, S = segment_mask.shape
    assert audio_present.shape == (B,), f"audio_present {tuple(audio_present.shape)}"
    assert text_present.shape == (B, S, SUBSEGMENTS), f"text_present {tuple(text_present.shape)}"
    for rate in (mask_rate, frame_mask_rate, neighbour_text_p, pass_words_p):
        assert 0.0 <= rate <= 1.0, f"rate {rate} must lie in [0, 1]"
    assert budget in ("per_view", "shared"), f"budget {budget!r}"
    real = segment_mask[:, :, None].expand(B, S, SUBSEGMENTS).reshape(B, -1)  # (B, 3S)
    words = (text_present & segment_mask[:, :, None]).reshape(B, -1)  # (B, 3S)
    count = _round(mask_rate * real.sum(1).float())  # (B,)
    with_audio = audio_present.bool()
    if budget == "per_view":
        n_text_view = count
        n_audio_view = torch.where(with_audio, count, torch.zeros_like(count))
    else:
        n_text_view = torch.where(with_audio, (count + 1) // 2, count)  # (B,)
        n_audio_view = torch.where(with_audio, count - n_text_view, torch.zeros_like(count))
    # text view: any real sub-segment when there is audio to predict, else one with words
    text_view = choose(torch.where(with_audio[:, None], real, words), n_text_view, generator)
    audio_view = choose(words & ~text_view, n_audio_view, generator)

    n_frames = segment_mask.sum(1)  # (B,)
    n_masked = _round(frame_mask_rate * n_frames.float())
    if frame_mask_rate > 0:
        n_masked = n_masked.clamp(min=1)
    frames = choose(segment_mask.bool(), n_masked, generator)

    device = segment_mask.device
    heads = audio_view & (_rand(tuple(audio_view.shape), generator, device) < neighbour_text_p)
    beside = torch.zeros_like(heads)  # (B, 3S) next to a MASK whose coin came up
    beside[:, 1:] |= heads[:, :-1]
    beside[:, :-1] |= heads[:, 1:]
    shown = beside & words & ~audio_view
    has_words = words.any(1)  # (B,)
    coin = _rand((B,), generator, device) < pass_words_p
    pass_words = torch.where(with_audio & has_words, coin, ~with_audio)
    return SpanMasks(
        text_view=text_view.view(B, S, SUBSEGMENTS),
        audio_view=audio_view.view(B, S, SUBSEGMENTS),
        frames=frames,
        audio_view_words=shown.view(B, S, SUBSEGMENTS),
        pass_words=pass_words,
    )


def _shift(x: Tensor, by: int, fill: bool | int = False) -> Tensor:
    """x (B, N, ...) moved `by` places along dim 1 (x[:, i - by] lands at i), filled at the edge."""
    out = torch.full_like(x, fill)
    if by > 0:
        out[:, by:] = x[:, :-by]
    else:
        out[:, :by] = x[:, -by:]
    return out


def borrow_tokens(
    text: Tensor, text_mask: Tensor, masked: Tensor, keep: Tensor, pad_id: int = PAD_ID
) -> tuple[Tensor, Tensor]:
    """Give each masked sub-segment without words one token from a neighbour (new tensors).

    text, text_mask (B, S, 3, L) left-aligned; masked (B, S, 3) bool; keep (B, S, 3) bool:
    sub-segments that must not give a token (masked in either view, padding). A neighbour
    gives only when it holds at least two tokens, and at most one token: in window order
    the one before gives its last token; else the one after gives its first, unless it
    already gives its last to the sub-segment after it.
    """
    B, S, _, L = text.shape
    N = S * SUBSEGMENTS
    text, text_mask = text.reshape(B, N, L), text_mask.reshape(B, N, L)
    count = text_mask.sum(-1)  # (B, N)
    can_give = ~keep.reshape(B, N) & (count >= 2)
    empty = masked.reshape(B, N) & (count == 0)
    from_before = empty & _shift(can_give, 1)  # (B, N) takes the last token of i - 1
    from_after = empty & ~from_before & _shift(can_give & ~_shift(from_before, -1), -1)
    gives_last, gives_first = _shift(from_before, -1), _shift(from_after, 1)  # (B, N) donors
    slot = torch.arange(L, device=text.device)  # (L,)
    last = text.gather(-1, (count - 1).clamp(min=0)[..., None])[..., 0]  # (B, N)
    token = torch.where(from_before, _shift(last, 1, pad_id), _shift(text[..., 0], -1, pad_id))
    # donors: the last slot emptied, or every token moved one slot left
    drop = gives_last[..., None] & (slot == (count - 1)[..., None])  # (B, N, L)
    text = torch.where(drop, pad_id, text)
    text_mask = text_mask & ~drop
    left = torch.cat([text[..., 1:], torch.full_like(text[..., :1], pad_id)], -1)
    left_mask = torch.cat([text_mask[..., 1:], torch.zeros_like(text_mask[..., :1])], -1)
    text = torch.where(gives_first[..., None], left, text)
    text_mask = torch.where(gives_first[..., None], left_mask, text_mask)
    # receivers: [token, PAD, ...]
    receive = (from_before | from_after)[..., None]  # (B, N, 1)
    text = torch.where(receive & (slot == 0), token[..., None], text)
    text_mask = text_mask | (receive & (slot == 0))
    return text.view(B, S, SUBSEGMENTS, L), text_mask.view(B, S, SUBSEGMENTS, L)


def cell_masks(
    shape: tuple[int, int],
    num_cells: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """MVM masks: per frame, round(ratio * num_cells) (at least 1) random cells.

    shape is (B, S); returns (B, S, num_cells) bool. A cell is one pooled frame token
    (frame_pool x frame_pool patches), so masking is blockwise at that granularity.
    """
    B, S = shape
    count = max(1, round(ratio * num_cells))
    eligible = torch.ones(B * S, num_cells, dtype=torch.bool, device=device)
    counts = torch.full((B * S,), count, dtype=torch.long, device=device)
    return choose(eligible, counts, generator).view(B, S, num_cells)
