"""Masks for the span objective and for masked visual modelling, as pure functions.

Everything here is a pure function of its inputs and a `torch.Generator`: the same
inputs and seed give the same masks, inputs are never modified, and a caller may draw
`span_masks` ahead and put the result in `Batch.masks` (the model draws them otherwise;
`SpanMasks`, the record, lives with the batch in model/data/batch.py).

Span masks (MERLOT Reserve, docs/DESIGN.md section 3). Per sample, `mask_rate` (25%) of the
real sub-segments are MASKed, split between two views of the joint encoder:

- text view (frames + words): `text_view` sub-segments have their words replaced by one
  MASK token. The query there is contrasted with the sub-segment's audio (text->audio)
  when the sample has audio, and with its words' span encoding when it has words.
  Half of the budget (rounded up) when the sample has audio, all of it otherwise.
- audio view (frames + audio tokens): `audio_view` sub-segments have their audio replaced
  by one MASK embedding; the query is contrasted with the words' span encoding
  (audio->text). Drawn only from sub-segments with words, disjoint from `text_view`.

`frames` MASKs `frame_mask_rate` of a sample's real frames in the text view; the joint
output pooled over a masked frame's positions is contrasted with that frame's encoding
(the frame term). At least one frame per sample is masked when the rate is above zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.config import SUBSEGMENTS
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
    frame_mask_rate: float = 0.25,
    generator: torch.Generator | None = None,
) -> SpanMasks:
    """Draw the span masks of a batch (see the module docstring for the rules).

    segment_mask (B, S) bool, audio_present (B,) bool, text_present (B, S, 3) bool.
    """
    B, S = segment_mask.shape
    assert audio_present.shape == (B,), f"audio_present {tuple(audio_present.shape)}"
    assert text_present.shape == (B, S, SUBSEGMENTS), f"text_present {tuple(text_present.shape)}"
    assert 0.0 <= mask_rate <= 1.0 and 0.0 <= frame_mask_rate <= 1.0, "rates must lie in [0, 1]"
    real = segment_mask[:, :, None].expand(B, S, SUBSEGMENTS).reshape(B, -1)  # (B, 3S)
    words = (text_present & segment_mask[:, :, None]).reshape(B, -1)  # (B, 3S)
    budget = _round(mask_rate * real.sum(1).float())  # (B,)
    with_audio = audio_present.bool()
    n_text_view = torch.where(with_audio, (budget + 1) // 2, budget)  # (B,)
    n_audio_view = torch.where(with_audio, budget - n_text_view, torch.zeros_like(budget))
    # text view: any real sub-segment when there is audio to predict, else one with words
    text_view = choose(torch.where(with_audio[:, None], real, words), n_text_view, generator)
    audio_view = choose(words & ~text_view, n_audio_view, generator)

    n_frames = segment_mask.sum(1)  # (B,)
    n_masked = _round(frame_mask_rate * n_frames.float())
    if frame_mask_rate > 0:
        n_masked = n_masked.clamp(min=1)
    frames = choose(segment_mask.bool(), n_masked, generator)
    return SpanMasks(
        text_view=text_view.view(B, S, SUBSEGMENTS),
        audio_view=audio_view.view(B, S, SUBSEGMENTS),
        frames=frames,
    )


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
