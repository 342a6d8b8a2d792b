"""Transformer building blocks: pre-norm blocks over scaled_dot_product_attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def init_weights(module: nn.Module) -> None:
    """Truncated-normal(0.02) linear and embedding weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def learned(*shape: int) -> nn.Parameter:
    """A learned embedding (positions, CLS, MASK), truncated-normal(0.02) initialized."""
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(shape), std=0.02))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert width % heads == 0, f"width {width} not divisible by heads {heads}"
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, h, T, d)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, T, d)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))

    def weights(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """The attention probabilities forward uses (without dropout): (B, h, T queries, T keys)."""
        B, T, D = x.shape
        q, k, _ = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        q, k = (t.transpose(1, 2) for t in (q, k))  # (B, h, T, d)
        logits = q @ k.transpose(-1, -2) / math.sqrt(D // self.heads)  # (B, h, T, T)
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return logits.softmax(-1)


class Block(nn.Module):
    def __init__(
        self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln1(x), key_mask)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """A stack of pre-norm blocks and a final LayerNorm.

    key_mask (B, T) bool marks the tokens that may be attended to. A row with no such
    token (an empty modality) attends to its first token instead, so its output stays
    finite; callers exclude such rows from every loss.
    """

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        key_mask = self._keys(x, key_mask)
        for block in self.blocks:
            x = block(x, key_mask)
        return self.ln_f(x)

    def last_attention(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Attention probabilities of the last block, (B, h, T, T), heads apart (no dropout)."""
        key_mask = self._keys(x, key_mask)
        for block in self.blocks[:-1]:
            x = block(x, key_mask)
        last = self.blocks[-1]
        return last.attn.weights(last.ln1(x), key_mask)

    @staticmethod
    def _keys(x: Tensor, key_mask: Tensor | None) -> Tensor | None:
        """The key mask, where a row with no valid token attends to its first token."""
        assert x.dim() == 3, f"expected (B, T, D), got {tuple(x.shape)}"
        if key_mask is None:
            return None
        assert key_mask.shape == x.shape[:2], f"key_mask {key_mask.shape} vs x {x.shape}"
        first = torch.zeros_like(key_mask)
        first[:, 0] = True
        return key_mask | (first & ~key_mask.any(1, keepdim=True))  # (B, T)


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of x over `dim` where mask is True; zero where nothing is. mask lacks x's last dim."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim) / w.sum(dim).clamp(min=1.0)
