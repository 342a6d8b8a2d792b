"""Masked visual modelling targets computed from the frames themselves: pixels and HOG.

Both return one vector per ViT patch, in the patch order of the frame encoder
(row-major over the (Hp, Wp) grid). They need no gradient and no extra model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY = (0.299, 0.587, 0.114)


def to_unit(frames: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] frames -> float [0, 1]."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def patchify(x: Tensor, patch: int) -> Tensor:
    """(N, C, H, W) -> (N, Hp*Wp, patch*patch*C), each patch flattened (py, px, c)."""
    N, C, H, W = x.shape
    assert H % patch == 0 and W % patch == 0, f"frame {(H, W)} not divisible by patch {patch}"
    x = x.reshape(N, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(N, (H // patch) * (W // patch), patch * patch * C)


@torch.no_grad()
def pixel_targets(frames: Tensor, patch: int, normalize: bool = True) -> Tensor:
    """(N, 3, H, W) -> (N, P, patch*patch*3) pixels in [0, 1], or per-patch standardized."""
    t = patchify(to_unit(frames), patch)
    if normalize:
        t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, keepdim=True) + 1e-6)
    return t


@torch.no_grad()
def hog_targets(frames: Tensor, patch: int, cell: int = 8, bins: int = 9) -> Tensor:
    """Histograms of oriented gradients per patch: (N, 3, H, W) -> (N, P, bins * (patch/cell)^2).

    Gray-level central-difference gradients; unsigned orientation in [0, pi) voted into
    `bins` bins by magnitude with linear interpolation between neighbouring bins; votes
    summed per cell x cell block; each patch's cells concatenated and L2-normalized.
    """
    assert patch % cell == 0, f"patch {patch} not divisible by HOG cell {cell}"
    x = to_unit(frames)
    N, _, H, W = x.shape
    gray = (x * x.new_tensor(_GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)  # (N, 1, H, W)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx = padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]  # (N, 1, H, W)
    gy = padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]
    magnitude = torch.sqrt(gx.pow(2) + gy.pow(2))
    angle = torch.atan2(gy, gx).remainder(math.pi)  # [0, pi)
    position = angle / (math.pi / bins) - 0.5  # bin centres at (b + 0.5) * pi / bins
    low = torch.floor(position)
    frac = position - low  # (N, 1, H, W) share of the vote for the upper bin
    low = low.long().remainder(bins)
    votes = torch.zeros(N, bins, H, W, device=x.device)  # (N, bins, H, W)
    votes.scatter_add_(1, low, magnitude * (1 - frac))
    votes.scatter_add_(1, (low + 1).remainder(bins), magnitude * frac)
    cells = F.avg_pool2d(votes, cell) * (cell * cell)  # (N, bins, H/cell, W/cell) sums
    per = patch // cell
    hc, wc = H // cell, W // cell
    cells = cells.reshape(N, bins, hc // per, per, wc // per, per)
    hist = cells.permute(0, 2, 4, 3, 5, 1).reshape(N, (hc // per) * (wc // per), per * per * bins)
    return F.normalize(hist, dim=-1, eps=1e-6)
