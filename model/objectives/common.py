"""What objectives share: the batch's encoder outputs, computed once on first use."""

from __future__ import annotations

from functools import cached_property

from torch import Tensor

from model.backbone import Audio, Backbone, Frames
from model.batch import Batch


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
