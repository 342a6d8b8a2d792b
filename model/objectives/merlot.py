"""MERLOT's objectives over frames + transcript (no audio): matching, MLM, reordering
(docs/DESIGN.md section 3.8).

- matching: a text-only pass of the joint encoder over the window's words (in the
  backbone's segment groups), its outputs averaged over each segment's words, through
  the text head; each frame's own encoding through the frame head; contrastive between
  a frame and its own segment's transcript over the gathered batch
  (losses.merlot.match_nce). Segments without words are left out.
- masked language modelling: one joint pass over frames + words where `mask_rate` of
  each window's tokens are replaced by MASK, part of them where the frames attend most
  (attention masking: the last joint layer's attention from frame tokens to word tokens
  in a pass without masks, no gradient) and the rest uniformly (model/nn/merlot.py).
  The vocabulary head is a dense + GELU + LayerNorm transform, then the token embedding
  matrix (tied) plus a bias.
- reordering: in the same pass, `reorder_rate` of the windows show some of their
  frames shuffled, with an unknown-position embedding in place of their segment
  embedding; a small head on the two frames' pooled outputs predicts, for each pair of
  shuffled frames, which one comes first.

L_merlot = match_weight * L_match + mlm_weight * L_mlm + order_weight * L_order; a term
with weight 0 builds no head and runs no pass. Logged besides: `mlm_acc`, `order_acc`.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from model.config import MerlotLossConfig, ModelConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone, Frames
from model.nn.layers import learned, masked_mean
from model.nn.merlot import mlm_masks, order_pairs, pair_labels, reorder_plan
from model.objectives.common import SPACES, TEXT_VIDEO, Encoded, window_mean
from model.objectives.losses.merlot import masked_token_loss, match_nce, order_loss


class MerlotObjective(nn.Module):
    @staticmethod
    def needs(cfg: MerlotLossConfig) -> set[str]:
        """Backbone parts this objective uses: frames, words and the joint encoder."""
        return {"joint"}

    def __init__(self, model: ModelConfig, cfg: MerlotLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, E = model.width, model.embed_dim
        self.mask_id = model.mask_id
        if cfg.match_weight > 0:
            self.frame_head = nn.Linear(D, E)
            self.text_head = nn.Linear(D, E)
        if cfg.mlm_weight > 0:
            self.mlm_transform = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.LayerNorm(D))
            self.mlm_bias = nn.Parameter(torch.zeros(model.vocab_size))
        if cfg.order_weight > 0:
            self.unknown_position = learned(D)
            self.order_head = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, 2))

    # ------------------------------------------------------------------ pieces

    def segment_texts(self, backbone: Backbone, batch: Batch) -> Tensor:
        """(B, S, E) text head on each segment's mean text-only joint output."""
        seg = batch.segment_mask
        part = backbone.text_part(batch.text, batch.text_mask, seg)  # (B, S, 3L, D)
        (out,) = backbone.fuse([part])
        return self.text_head(masked_mean(out, part[1], dim=2))

    def vocabulary(self, backbone: Backbone, hidden: Tensor) -> Tensor:
        """(M, D) joint outputs -> (M, V) logits through the tied token embeddings."""
        return self.mlm_transform(hidden) @ backbone.token_embedding.weight.T + self.mlm_bias

    def joint_terms(
        self, backbone: Backbone, encoded: Encoded, batch: Batch, generator: torch.Generator | None
    ) -> dict[str, Tensor]:
        """MLM and reordering on one joint pass over (shuffled) frames + (masked) words."""
        cfg, seg = self.cfg, batch.segment_mask
        frames, unknown, plan = encoded.frames, None, None
        if cfg.order_weight > 0:
            plan = reorder_plan(seg, cfg.reorder_rate, generator)
            index = plan.source[:, :, None, None].expand_as(frames.tokens)
            frames = Frames(frames.tokens.gather(1, index), frames.embedding)
            unknown = plan.shuffled
        position = None if plan is None else self.unknown_position  # (D,)
        frame_part = backbone.frame_part(frames, seg, unknown, position)
        text = batch.text
        out: dict[str, Tensor] = {}
        if cfg.mlm_weight > 0:
            eligible = batch.text_mask & seg[:, :, None, None]  # (B, S, 3, L)
            scores = torch.zeros(eligible.shape, device=text.device)
            if cfg.attention_share > 0:
                with torch.no_grad():
                    words = backbone.text_part(text, batch.text_mask, seg)
                    queries = torch.cat([frame_part[1], torch.zeros_like(words[1])], dim=2)
                    received = backbone.attention_received([frame_part, words], queries)
                scores = received[:, :, frame_part[1].shape[2] :].reshape(eligible.shape)
            masked = mlm_masks(
                eligible.flatten(1),
                scores.flatten(1),
                cfg.mask_rate,
                cfg.attention_share,
                generator,
            ).view_as(eligible)
            text = torch.where(masked, self.mask_id, text)
        f, t = backbone.fuse([frame_part, backbone.text_part(text, batch.text_mask, seg)])
        if cfg.mlm_weight > 0:
            hidden = t.unflatten(2, batch.text.shape[2:])[masked]  # (M, D)
            out["mlm"], out["mlm_acc"] = masked_token_loss(
                self.vocabulary(backbone, hidden), batch.text[masked]
            )
        if plan is not None:
            a, b = order_pairs(seg.shape[1], seg.device)
            pooled = f.mean(2)  # (B, S, D) one vector per slot
            logits = self.order_head(torch.cat([pooled[:, a], pooled[:, b]], dim=-1))  # (B, P, 2)
            labels, valid = pair_labels(plan)
            out["order"], out["order_acc"] = order_loss(logits, labels, valid)
        return out

    # ------------------------------------------------------------------ objective

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        terms: dict[str, Tensor] = {}
        if cfg.match_weight > 0:
            words = batch.text_present.any(-1)  # (B, S) the segment has words (and is real)
            video = self.frame_head(encoded.frames.embedding)  # (B, S, E)
            text = self.segment_texts(backbone, batch)  # (B, S, E)
            terms["match"] = match_nce(
                video.flatten(0, 1), text.flatten(0, 1), words.flatten(), cfg.temperature
            )
        if cfg.mlm_weight > 0 or cfg.order_weight > 0:
            terms |= self.joint_terms(backbone, encoded, batch, generator)
        weights = {"match": cfg.match_weight, "mlm": cfg.mlm_weight, "order": cfg.order_weight}
        loss = sum(weights[name] * terms[name] for name in weights if name in terms)
        return loss, terms

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Text <-> video through the matching heads: the text head over the segments with
        words, the frame head over the real segments. Nothing without the matching term."""
        if TEXT_VIDEO not in spaces or self.cfg.match_weight <= 0:
            return {}
        words = batch.text_present.any(-1)  # (B, S)
        text = window_mean(self.segment_texts(backbone, batch), words)  # (B, E)
        video = window_mean(self.frame_head(encoded.frames.embedding), batch.segment_mask)
        return {TEXT_VIDEO: {"text": text, "video": video}}

    def scales(self) -> dict[str, Tensor]:
        """No learned scale (a fixed temperature)."""
        return {}
