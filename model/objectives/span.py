"""MERLOT Reserve's contrastive span objective: frame, audio and text terms.

Two joint passes share the frame tokens (model/masking.py has the masking rules):

- text view (frames + words): a MASKed sub-segment's output is a query for its audio
  encoding (audio term, when the sample has audio) and for its words' span encoding
  (text term, when it has words); a MASKed frame's pooled outputs are a query for that
  frame's own encoding (frame term).
- audio view (frames + audio): a MASKed audio sub-segment's output is a query for its
  words' span encoding (text term).

Queries and targets go through per-term linear heads into embed_dim. The MASK
embeddings that replace a frame's tokens and an audio sub-segment's first token are this
objective's parameters (a MASKed word is the MASK_ID token of the shared vocabulary).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.backbone import Audio, Backbone, Frames
from model.batch import Batch
from model.config import ModelConfig, SpanLossConfig
from model.joint import replace_first
from model.layers import learned
from model.losses.span import ContrastiveSpanLoss
from model.masking import SpanMasks, span_masks
from model.objectives.common import Encoded

TERMS = ("frame", "audio", "text")


class SpanObjective(nn.Module):
    @staticmethod
    def needs(cfg: SpanLossConfig) -> set[str]:
        """Backbone parts this objective uses."""
        return {"audio", "spans", "joint"}

    def __init__(self, model: ModelConfig, cfg: SpanLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, E = model.width, model.embed_dim
        self.frame_mask = learned(D)  # replaces every token of a MASKed frame
        self.audio_mask = learned(D)  # replaces a MASKed audio sub-segment (its first token)
        self.query = nn.ModuleDict({t: nn.Linear(D, E) for t in TERMS})
        self.target = nn.ModuleDict({t: nn.Linear(D, E) for t in TERMS})
        self.loss = ContrastiveSpanLoss(TERMS, cfg.init_log_scale, cfg.max_log_scale)

    def masks(self, batch: Batch, generator: torch.Generator | None) -> SpanMasks:
        if batch.masks is not None:
            return batch.masks
        return span_masks(
            batch.segment_mask,
            batch.audio_present,
            batch.text_present,
            self.cfg.mask_rate,
            self.cfg.frame_mask_rate,
            generator,
        )

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.masks(batch, generator)
        seg = batch.segment_mask  # (B, S)
        frames, audio, spans = encoded.frames, encoded.audio, encoded.spans
        # MASKed frames: every token replaced; MASKed audio: first token replaced, rest hidden
        hidden = self.frame_mask.to(frames.tokens.dtype)
        hidden = torch.where(m.frames[:, :, None, None], hidden, frames.tokens)  # (B, S, Nv, D)
        audio_in = replace_first(audio.tokens, m.audio_view, self.audio_mask)  # (B, S, 3, Na, D)
        tv = backbone.text_view(
            Frames(hidden, frames.embedding), batch.text, batch.text_mask, seg, m.text_view
        )
        av = backbone.audio_view(
            frames, Audio(audio.cls, audio_in), seg, batch.audio_present, m.audio_view
        )

        frame_valid = (m.frames & seg).flatten()  # (B*S,)
        frame_q = self.query["frame"](tv.frames.mean(2)).flatten(0, 1)  # (B*S, E)
        frame_t = self.target["frame"](frames.embedding).flatten(0, 1)  # (B*S, E)

        q_text_view = tv.subsegments[:, :, :, 0]  # (B, S, 3, D) outputs at the MASK tokens
        q_audio_view = av.subsegments[:, :, :, 0]  # (B, S, 3, D)
        audio_valid = (m.text_view & batch.audio_valid).flatten()  # (B*S*3,)
        audio_q = self.query["audio"](q_text_view).flatten(0, 2)  # (B*S*3, E)
        audio_t = self.target["audio"](audio.cls).flatten(0, 2)  # (B*S*3, E)

        words = batch.text_present  # (B, S, 3)
        text_valid = torch.cat(
            [(m.text_view & words).flatten(), (m.audio_view & words & batch.audio_valid).flatten()]
        )  # (2*B*S*3,)
        text_q = self.query["text"](torch.cat([q_text_view, q_audio_view])).flatten(0, 2)
        text_t = self.target["text"](spans).flatten(0, 2).repeat(2, 1)  # (2*B*S*3, E)

        terms = self.loss(
            {
                "frame": (frame_q, frame_t, frame_valid),
                "audio": (audio_q, audio_t, audio_valid),
                "text": (text_q, text_t, text_valid),
            }
        )
        return sum(terms.values()), terms
