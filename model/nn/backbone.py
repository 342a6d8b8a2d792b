"""The MERLOT Reserve backbone: modality encoders and the joint transformer.

The backbone holds no objective: it encodes each modality, builds the joint sequences
(text view, audio view, or any per-segment group of modalities for the fusion
objective) and runs the joint transformer. Objectives (model/objectives/) read its
outputs and own their heads and MASK embeddings; downstream use (retrieval, probing)
can use the backbone alone.

The audio encoder, the span encoder and the joint transformer can be left out
(`audio=False`, ...) when no objective uses them, so that every parameter receives a
gradient and DDP needs no `find_unused_parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import SUBSEGMENTS, ModelConfig
from model.nn.encoders import AudioEncoder, FrameEncoder, SpanEncoder
from model.nn.joint import JointInput, mask_keys, mask_words, replace_token
from model.nn.layers import Transformer, init_weights

Part = tuple[Tensor, Tensor]  # tokens (B, S, T, D) and their key mask (B, S, T)


@dataclass
class Frames:
    tokens: Tensor  # (B, S, Nv, D) pooled ViT tokens, the joint encoder's frame input
    embedding: Tensor  # (B, S, D) mean of the ViT patch outputs, the frame's own encoding


@dataclass
class Audio:
    cls: Tensor  # (B, S, 3, D) one encoding per sub-segment (the span objective's target)
    tokens: Tensor  # (B, S, 3, Na, D) pooled tokens, the joint encoder's audio input


@dataclass
class JointOutput:
    frames: Tensor  # (B, S, Nv, D) joint outputs at the frame tokens
    subsegments: Tensor  # (B, S, 3, K, D) joint outputs at the words (K = L) or audio (K = Na)


class Backbone(nn.Module):
    def __init__(
        self, config: ModelConfig, audio: bool = True, spans: bool = True, joint: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        D = config.width
        self.token_embedding = nn.Embedding(config.vocab_size, D)
        self.frame_encoder = FrameEncoder(config)
        self.audio_encoder = AudioEncoder(config) if audio else None
        self.span_encoder = SpanEncoder(config) if spans else None
        self.joint_input = JointInput(config, audio=audio) if joint else None
        self.joint = (
            Transformer(D, config.joint_layers, config.heads, config.mlp_ratio, config.dropout)
            if joint
            else None
        )
        self.apply(init_weights)

    # ----------------------------------------------------------------- encoders

    def encode_frames(
        self, frames: Tensor, patch_mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> Frames:
        """frames (B, S, 3, H, W); patch_mask (B, S, P) bool and mask_token (D,), or neither."""
        B, S = frames.shape[:2]
        pm = None if patch_mask is None else patch_mask.flatten(0, 1)
        patches = self.frame_encoder(frames.flatten(0, 1), pm, mask_token)  # (B*S, P, D)
        tokens = self.frame_encoder.pool(patches)  # (B*S, Nv, D)
        return Frames(
            tokens=tokens.unflatten(0, (B, S)), embedding=patches.mean(1).unflatten(0, (B, S))
        )

    def encode_audio(self, audio: Tensor) -> Audio:
        """audio (B, S, 3, T, M) log-mel blocks."""
        assert self.audio_encoder is not None, "backbone built without the audio encoder"
        lead = audio.shape[:3]
        cls, tokens = self.audio_encoder(audio.flatten(0, 2))  # (N, D), (N, Na, D)
        return Audio(cls=cls.unflatten(0, lead), tokens=tokens.unflatten(0, lead))

    def encode_spans(self, text: Tensor, text_mask: Tensor) -> Tensor:
        """text, text_mask (B, S, 3, L) -> one encoding per sub-segment (B, S, 3, D)."""
        assert self.span_encoder is not None, "backbone built without the span encoder"
        lead = text.shape[:3]
        emb = self.token_embedding(text.flatten(0, 2))  # (N, L, D)
        return self.span_encoder(emb, text_mask.flatten(0, 2)).unflatten(0, lead)

    # ----------------------------------------------------------------- joint inputs

    def frame_part(
        self,
        frames: Frames,
        segment_mask: Tensor,
        unknown: Tensor | None = None,
        unknown_position: Tensor | None = None,
    ) -> Part:
        """Embedded frame tokens (B, S, Nv, D) and key mask (B, S, Nv); `unknown` (B, S)
        frames get `unknown_position` (D,) for their segment embedding (JointInput.frames)."""
        x = self.joint_input.frames(frames.tokens, unknown, unknown_position)
        return x, segment_mask[:, :, None].expand(x.shape[:3])

    def text_part(
        self,
        text: Tensor,
        text_mask: Tensor,
        segment_mask: Tensor,
        masked: Tensor | None = None,
        mask_audio: Tensor | None = None,
    ) -> Part:
        """Embedded words (B, S, 3L, D) and key mask (B, S, 3L); masked (B, S, 3) -> MASK,
        followed by the embedding mask_audio (D,) when given (MASKAUDIO; L grows to 2 if 1)."""
        cfg = self.config
        two = masked is not None and mask_audio is not None
        if two and text.shape[-1] < 2:
            text = F.pad(text, (0, 1), value=cfg.pad_id)
            text_mask = F.pad(text_mask, (0, 1), value=False)
        if masked is not None:
            width = 2 if two else 1
            text, text_mask = mask_words(text, text_mask, masked, cfg.mask_id, cfg.pad_id, width)
        emb = self.token_embedding(text)  # (B, S, 3, L, D)
        if two:
            emb = replace_token(emb, masked, mask_audio, 1)
        x = self.joint_input.words(emb)  # (B, S, 3, L, D)
        valid = text_mask & segment_mask[:, :, None, None]
        return x.flatten(2, 3), valid.flatten(2, 3)

    def audio_part(
        self,
        audio: Audio,
        segment_mask: Tensor,
        audio_present: Tensor,
        masked: Tensor | None = None,
    ) -> Part:
        """Embedded audio tokens (B, S, 3Na, D) and key mask (B, S, 3Na).

        A masked (B, S, 3) sub-segment keeps only its first token visible; the caller has
        put its MASK embedding there (joint.replace_first).
        """
        x = self.joint_input.audio(audio.tokens)  # (B, S, 3, Na, D)
        seg = (segment_mask & audio_present[:, None])[:, :, None, None]  # (B, S, 1, 1)
        valid = seg.expand(x.shape[:4])  # (B, S, 3, Na)
        if masked is not None:
            valid = mask_keys(valid, masked & seg[..., 0])
        return x.flatten(2, 3), valid.flatten(2, 3)

    # ----------------------------------------------------------------- joint transformer

    def fuse(self, parts: list[Part], per_segment: bool = False) -> list[Tensor]:
        """Run the joint transformer over token groups placed segment after segment.

        Each part is (tokens (B, S, T_i, D), key mask (B, S, T_i)). With per_segment the
        sequences are single segments (B*S of them, for the fusion objective), else the
        window in `segment_groups` runs of consecutive segments (see `run_length`; MERLOT Reserve
        used 2 groups of 8). Returns each part's outputs, (B, S, T_i, D).
        """
        assert self.joint is not None, "backbone built without the joint transformer"
        x, valid, size = self._runs(parts, 1 if per_segment else None)
        B, _, T, D = x.shape
        y = self.joint(x.reshape(-1, size * T, D), valid.reshape(-1, size * T))
        y = y.view(B, -1, T, D)[:, : parts[0][0].shape[1]]  # (B, S, T, D) without the padding
        return list(y.split([p[0].shape[2] for p in parts], dim=2))

    def run_length(self, segments: int) -> int:
        """Segments per joint sequence for a window of `segments`: ceil(S / segment_groups),
        so a full window splits into exactly `segment_groups` runs and a shorter one (a
        still frame, a short video's last window) into as many runs of that length as it
        fills, the last padded."""
        return -(-segments // self.config.segment_groups)

    def _runs(self, parts: list[Part], size: int | None) -> tuple[Tensor, Tensor, int]:
        """The parts side by side (B, S', T, D) and (B, S', T), S' padded with invalid
        segments to a multiple of the run length (`size`, else `run_length(S)`), and that length."""
        x = torch.cat([p[0] for p in parts], dim=2)  # (B, S, T, D)
        valid = torch.cat([p[1] for p in parts], dim=2)  # (B, S, T)
        S = x.shape[1]
        size = size or self.run_length(S)
        pad = -S % size
        if pad:
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
            valid = F.pad(valid, (0, 0, 0, pad), value=False)
        return x, valid, size

    def attention_received(self, parts: list[Part], queries: Tensor) -> Tensor:
        """How much each token is attended to by the `queries` (B, S, T) bool of its sequence.

        Parts and sequences as in `fuse` (windows in `segment_groups` runs). Returns (B, S, T):
        the last joint layer's attention probabilities, averaged over heads and over the
        query tokens of the token's sequence (0 where a sequence has no query).
        """
        assert self.joint is not None, "backbone built without the joint transformer"
        S = parts[0][0].shape[1]
        x, valid, size = self._runs(parts, None)
        B, S_pad, T, D = x.shape
        assert queries.shape == (B, S, T), f"queries {tuple(queries.shape)} vs {(B, S, T)}"
        queries = F.pad(queries, (0, 0, 0, S_pad - S), value=False)
        n = size * T
        probs = self.joint.last_attention(x.reshape(-1, n, D), valid.reshape(-1, n))
        q = queries.reshape(-1, n, 1).to(probs.dtype)  # (B*runs, n, 1)
        received = (probs.mean(1) * q).sum(1) / q.sum(1).clamp(min=1.0)  # (B*runs, n)
        return received.view(B, S_pad, T)[:, :S]

    def text_view(
        self,
        frames: Frames,
        text: Tensor,
        text_mask: Tensor,
        segment_mask: Tensor,
        masked_subsegments: Tensor | None = None,
        mask_audio: Tensor | None = None,
    ) -> JointOutput:
        """Joint encoding of frames + words; masked (B, S, 3) sub-segments become one MASK,
        or MASK then MASKAUDIO when the embedding mask_audio (D,) is given."""
        f, t = self.fuse(
            [
                self.frame_part(frames, segment_mask),
                self.text_part(text, text_mask, segment_mask, masked_subsegments, mask_audio),
            ]
        )
        return JointOutput(frames=f, subsegments=t.unflatten(2, (SUBSEGMENTS, -1)))

    def audio_view(
        self,
        frames: Frames,
        audio: Audio,
        segment_mask: Tensor,
        audio_present: Tensor,
        masked_subsegments: Tensor | None = None,
        words: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> JointOutput:
        """Joint encoding of frames + audio tokens; masked (B, S, 3) sub-segments show only
        their first token (see audio_part). words = (text, text_mask, shown (B, S, 3)):
        the shown sub-segments enter as their words instead of their audio."""
        parts = [
            self.frame_part(frames, segment_mask),
            self.audio_part(audio, segment_mask, audio_present, masked_subsegments),
        ]
        if words is not None:
            text, text_mask, shown = words
            x, valid = parts[1]
            hide = shown[..., None].expand(*shown.shape, audio.tokens.shape[3]).flatten(2)
            parts[1] = (x, valid & ~hide)
            parts.append(self.text_part(text, text_mask & shown[..., None], segment_mask))
        out = self.fuse(parts)
        return JointOutput(frames=out[0], subsegments=out[1].unflatten(2, (SUBSEGMENTS, -1)))

    def pooled(self, token: Tensor, content: Part, segment_mask: Tensor) -> Tensor:
        """Joint encoding without frames: per segment the pooling token (D,) followed by
        that segment's content part (audio_part or text_part). Returns the pooling
        token's outputs (B, S, D)."""
        B, S = segment_mask.shape
        pool = (self.joint_input.pooling(token, B, S), segment_mask[:, :, None])
        return self.fuse([pool, content])[0][:, :, 0]
