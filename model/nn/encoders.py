"""Modality encoders: a ViT over frames, a transformer over audio sub-segments, a span encoder.

Each encoder works on a flat batch of items (N frames, N sub-segments, N spans); the
backbone reshapes to and from (B, S, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import ModelConfig
from model.nn.layers import Transformer, learned


class FrameEncoder(nn.Module):
    """ViT over one frame: patch_size patches, learned positions, no CLS (mean pooling).

    Masked patches (for masked visual modelling) have their patch embedding replaced by
    the caller's MASK embedding (the MVM objective owns it) before positions are added.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hp, wp = cfg.patch_grid
        self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        self.pos = learned(hp * wp, cfg.width)
        self.transformer = Transformer(
            cfg.width, cfg.vision_layers, cfg.heads, cfg.mlp_ratio, cfg.dropout
        )
        self.register_buffer(
            "mean", torch.tensor(cfg.frame_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(cfg.frame_std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, frames: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] RGB -> standardized float. (N, 3, H, W)."""
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        return (x - self.mean) / self.std

    def forward(
        self, frames: Tensor, patch_mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> Tensor:
        """frames (N, 3, H, W); patch_mask (N, P) bool and mask_token (D,), or neither.

        Returns patch tokens (N, P, D).
        """
        _, C, H, W = frames.shape
        assert self.cfg.frame_size == (H, W) and C == 3, f"frames {tuple(frames.shape)}"
        assert (patch_mask is None) == (mask_token is None), "patch_mask needs a mask_token"
        x = self.patch_embed(self.normalize(frames)).flatten(2).transpose(1, 2)  # (N, P, D)
        if patch_mask is not None:
            assert patch_mask.shape == x.shape[:2], f"patch_mask {tuple(patch_mask.shape)}"
            x = torch.where(patch_mask[..., None], mask_token.to(x.dtype), x)
        return self.transformer(x + self.pos)  # (N, P, D)

    def pool(self, tokens: Tensor) -> Tensor:
        """Average-pool patch tokens frame_pool x frame_pool: (N, P, D) -> (N, Nv, D)."""
        N, _, D = tokens.shape
        hp, wp = self.cfg.patch_grid
        k = self.cfg.frame_pool
        if k == 1:
            return tokens
        grid = tokens.transpose(1, 2).reshape(N, D, hp, wp)
        return F.avg_pool2d(grid, k).flatten(2).transpose(1, 2)  # (N, Nv, D)


def cells_to_patches(cell_mask: Tensor, cfg: ModelConfig) -> Tensor:
    """A mask over pooled cells (..., Nv) -> the mask over their patches (..., P)."""
    hp, wp = cfg.patch_grid
    k = cfg.frame_pool
    lead = cell_mask.shape[:-1]
    grid = cell_mask.reshape(*lead, hp // k, 1, wp // k, 1)
    return grid.expand(*lead, hp // k, k, wp // k, k).reshape(*lead, hp * wp)


class AudioEncoder(nn.Module):
    """Transformer over one sub-segment's log-mel block (T frames x M mels).

    Tokens are audio_patch consecutive spectrogram frames (all mels); a CLS token gives
    the sub-segment's target encoding, the other outputs are average-pooled by
    audio_pool into the tokens the joint encoder reads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.audio_frames // cfg.audio_patch
        self.patch_embed = nn.Linear(cfg.audio_patch * cfg.n_mels, cfg.width)
        self.cls = learned(cfg.width)
        self.pos = learned(1 + n, cfg.width)
        self.transformer = Transformer(
            cfg.width, cfg.audio_layers, cfg.heads, cfg.mlp_ratio, cfg.dropout
        )

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """audio (N, T, M) -> (cls (N, D), pooled tokens (N, Na, D))."""
        N, T, M = audio.shape
        cfg = self.cfg
        assert (cfg.audio_frames, cfg.n_mels) == (T, M), f"audio block {(T, M)}"
        x = self.patch_embed(audio.reshape(N, T // cfg.audio_patch, cfg.audio_patch * M))
        x = torch.cat([self.cls.to(x.dtype).expand(N, 1, -1), x], dim=1) + self.pos  # (N, 1+n, D)
        y = self.transformer(x)
        tokens = y[:, 1:].unflatten(1, (cfg.audio_tokens, cfg.audio_pool)).mean(2)  # (N, Na, D)
        return y[:, 0], tokens


class SpanEncoder(nn.Module):
    """Small transformer over one sub-segment's token embeddings; the CLS output encodes it."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cls = learned(cfg.width)
        self.pos = learned(1 + cfg.max_text_len, cfg.width)
        self.transformer = Transformer(
            cfg.width, cfg.span_layers, cfg.heads, cfg.mlp_ratio, cfg.dropout
        )

    def forward(self, emb: Tensor, mask: Tensor) -> Tensor:
        """emb (N, L, D) token embeddings, mask (N, L) bool -> (N, D)."""
        N, L, _ = emb.shape
        x = torch.cat([self.cls.to(emb.dtype).expand(N, 1, -1), emb], dim=1) + self.pos[: L + 1]
        key_mask = torch.cat([mask.new_ones(N, 1), mask], dim=1)  # (N, 1+L), CLS always valid
        return self.transformer(x, key_mask)[:, 0]
