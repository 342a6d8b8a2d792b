"""Masked visual modelling: the loss and its pixel / HOG targets against direct versions."""

import math

import torch

from model.nn.targets import hog_targets, patchify, pixel_targets
from model.objectives.losses.mvm import MaskedPatchLoss


def test_masked_patch_loss_matches_direct_mean_over_masked_patches():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 6, generator=g, dtype=torch.float64).requires_grad_()
    target = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 5, generator=g) < 0.5
    mask[0, 0] = True
    for distance in ("l1", "l2"):
        ours = MaskedPatchLoss(distance)(pred, target, mask)
        d = [(pred[b, n] - target[b, n]) for b in range(2) for n in range(5) if mask[b, n]]
        per = [x.abs().mean() if distance == "l1" else (x**2).mean() for x in d]
        ref = torch.stack(per).mean()
        torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
        (g1,) = torch.autograd.grad(ours, pred)
        (g2,) = torch.autograd.grad(ref, pred)
        torch.testing.assert_close(g1.double(), g2, atol=1e-5, rtol=1e-5)
        assert (g1[~mask] == 0).all(), "unmasked patches get no gradient"


def test_patchify_and_pixel_targets_match_slicing():
    frames = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    t = pixel_targets(frames, 16, normalize=False)
    assert t.shape == (2, 6, 16 * 16 * 3)
    patch = frames[1, :, 16:32, 32:48].float() / 255  # row 1, col 2 -> index 1 * 3 + 2
    torch.testing.assert_close(t[1, 5], patch.permute(1, 2, 0).reshape(-1))
    n = pixel_targets(frames, 16, normalize=True)
    torch.testing.assert_close(n.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    assert patchify(torch.zeros(1, 1, 16, 16), 8).shape == (1, 4, 64)


def direct_hog(gray, cell, bins):
    """One cell at a time with explicit loops: magnitude-weighted, linearly interpolated votes."""
    H, W = gray.shape
    p = torch.nn.functional.pad(gray[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    hist = torch.zeros(H // cell, W // cell, bins, dtype=torch.float64)
    for yy in range(H):
        for xx in range(W):
            gx = float(p[yy + 1, xx + 2] - p[yy + 1, xx])
            gy = float(p[yy + 2, xx + 1] - p[yy, xx + 1])
            mag = math.hypot(gx, gy)
            ang = math.atan2(gy, gx) % math.pi
            pos = ang / (math.pi / bins) - 0.5
            lo = math.floor(pos)
            frac = pos - lo
            hist[yy // cell, xx // cell, lo % bins] += mag * (1 - frac)
            hist[yy // cell, xx // cell, (lo + 1) % bins] += mag * frac
    return hist


def test_hog_targets_match_a_direct_loop_implementation():
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(1, 3, 16, 32, generator=g)
    ours = hog_targets(frames, patch=16, cell=8, bins=9)  # (1, 2 patches, 4 cells * 9)
    gray = (frames[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    hist = direct_hog(gray.double(), 8, 9)  # (2, 4, 9)
    for patch in range(2):
        cells = hist[:, 2 * patch : 2 * patch + 2].reshape(-1)  # cells (0,0), (0,1), (1,0), (1,1)
        ref = cells / cells.norm()
        torch.testing.assert_close(ours[0, patch].double(), ref, atol=1e-5, rtol=1e-4)


def test_hog_of_a_vertical_edge_votes_for_horizontal_gradient():
    frames = torch.zeros(1, 3, 16, 16)
    frames[..., 8:] = 1.0  # dark left, bright right: gradient along +x, orientation 0
    hog = hog_targets(frames, patch=16, cell=16, bins=9)[0, 0]
    assert hog.argmax().item() in (0, 8)  # bins either side of angle 0 share the vote
    assert abs(hog[0].item() - hog[8].item()) < 1e-6
