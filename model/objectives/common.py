"""What objectives share: the batch's encoder outputs, computed once on first use, and the
form of the window embeddings they hand to evaluation.

Every objective has two small public methods besides its forward:

- ``embed(backbone, encoded, batch, spaces)``: for each requested space it aligns, the
  window embeddings of its two modalities, ``{"text-video": {"text": (B, E), "video": (B, E)}}``
  (spaces it does not align are absent). Each row is the mean of the L2-normalized
  embeddings of the window's units (segments or sub-segments) that hold the modality;
  compare rows by cosine. Evaluation and inference read embeddings only through it.
- ``scales()``: term -> the learned contrastive scale (exp of its log-scale), for logging.
"""

from __future__ import annotations

from functools import cached_property

import torch.nn.functional as F
from torch import Tensor

from model.data.batch import Batch
from model.nn.backbone import Audio, Backbone, Frames
from model.nn.layers import masked_mean

TEXT_VIDEO = "text-video"  # words against frames
AUDIO_VIDEO = "audio-video"  # audio against frames
TEXT_AUDIO = "text-audio"  # words against audio
TEXT_FUSED = "text-fused"  # words against frames and audio fused ({"text", "fused"})
SPACES = (TEXT_VIDEO, AUDIO_VIDEO, TEXT_AUDIO, TEXT_FUSED)


class Encoded:
    """Unmasked encoder outputs of one batch; each computed the first time it is read."""

    def __init__(self, backbone: Backbone, batch: Batch) -> None:
        self.backbone = backbone
        self.batch = batch

    @cached_property
    def frames(self) -> Frames:
        return self.backbone.encode_frames(self.batch.frames)

    @cached_property
    def audio(self) -> Audio:
        return self.backbone.encode_audio(self.batch.audio)

    @cached_property
    def spans(self) -> Tensor:
        """(B, S, 3, D) span encoding of each sub-segment's words."""
        return self.backbone.encode_spans(self.batch.text, self.batch.text_mask)


def window_mean(units: Tensor, present: Tensor) -> Tensor:
    """Unit embeddings (B, ..., E) and mask (B, ...) -> mean of the normalized units (B, E)."""
    x = F.normalize(units.float(), dim=-1).flatten(1, -2)  # (B, U, E)
    return masked_mean(x, present.flatten(1), dim=1)
