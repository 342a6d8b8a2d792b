"""MERLOT Reserve's contrastive span objective: frame, audio and text terms.

Reserve's recipe (the default; model/nn/masking.py has the masking rules, docs/DESIGN.md
section 3.1 the whole of it):

- text view (frames + words): a MASKed sub-segment's words become MASK and MASKAUDIO.
  The output at MASKAUDIO queries the sub-segment's audio encoding (audio term), scored
  against the other masked audio of the batch and every unmasked sub-segment's audio;
  the output at MASK queries its words' span encoding (text term).
- audio view (frames + audio): a MASKed audio sub-segment's output queries its words'
  span encoding (text term); its neighbours may show their words instead of audio.
- frame term, a pass without frames: per segment one pooling token followed by that
  segment's audio or its words (a coin per sample); the pooling token's output queries the
  segment's frame encoding, for every real segment.

`SpanLossConfig` switches each part back to the recipe Montage used before (one MASK for
both targets, masked frames in the text view, masked-only audio negatives, no words in the
audio view, one budget split between the views, no token borrowing).

Queries and targets go through per-term linear heads into embed_dim. The MASK
embeddings (frame, audio, MASKAUDIO) and the pooling token are this objective's
parameters; a MASKed word is the MASK_ID token of the shared vocabulary.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import SUBSEGMENTS, ModelConfig, SpanLossConfig
from model.data.batch import Batch, SpanMasks
from model.nn.backbone import Audio, Backbone, Frames
from model.nn.joint import replace_first
from model.nn.layers import learned
from model.nn.masking import borrow_tokens, span_masks
from model.objectives.common import AUDIO_VIDEO, SPACES, TEXT_VIDEO, Encoded, window_mean
from model.objectives.losses.span import ContrastiveSpanLoss

TERMS = ("frame", "audio", "text")

# A term counts as collapsed when its loss is within COLLAPSED_NATS of chance while its
# queries or its targets are alike (mean cosine between different rows at least
# COLLAPSED_COSINE). Measured on the demo corpus (docs/DESIGN.md section 3.1): collapsed
# terms sat 0.00-0.04 nats from chance with one side at 0.94-0.99; learning ones were 0.11
# or more below chance by step 100, cosines 0.16-0.63.
COLLAPSED_NATS, COLLAPSED_COSINE = 0.05, 0.9


def collapsed_terms(means: dict[str, float]) -> dict[str, str]:
    """Span terms that have collapsed, each with a one-line account, from the objective's
    logged parts averaged over an evaluation (`<term>`, `chance/<term>`,
    `cos/query/<term>`, `cos/target/<term>`; a `span/` prefix is allowed)."""
    means = {k.removeprefix("span/"): v for k, v in means.items()}
    out = {}
    for t in TERMS:
        keys = (t, f"chance/{t}", f"cos/query/{t}", f"cos/target/{t}")
        if not all(k in means for k in keys):
            continue
        loss, level, query, target = (means[k] for k in keys)
        if level - loss < COLLAPSED_NATS and max(query, target) >= COLLAPSED_COSINE:
            out[t] = (
                f"span/{t} has collapsed: {loss:.3f} nats against {level:.3f} at chance, "
                f"mean cosine between rows {query:.2f} (queries) and {target:.2f} (targets)"
            )
    return out


class SpanObjective(nn.Module):
    @staticmethod
    def needs(cfg: SpanLossConfig) -> set[str]:
        """Backbone parts this objective uses."""
        return {"audio", "spans", "joint"}

    def __init__(self, model: ModelConfig, cfg: SpanLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, E = model.width, model.embed_dim
        self.vision_free = cfg.frame_term == "vision_free"
        if self.vision_free:
            self.pool = learned(D)  # the pooling token of the frame term's pass
        else:
            self.frame_mask = learned(D)  # replaces every token of a MASKed frame
        self.audio_mask = learned(D)  # replaces a MASKed audio sub-segment (its first token)
        self.mask_audio = learned(D) if cfg.mask_audio_token else None  # MASKAUDIO
        self.query = nn.ModuleDict({t: nn.Linear(D, E) for t in TERMS})
        self.target = nn.ModuleDict({t: nn.Linear(D, E) for t in TERMS})
        self.loss = ContrastiveSpanLoss(TERMS, cfg.init_log_scale, cfg.max_log_scale)

    def masks(self, batch: Batch, generator: torch.Generator | None) -> SpanMasks:
        if batch.masks is not None:
            return batch.masks
        cfg = self.cfg
        return span_masks(
            batch.segment_mask,
            batch.audio_present,
            batch.text_present,
            cfg.mask_rate,
            0.0 if self.vision_free else cfg.frame_mask_rate,
            generator,
            budget=cfg.mask_budget,
            neighbour_text_p=cfg.neighbour_text_p,
            pass_words_p=cfg.pass_words_p,
        )

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        cfg, m = self.cfg, self.masks(batch, generator)
        seg = batch.segment_mask  # (B, S)
        frames, audio = encoded.frames, encoded.audio
        text, text_mask, spans = batch.text, batch.text_mask, encoded.spans
        if cfg.borrow_tokens:
            keep = m.text_view | m.audio_view | ~seg[:, :, None]  # (B, S, 3) give nothing
            pad = backbone.config.pad_id
            text, text_mask = borrow_tokens(text, text_mask, m.text_view, keep, pad)
            spans = backbone.encode_spans(text, text_mask)  # (B, S, 3, D) the spans as masked
        words = text_mask.any(-1) & seg[:, :, None]  # (B, S, 3) after borrowing

        # text view: MASK (and MASKAUDIO) over the masked sub-segments' words
        shown = frames
        if not self.vision_free:  # MASKed frames: every token replaced
            hidden = self.frame_mask.to(frames.tokens.dtype)
            shown = Frames(
                torch.where(m.frames[:, :, None, None], hidden, frames.tokens), frames.embedding
            )
        tv = backbone.text_view(shown, text, text_mask, seg, m.text_view, self.mask_audio)
        q_words = tv.subsegments[:, :, :, 0]  # (B, S, 3, D) outputs at MASK
        q_audio = tv.subsegments[:, :, :, 0 if self.mask_audio is None else 1]  # at MASKAUDIO

        # audio view: the masked sub-segments' audio replaced by MASK (first token)
        audio_in = replace_first(audio.tokens, m.audio_view, self.audio_mask)  # (B, S, 3, Na, D)
        with_words = None
        if cfg.neighbour_text_p > 0 and m.audio_view_words is not None:
            with_words = (text, text_mask, m.audio_view_words)
        av = backbone.audio_view(
            frames, Audio(audio.cls, audio_in), seg, batch.audio_present, m.audio_view, with_words
        )
        q_audio_view = av.subsegments[:, :, :, 0]  # (B, S, 3, D)

        audio_valid = batch.audio_valid  # (B, S, 3)
        audio_pair = (
            self.query["audio"](q_audio).flatten(0, 2),  # (B*S*3, E)
            self.target["audio"](audio.cls).flatten(0, 2),  # (B*S*3, E)
            (m.text_view & audio_valid).flatten(),
        )
        if cfg.audio_negatives == "all":
            audio_pair += ((~m.text_view & audio_valid).flatten(),)

        text_valid = torch.cat(
            [(m.text_view & words).flatten(), (m.audio_view & words & audio_valid).flatten()]
        )  # (2*B*S*3,)
        text_q = self.query["text"](torch.cat([q_words, q_audio_view])).flatten(0, 2)
        text_t = self.target["text"](spans).flatten(0, 2).repeat(2, 1)  # (2*B*S*3, E)

        chances: dict[str, Tensor] = {}
        cosines: dict[str, Tensor] = {}
        terms = self.loss(
            {
                "frame": self.frame_pair(backbone, encoded, batch, m, tv),
                "audio": audio_pair,
                "text": (text_q, text_t, text_valid),
            },
            chances,
            cosines,
        )
        parts = dict(terms)
        parts.update({f"chance/{t}": v for t, v in chances.items()})
        parts.update({f"cos/{k}": v for k, v in cosines.items()})  # see collapsed_terms
        return sum(terms.values()), parts

    def frame_pair(
        self, backbone: Backbone, encoded: Encoded, batch: Batch, m: SpanMasks, tv
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The frame term's queries, targets and valid rows, each over (B*S,)."""
        seg, frames = batch.segment_mask, encoded.frames
        target = self.target["frame"](frames.embedding).flatten(0, 1)  # (B*S, E)
        if not self.vision_free:  # the text view's pooled outputs at the masked frames
            query = self.query["frame"](tv.frames.mean(2)).flatten(0, 1)
            return query, target, (m.frames & seg).flatten()
        has_words = batch.text_present.flatten(1).any(1)  # (B,)
        pass_words = m.pass_words
        if pass_words is None:  # masks drawn without the coin: words wherever there are some
            pass_words = has_words | ~batch.audio_present
        pooled = self.pooled(backbone, encoded, batch, pass_words)  # (B, S, D)
        content = torch.where(pass_words, has_words, batch.audio_present)  # (B,)
        valid = (seg & content[:, None]).flatten()
        return self.query["frame"](pooled).flatten(0, 1), target, valid

    def pooled(
        self, backbone: Backbone, encoded: Encoded, batch: Batch, pass_words: Tensor | None
    ) -> Tensor:
        """The vision-free pass: pooling-token outputs (B, S, D); pass_words (B,) bool picks
        words (True) or audio (False) as each sample's content; None: words for all."""
        seg = batch.segment_mask
        words = backbone.text_part(batch.text, batch.text_mask, seg)  # (B, S, 3L, D), (B, S, 3L)
        if pass_words is None:
            return backbone.pooled(self.pool, words, seg)
        audio = backbone.audio_part(encoded.audio, seg, batch.audio_present)  # (B, S, 3Na, D)
        # one content part of max(3L, 3Na) slots: each sample's words or its audio
        K = max(words[0].shape[2], audio[0].shape[2])
        grow = (0, 0, 0, K - words[0].shape[2]), (0, 0, 0, K - audio[0].shape[2])
        x = [F.pad(part[0], pad) for part, pad in zip((words, audio), grow, strict=True)]
        keys = [F.pad(part[1], pad[2:]) for part, pad in zip((words, audio), grow, strict=True)]
        w = pass_words[:, None, None]  # (B, 1, 1)
        content = torch.where(w[..., None], x[0], x[1]), torch.where(w, keys[0], keys[1])
        return backbone.pooled(self.pool, content, seg)

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Window embeddings from the heads the span terms train (docs/DESIGN.md section 3.7).

        Vision-free frame term: text <-> video is the pass over every sample's words,
        audio <-> video the pass over its audio, both through the frame query head, against
        the frame target head on the frame encoding. Masked-frames frame term: text <->
        video has every frame MASKed in the text view (frame heads); audio <-> video has
        every sub-segment's words MASKed, so only the frames speak, and the audio heads.
        """
        seg, frames = batch.segment_mask, encoded.frames  # (B, S)
        video = window_mean(self.target["frame"](frames.embedding), seg)
        valid = batch.audio_valid  # (B, S, 3)
        out = {}
        if TEXT_VIDEO in spaces:
            words = batch.text_present.any(-1)  # (B, S)
            if self.vision_free:
                pooled = self.pooled(backbone, encoded, batch, None)
            else:
                hidden = self.frame_mask.to(frames.tokens.dtype).expand_as(frames.tokens)
                tv = backbone.text_view(
                    Frames(hidden, frames.embedding), batch.text, batch.text_mask, seg
                )
                pooled = tv.frames.mean(2)
            text = window_mean(self.query["frame"](pooled), words)
            out[TEXT_VIDEO] = {"text": text, "video": video}
        if AUDIO_VIDEO in spaces and self.vision_free:
            pooled = self.pooled(backbone, encoded, batch, torch.zeros_like(batch.audio_present))
            audio = window_mean(self.query["frame"](pooled), valid[:, :, 0])
            out[AUDIO_VIDEO] = {"audio": audio, "video": video}
        elif AUDIO_VIDEO in spaces:
            every = seg[:, :, None].expand(-1, -1, SUBSEGMENTS)  # (B, S, 3)
            tv = backbone.text_view(
                frames, batch.text, batch.text_mask, seg, every, self.mask_audio
            )
            at = 0 if self.mask_audio is None else 1
            out[AUDIO_VIDEO] = {
                "audio": window_mean(self.target["audio"](encoded.audio.cls), valid),
                "video": window_mean(self.query["audio"](tv.subsegments[:, :, :, at]), valid),
            }
        return out

    def scales(self) -> dict[str, Tensor]:
        """Term -> exp of its clipped log-scale (detached)."""
        return self.loss.scales()
