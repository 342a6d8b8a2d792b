"""Inputs of the joint transformer: per-segment token groups with their embeddings.

The joint sequence of a sample is, segment after segment (MERLOT Reserve):

    [frame tokens (Nv)] [sub-segment 0 (K)] [sub-segment 1 (K)] [sub-segment 2 (K)]

where a sub-segment holds its words (text view, K = L) or its pooled audio tokens
(audio view, K = Na). Every token gets a segment embedding, a kind embedding (frame /
text / audio) and a position inside its group; sub-segment tokens also get the
sub-segment index. Padding is handled by a key mask, never by the sequence layout, so
a shape depends only on (B, S, L) and the config. MASK embeddings for frames and audio
belong to the objective that masks them (model/objectives/span.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import SUBSEGMENTS, ModelConfig
from model.nn.layers import learned

FRAME, TEXT, AUDIO = 0, 1, 2


class JointInput(nn.Module):
    """Learned embeddings that place frame, word and audio tokens in the joint sequence."""

    def __init__(self, cfg: ModelConfig, audio: bool = True) -> None:
        super().__init__()
        D = cfg.width
        self.segment = learned(cfg.max_segments, D)
        self.kind = learned(3, D)
        self.subsegment = learned(SUBSEGMENTS, D)
        self.frame_pos = learned(cfg.frame_tokens, D)
        self.text_pos = learned(cfg.max_text_len, D)
        self.audio_pos = learned(cfg.audio_tokens, D) if audio else None

    def frames(
        self, tokens: Tensor, unknown: Tensor | None = None, unknown_position: Tensor | None = None
    ) -> Tensor:
        """tokens (B, S, Nv, D) -> embedded (B, S, Nv, D).

        Frames marked `unknown` (B, S) bool get `unknown_position` (D,) in place of their
        segment embedding (MERLOT's temporal reordering hides where a shuffled frame was).
        """
        S = tokens.shape[1]
        segment = self.segment[:S, None]  # (S, 1, D)
        if unknown is not None:
            assert unknown_position is not None, "unknown frames need an unknown_position"
            segment = torch.where(unknown[:, :, None, None], unknown_position, segment)
        return tokens + self.frame_pos + segment + self.kind[FRAME]

    def words(self, emb: Tensor) -> Tensor:
        """Token embeddings (B, S, 3, L, D) -> embedded (B, S, 3, L, D)."""
        S, L = emb.shape[1], emb.shape[3]
        place = self.segment[:S, None, None] + self.subsegment[:, None] + self.kind[TEXT]
        return emb + self.text_pos[:L] + place

    def pooling(self, token: Tensor, batch_size: int, segments: int) -> Tensor:
        """One learned pooling token (D,) per segment -> (B, S, 1, D), placed by segment."""
        place = token.to(self.segment.dtype) + self.segment[:segments]  # (S, D)
        return place[None, :, None].expand(batch_size, -1, -1, -1)

    def audio(self, tokens: Tensor) -> Tensor:
        """tokens (B, S, 3, Na, D) -> embedded (B, S, 3, Na, D)."""
        assert self.audio_pos is not None, "this joint input was built without audio"
        S = tokens.shape[1]
        place = self.segment[:S, None, None] + self.subsegment[:, None] + self.kind[AUDIO]
        return tokens + self.audio_pos + place


def mask_words(
    text: Tensor, text_mask: Tensor, masked: Tensor, mask_id: int, pad_id: int, width: int = 1
) -> tuple[Tensor, Tensor]:
    """Replace the words of masked sub-segments by MASK and `width - 1` slots (new tensors).

    text, text_mask (B, S, 3, L) with L >= width; masked (B, S, 3) bool. A masked
    sub-segment becomes [MASK, PAD, ...] with key mask True at its first `width` tokens
    (the caller puts the embedding of a second MASK token, MASKAUDIO, in slot 1).
    """
    L = text.shape[-1]
    assert width <= L, f"{L} token slots cannot hold {width} MASK tokens"
    slots = torch.arange(L, device=text.device)  # (L,)
    m = masked[..., None]  # (B, S, 3, 1)
    text = torch.where(m, torch.where(slots == 0, mask_id, pad_id), text)
    text_mask = torch.where(m, slots < width, text_mask)
    return text, text_mask


def mask_keys(valid: Tensor, masked: Tensor) -> Tensor:
    """valid (B, S, 3, K) with masked (B, S, 3) sub-segments reduced to their first token."""
    first = torch.arange(valid.shape[-1], device=valid.device) == 0  # (K,)
    return torch.where(masked[..., None], first, valid)


def replace_first(tokens: Tensor, masked: Tensor, embedding: Tensor) -> Tensor:
    """tokens (B, S, 3, K, D) with the first token of masked (B, S, 3) groups set to embedding (D,)."""
    return replace_token(tokens, masked, embedding, 0)


def replace_token(tokens: Tensor, masked: Tensor, embedding: Tensor, index: int) -> Tensor:
    """tokens (B, S, 3, K, D) with token `index` of masked (B, S, 3) groups set to embedding (D,)."""
    at = torch.arange(tokens.shape[3], device=tokens.device) == index  # (K,)
    where = masked[..., None, None] & at[:, None]  # (B, S, 3, K, 1)
    return torch.where(where, embedding.to(tokens.dtype), tokens)
