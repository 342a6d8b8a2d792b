"""MERLOT Reserve's contrastive span objective: frame, audio and text terms.

Two joint passes share the frame tokens (model/nn/masking.py has the masking rules):

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

from collections.abc import Collection

import torch
from torch import Tensor, nn

from model.config import SUBSEGMENTS, ModelConfig, SpanLossConfig
from model.data.batch import Batch, SpanMasks
from model.nn.backbone import Audio, Backbone, Frames
from model.nn.joint import replace_first
from model.nn.layers import learned
from model.nn.masking import span_masks
from model.objectives.common import AUDIO_VIDEO, SPACES, TEXT_VIDEO, Encoded, window_mean
from model.objectives.losses.span import ContrastiveSpanLoss

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

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Window embeddings from the heads the span terms train.

        text <-> video, the frame term: every frame MASKed, the words visible (text view);
        the frame query head on each segment's pooled outputs gives the text side (over the
        segments with words), the frame target head on the frame encoding the video side.
        audio <-> video, the audio term: every sub-segment's words MASKed (only the frames
        speak); the audio query head at the MASKs gives the video side, the audio target
        head on the audio encoding the audio side (both over the sub-segments with audio).
        """
        seg, frames = batch.segment_mask, encoded.frames  # (B, S)
        out = {}
        if TEXT_VIDEO in spaces:
            hidden = self.frame_mask.to(frames.tokens.dtype).expand_as(frames.tokens)
            tv = backbone.text_view(
                Frames(hidden, frames.embedding), batch.text, batch.text_mask, seg
            )
            words = batch.text_present.any(-1)  # (B, S)
            out[TEXT_VIDEO] = {
                "text": window_mean(self.query["frame"](tv.frames.mean(2)), words),
                "video": window_mean(self.target["frame"](frames.embedding), seg),
            }
        if AUDIO_VIDEO in spaces:
            valid = batch.audio_valid  # (B, S, 3)
            every = seg[:, :, None].expand(-1, -1, SUBSEGMENTS)  # (B, S, 3)
            tv = backbone.text_view(frames, batch.text, batch.text_mask, seg, every)
            out[AUDIO_VIDEO] = {
                "audio": window_mean(self.target["audio"](encoded.audio.cls), valid),
                "video": window_mean(self.query["audio"](tv.subsegments[:, :, :, 0]), valid),
            }
        return out

    def scales(self) -> dict[str, Tensor]:
        """Term -> exp of its clipped log-scale (detached)."""
        return self.loss.scales()
