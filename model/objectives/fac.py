"""MMV's fine-and-coarse (FAC) spaces, per segment.

Video and audio meet in a fine space: a segment's frame embedding (frame encoder) and
its audio (the mean of its three sub-segments' audio CLS) each pass through a linear
head. Text lives in a coarse space: the span encoding of each sub-segment's words
through a linear head. Video reaches the coarse space through a second head applied to
its fine embedding (a two-layer MLP); audio reaches it through the same head. The loss
(model/objectives/losses/fac.py) is NCE between video and audio in the fine space plus
MIL-NCE between coarse video and the K sub-segment captions nearest the frame (the
candidates of model/objectives/milnce.py).

Retrieval: text <-> video and text <-> audio through the coarse space, audio <-> video
through the fine. A dual-encoder objective: no joint pass, so a still image (a
one-segment window without audio or words) goes through the same video pathway
(model/eval/deflation.py).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from model.config import FacLossConfig, ModelConfig
from model.data.batch import Batch
from model.nn.backbone import Backbone
from model.objectives.common import (
    AUDIO_VIDEO,
    SPACES,
    TEXT_AUDIO,
    TEXT_VIDEO,
    Encoded,
    window_mean,
)
from model.objectives.losses.fac import FacLoss
from model.objectives.milnce import candidate_index


class FacObjective(nn.Module):
    @staticmethod
    def needs(cfg: FacLossConfig) -> set[str]:
        """Backbone parts this objective uses (the frame encoder is always there)."""
        return {"audio", "spans"}

    def __init__(self, model: ModelConfig, cfg: FacLossConfig) -> None:
        super().__init__()
        self.k = cfg.num_candidates
        D, E = model.width, model.embed_dim
        self.video = nn.Linear(D, E)  # frame embedding -> fine
        self.audio = nn.Linear(D, E)  # segment audio -> fine
        self.coarse = nn.Sequential(nn.Linear(E, E), nn.ReLU(), nn.Linear(E, E))  # fine -> coarse
        self.text = nn.Linear(D, E)  # sub-segment words -> coarse
        self.loss = FacLoss(cfg.temperature, cfg.audio_weight, cfg.text_weight)

    def fine(self, encoded: Encoded) -> tuple[Tensor, Tensor]:
        """Fine-space video and audio per segment, each (B, S, E)."""
        video = self.video(encoded.frames.embedding)  # (B, S, E)
        audio = self.audio(encoded.audio.cls.mean(2))  # (B, S, 3, D) -> (B, S, E)
        return video, audio

    def forward(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        S = batch.segment_mask.shape[1]
        video, audio = self.fine(encoded)
        idx = candidate_index(S, self.k).to(batch.text.device)  # (S, K)
        safe = idx.clamp(min=0).flatten()  # (S*K,)
        captions = self.text(encoded.spans).flatten(1, 2)  # (B, 3S, E)
        text = captions[:, safe].unflatten(1, (S, self.k))  # (B, S, K, E)
        words = batch.text_present.flatten(1)[:, safe].unflatten(1, (S, self.k))  # (B, S, K)
        candidates = words & (idx >= 0) & batch.segment_mask[:, :, None]  # (B, S, K)
        return self.loss(
            video.flatten(0, 1),
            audio.flatten(0, 1),
            batch.audio_valid[:, :, 0].flatten(),
            self.coarse(video).flatten(0, 1),
            text.flatten(0, 1),
            candidates.flatten(0, 1),
        )

    def embed(
        self,
        backbone: Backbone,
        encoded: Encoded,
        batch: Batch,
        spaces: Collection[str] = SPACES,
    ) -> dict[str, dict[str, Tensor]]:
        """Audio <-> video in the fine space; text <-> video and text <-> audio in the coarse
        space (video and audio through the fine-to-coarse head)."""
        seg, sound = batch.segment_mask, batch.audio_valid[:, :, 0]  # (B, S) each
        video, audio = self.fine(encoded)
        out = {}
        if AUDIO_VIDEO in spaces:
            out[AUDIO_VIDEO] = {
                "audio": window_mean(audio, sound),
                "video": window_mean(video, seg),
            }
        if TEXT_VIDEO in spaces or TEXT_AUDIO in spaces:
            text = window_mean(self.text(encoded.spans), batch.text_present)  # (B, E)
            if TEXT_VIDEO in spaces:
                out[TEXT_VIDEO] = {"text": text, "video": window_mean(self.coarse(video), seg)}
            if TEXT_AUDIO in spaces:
                out[TEXT_AUDIO] = {"text": text, "audio": window_mean(self.coarse(audio), sound)}
        return out

    def scales(self) -> dict[str, Tensor]:
        """No learned scale: the temperature is fixed."""
        return {}
