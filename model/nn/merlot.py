"""MERLOT's masks and reordering plans, as pure functions (docs/DESIGN.md section 3.8).

Each function depends only on its inputs and a `torch.Generator`: the same inputs and
seed give the same result, and inputs are never modified.

- `mlm_masks`: which word tokens a window MASKs for language modelling. Per window,
  `round(rate * n)` of its n eligible tokens (at least one when n > 0); of those,
  `round(attention_share * count)` are the eligible tokens the frames attend to most
  (highest score, ties to the earlier token), the rest drawn uniformly from the others.
- `reorder_plan`: which frames a window shuffles. A window with at least two real
  segments is picked with probability `rate`; a picked window shuffles k of its real
  segments' frames, k uniform in 2..n (n real segments), by a uniformly random
  permutation among those k slots. Slot i then shows the frame of segment `source[i]`.
- `order_pairs` / `pair_labels`: every pair of slots a < b, valid when both are
  shuffled, labelled True when the frame shown at a comes first in the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.nn.masking import choose


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def _round(x: Tensor) -> Tensor:
    return torch.floor(x + 0.5).long()


def mlm_masks(
    eligible: Tensor,
    scores: Tensor,
    rate: float,
    attention_share: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """eligible (B, N) bool, scores (B, N) float (attention received) -> masked (B, N) bool."""
    assert eligible.dim() == 2 and scores.shape == eligible.shape, "eligible, scores (B, N)"
    assert 0.0 < rate <= 1.0 and 0.0 <= attention_share <= 1.0, "rates out of range"
    n = eligible.sum(1)  # (B,)
    count = torch.where(n > 0, _round(rate * n.float()).clamp(min=1), 0).minimum(n)  # (B,)
    top = _round(attention_share * count.float())  # (B,) masks taken by attention
    ranked = scores.float().masked_fill(~eligible, float("-inf"))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = order.argsort(dim=1)  # (B, N) 0 = most attended
    attended = (rank < top[:, None]) & eligible
    rest = choose(eligible & ~attended, count - top, generator)
    return attended | rest


@dataclass
class Reorder:
    """Which slots show a shuffled frame, and whose frame each slot shows."""

    shuffled: Tensor  # (B, S) bool: the slot's frame was shuffled (its position is hidden)
    source: Tensor  # (B, S) long: slot i shows the frame of segment source[i]


def reorder_plan(
    segment_mask: Tensor, rate: float, generator: torch.Generator | None = None
) -> Reorder:
    """segment_mask (B, S) bool -> the windows' shuffles (see the module docstring)."""
    B, S = segment_mask.shape
    assert 0.0 <= rate <= 1.0, f"rate {rate} is not in [0, 1]"
    device = segment_mask.device
    n = segment_mask.sum(1)  # (B,)
    picked = (_uniform((B,), generator, device) < rate) & (n >= 2)
    k = 2 + torch.floor(_uniform((B,), generator, device) * (n - 1).clamp(min=0)).long()
    shuffled = choose(segment_mask.bool(), torch.where(picked, k, 0), generator)  # (B, S)
    position = torch.arange(S, device=device).expand(B, S)
    draw = _uniform((B, S), generator, device)
    # shuffled slots first in both orders, the others after them in position order
    by_position = torch.where(shuffled, position, position + S).argsort(dim=1)
    by_draw = torch.where(shuffled, draw, 2.0 + position).argsort(dim=1)
    source = torch.empty_like(position).scatter_(1, by_position, by_draw)
    return Reorder(shuffled=shuffled, source=source)


def order_pairs(num_segments: int, device: torch.device | str = "cpu") -> Tensor:
    """(2, P) slot indices (a, b) with a < b, P = S (S - 1) / 2, in row-major order."""
    return torch.triu_indices(num_segments, num_segments, 1, device=device)


def pair_labels(plan: Reorder) -> tuple[Tensor, Tensor]:
    """(labels, valid), each (B, P): labels[p] = source[a] < source[b]; valid: both shuffled."""
    a, b = order_pairs(plan.source.shape[1], plan.source.device)
    return plan.source[:, a] < plan.source[:, b], plan.shuffled[:, a] & plan.shuffled[:, b]
