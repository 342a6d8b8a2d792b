"""The batch the model consumes: one window of S consecutive segments per sample.

A sample is S consecutive segments of one video (S=16 by default; a shorter window is
padded at the end and `segment_mask` marks the real segments). Per segment: one frame,
the log-mel block cut into 3 sub-segments of 60 spectrogram frames (frames [2:62],
[64:124], [126:186] of the 188-frame segment block), and the words, each assigned to one
sub-segment and tokenized per sub-segment.

Shapes (B samples, S segments, 3 sub-segments, L tokens per sub-segment):

    frames         (B, S, 3, H, W)   uint8 RGB (or float in [0, 1]); H, W = ModelConfig.frame_size
    audio          (B, S, 3, T, M)   float log-mel, time-major: T = 60 frames, M = 64 mels,
                                     value ln(mel + 0.1) - ln(0.1) (docs/DESIGN.md section 2)
    text           (B, S, 3, L)      int64 token ids, PAD_ID (0) where there is no token;
                                     MASK_ID (1) is reserved for the model's masking
    text_mask      (B, S, 3, L)      bool, True at real tokens (left-aligned)
    segment_mask   (B, S)            bool, True at real segments (every sample has one)
    audio_present  (B,)              bool, False when the video has no audio track
    masks          SpanMasks | None  optional precomputed span masks (drawn by
                                     model/nn/masking.py); None lets the model draw them

Padded segments carry zero frames/audio and an all-False text_mask. A sub-segment with no
words has an all-False text_mask row; `text_present` derives "words present" from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from model.config import MASK_ID, PAD_ID, SUBSEGMENTS, ModelConfig


@dataclass
class SpanMasks:
    """Which snippets are MASKed for the contrastive span objective (model/nn/masking.py
    has the rules that draw them; the batch only carries them)."""

    text_view: Tensor  # (B, S, 3) bool: words replaced by MASK in the text view
    audio_view: Tensor  # (B, S, 3) bool: audio replaced by MASK in the audio view
    frames: Tensor  # (B, S) bool: frame tokens replaced by MASK in the text view
    # (B, S, 3) bool: sub-segments the audio view shows as words (a masked one's neighbours)
    audio_view_words: Tensor | None = None
    pass_words: Tensor | None = None  # (B,) bool: the vision-free pass sees words, not audio

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SpanMasks:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        return replace(self, **moved)

    def check(self, batch_size: int, num_segments: int) -> None:
        B, S = batch_size, num_segments
        assert self.text_view.shape == (B, S, SUBSEGMENTS), f"text_view {self.text_view.shape}"
        assert self.audio_view.shape == (B, S, SUBSEGMENTS), f"audio_view {self.audio_view.shape}"
        assert self.frames.shape == (B, S), f"frames mask {self.frames.shape}"
        assert not bool((self.text_view & self.audio_view).any()), (
            "views must mask disjoint sub-segments"
        )
        if self.audio_view_words is not None:
            words = self.audio_view_words
            assert words.shape == (B, S, SUBSEGMENTS), f"audio_view_words {words.shape}"
            assert not bool((words & self.audio_view).any()), "a masked sub-segment shows no words"
        if self.pass_words is not None:
            assert self.pass_words.shape == (B,), f"pass_words {self.pass_words.shape}"


@dataclass
class Batch:
    """A batch of windows; see the module docstring for shapes and dtypes."""

    frames: Tensor  # (B, S, 3, H, W)
    audio: Tensor  # (B, S, 3, T, M)
    text: Tensor  # (B, S, 3, L)
    text_mask: Tensor  # (B, S, 3, L)
    segment_mask: Tensor  # (B, S)
    audio_present: Tensor  # (B,)
    masks: SpanMasks | None = None

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    @property
    def num_segments(self) -> int:
        return self.frames.shape[1]

    @property
    def text_present(self) -> Tensor:
        """(B, S, 3) bool: the sub-segment has at least one word (and is a real segment)."""
        return self.text_mask.any(-1) & self.segment_mask[:, :, None]

    @property
    def audio_valid(self) -> Tensor:
        """(B, S, 3) bool: the sub-segment has audio (the sample has audio, the segment is real)."""
        valid = self.segment_mask & self.audio_present[:, None]  # (B, S)
        return valid[:, :, None].expand(-1, -1, SUBSEGMENTS)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy on `device` (the inputs are not changed)."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }
        return replace(self, **moved)

    def check(self, cfg: ModelConfig) -> None:
        """Assert the contract (shapes, dtypes, consistency). Reads values: not for the hot path."""
        B, S = self.segment_mask.shape
        H, W = cfg.frame_size
        assert cfg.max_segments >= S, f"{S} segments, config allows {cfg.max_segments}"
        assert self.frames.shape == (B, S, 3, H, W), f"frames {tuple(self.frames.shape)}"
        assert self.frames.dtype == torch.uint8 or self.frames.is_floating_point(), (
            f"frames must be uint8 or float, got {self.frames.dtype}"
        )
        assert self.audio.shape == (B, S, SUBSEGMENTS, cfg.audio_frames, cfg.n_mels), (
            f"audio {tuple(self.audio.shape)}, expected (B, S, 3, {cfg.audio_frames}, {cfg.n_mels})"
        )
        assert self.audio.is_floating_point(), f"audio must be float, got {self.audio.dtype}"
        L = self.text.shape[-1]
        assert self.text.shape == (B, S, SUBSEGMENTS, L), f"text {tuple(self.text.shape)}"
        assert cfg.max_text_len >= L, (
            f"{L} tokens per sub-segment, config allows {cfg.max_text_len}"
        )
        assert self.text.dtype == torch.int64, f"text must be int64, got {self.text.dtype}"
        assert self.text_mask.shape == self.text.shape and self.text_mask.dtype == torch.bool
        assert self.segment_mask.dtype == torch.bool and self.audio_present.shape == (B,)
        assert self.audio_present.dtype == torch.bool, "audio_present must be bool"
        assert bool(self.segment_mask.any(1).all()), "every sample needs at least one real segment"
        assert bool((self.text[~self.text_mask] == cfg.pad_id).all()), "padding must be PAD_ID"
        real = self.text[self.text_mask]
        assert bool(((real >= 0) & (real < cfg.vocab_size)).all()), "token id outside vocabulary"
        assert not bool((real == cfg.mask_id).any()), "MASK_ID is reserved for the model"
        assert not bool(self.text_mask[~self.segment_mask].any()), "words in a padded segment"
        if self.masks is not None:
            self.masks.check(B, S)


def random_batch(
    cfg: ModelConfig,
    batch_size: int,
    num_segments: int | None = None,
    text_len: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Batch:
    """A batch of random data that satisfies the contract (tests, benchmarks)."""
    B, S = batch_size, num_segments or cfg.max_segments
    L = text_len or cfg.max_text_len
    H, W = cfg.frame_size
    g = generator
    frames = torch.randint(0, 256, (B, S, 3, H, W), generator=g, dtype=torch.uint8)
    audio = torch.rand(B, S, SUBSEGMENTS, cfg.audio_frames, cfg.n_mels, generator=g) * 5.0
    lengths = torch.randint(0, L + 1, (B, S, SUBSEGMENTS), generator=g)
    text_mask = torch.arange(L) < lengths[..., None]  # (B, S, 3, L)
    low = max(PAD_ID, MASK_ID) + 1
    text = torch.randint(low, cfg.vocab_size, (B, S, SUBSEGMENTS, L), generator=g)
    text = text.masked_fill(~text_mask, cfg.pad_id)
    segment_mask = torch.ones(B, S, dtype=torch.bool)
    batch = Batch(
        frames=frames,
        audio=audio,
        text=text,
        text_mask=text_mask,
        segment_mask=segment_mask,
        audio_present=torch.ones(B, dtype=torch.bool),
    )
    return batch.to(device)
