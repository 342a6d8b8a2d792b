"""One shard sample -> arrays the model takes, and a list of them -> a :class:`LoaderBatch`.

The format on disk is read through ``shards/`` only (``shards.decode`` checks and opens,
``shards.schema`` dequantizes); this module turns a decoded :class:`shards.schema.Sample`
into the per-window arrays of the batch contract (model/data/batch.py):

    frames        (S, 3, H, W)  uint8   JPEG -> RGB, centre-cropped to the aspect of (H, W), resized
    audio         (S, 3, T, M)  float32 dequantized log-mel, 3 sub-segments of T frames, time-major
    text          (S, 3, L)     int64   each word's tokens in its (segment, sub-segment) cell
    text_mask     (S, 3, L)     bool
    segment_mask  (S,)          bool    False at padded segments (window shorter than S)
    audio_present ()            bool    False when the video has no audio (audio is zeros)

Sub-segments (docs/DESIGN.md section 2): a segment's F = 188 mel frames hold 3 blocks of T = 60
with equal gaps g = (F - 3T) / 4 = 2 around them: frames [2:62], [64:124], [126:186].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.config import SUBSEGMENTS
from model.data.batch import Batch
from model.data.tokenizer import Tokenizer
from shards import schema
from shards.decode import open_frame


@dataclass(frozen=True)
class DecodeConfig:
    """Shapes one window is brought to; shared with ModelConfig (link them in the CLI)."""

    frame_size: tuple[int, int] = (192, 320)  # (H, W)
    max_segments: int = 16  # S: windows are padded (or cut) to this many segments
    max_text_len: int = 32  # L: tokens kept per sub-segment
    audio_frames: int = 60  # T: mel frames per sub-segment
    n_mels: int = 64  # M

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_size", tuple(self.frame_size))
        assert len(self.frame_size) == 2 and min(self.frame_size) > 0, (
            f"frame_size {self.frame_size}"
        )
        assert self.max_segments >= 1 and self.max_text_len >= 1, "max_segments, max_text_len >= 1"


def params_problems(params: schema.ExtractionParams, cfg: DecodeConfig) -> list[str]:
    """How shards made with ``params`` do not fit the shapes the model takes ([] when they do)."""
    problems = []
    if params.subsegments != SUBSEGMENTS:
        problems.append(
            f"{params.subsegments} audio sub-segments per segment, the model is built for "
            f"{SUBSEGMENTS}"
        )
    if params.n_mels != cfg.n_mels:
        problems.append(f"{params.n_mels} mel bins, the model takes {cfg.n_mels} (n_mels)")
    if params.mel_frames < SUBSEGMENTS * cfg.audio_frames:
        problems.append(
            f"{params.mel_frames} mel frames per segment, fewer than the model's "
            f"{SUBSEGMENTS} sub-segments x {cfg.audio_frames} frames (audio_frames)"
        )
    return problems


def subsegment_starts(mel_frames: int, audio_frames: int) -> list[int]:
    """First frame of each sub-segment: 3 blocks with equal gaps before, between and after."""
    gap = (mel_frames - SUBSEGMENTS * audio_frames) // (SUBSEGMENTS + 1)
    assert gap >= 0, f"{mel_frames} mel frames cannot hold {SUBSEGMENTS} x {audio_frames}"
    return [gap + i * (audio_frames + gap) for i in range(SUBSEGMENTS)]


def cut_subsegments(mel: np.ndarray, audio_frames: int) -> np.ndarray:
    """(S, M, F) float log-mel -> (S, 3, T, M): 3 sub-segments, transposed to time-major."""
    assert mel.ndim == 3, f"mel should be (S, M, F), got {mel.shape}"
    starts = subsegment_starts(mel.shape[2], audio_frames)
    blocks = [mel[:, :, s : s + audio_frames] for s in starts]  # 3 x (S, M, T)
    return np.stack(blocks, axis=1).transpose(0, 1, 3, 2)  # (S, 3, T, M)


def crop_box(w: int, h: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, width, height): the largest centred region with the aspect ratio of size."""
    H, W = size
    cw, ch = min(w, round(h * W / H)), min(h, round(w * H / W))
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def decode_jpeg(jpeg: bytes, size: tuple[int, int]) -> np.ndarray:
    """JPEG bytes -> (h, w, 3) uint8 RGB centre-cropped to the aspect ratio of size (H, W).

    libjpeg decodes at 1/2, 1/4 or 1/8 scale when the result still covers ``size``.
    """
    H, W = size
    img = open_frame(jpeg)  # header only: a declared size past the cap is refused here
    w, h = img.size
    c = crop_box(w, h, size)
    img.draft("RGB", (math.ceil(W * w / c[2]), math.ceil(H * h / c[3])))
    if img.mode != "RGB":
        img = img.convert("RGB")
    rgb = np.asarray(img)  # (h', w', 3); h', w' may be reduced by the draft
    left, top, cw, ch = crop_box(rgb.shape[1], rgb.shape[0], size)
    return rgb[top : top + ch, left : left + cw]


def resize_frames(crops: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 crops -> (n, 3, H, W) uint8, bilinear with antialiasing.

    torch's uint8 channels-last kernel is about 3x faster than PIL's resize; crops of one
    size (all frames of a video) go through it in one call.
    """
    H, W = size
    out = np.empty((len(crops), 3, H, W), dtype=np.uint8)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(crops):
        by_shape.setdefault(c.shape, []).append(i)
    for shape, idx in by_shape.items():
        x = torch.from_numpy(np.stack([crops[i] for i in idx]))  # (n, h, w, 3)
        x = x.permute(0, 3, 1, 2)  # (n, 3, h, w) as a channels-last view
        if shape[:2] != (H, W):
            x = F.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
        out[idx] = x.numpy()
    return out


def load_frame(jpeg: bytes, size: tuple[int, int]) -> np.ndarray:
    """JPEG bytes -> (3, H, W) uint8: scaled to cover (H, W), centre-cropped to it."""
    return resize_frames([decode_jpeg(jpeg, size)], size)[0]


def tokenize_words(
    words: list[schema.WordRecord], tokenizer: Tokenizer, n_segments: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each word's tokens go to its (segment, sub-segment) cell, left-aligned, cut at max_len.

    Returns text (S, 3, L) int64 (PAD elsewhere) and text_mask (S, 3, L) bool. Words of
    segments >= n_segments are dropped (a window cut to max_segments).
    """
    text = np.full((n_segments, SUBSEGMENTS, max_len), tokenizer.pad_id, dtype=np.int64)
    fill = np.zeros((n_segments, SUBSEGMENTS), dtype=np.int64)  # tokens placed per cell
    for w in words:
        if w.segment >= n_segments or not w.text.strip():
            continue
        n = fill[w.segment, w.subsegment]
        if n >= max_len:
            continue
        ids = tokenizer.encode_word(w.text.strip())[: max_len - n]
        text[w.segment, w.subsegment, n : n + len(ids)] = ids
        fill[w.segment, w.subsegment] = n + len(ids)
    mask = np.arange(max_len) < fill[..., None]  # (S, 3, L)
    return text, mask


@dataclass
class Example:
    """One window as arrays (see the module docstring for shapes)."""

    key: str
    frames: np.ndarray
    audio: np.ndarray
    text: np.ndarray
    text_mask: np.ndarray
    segment_mask: np.ndarray
    audio_present: bool


def to_example(sample: schema.Sample, cfg: DecodeConfig, tokenizer: Tokenizer) -> Example:
    """A decoded shard sample -> padded arrays. Raises SampleError when it does not fit."""
    meta = sample.meta
    if problems := params_problems(meta.params, cfg):
        raise schema.SampleError(f"{meta.key}: " + "; ".join(problems))
    S, n = cfg.max_segments, min(meta.n_segments, cfg.max_segments)
    H, W = cfg.frame_size
    T, M = cfg.audio_frames, cfg.n_mels
    frames = np.zeros((S, 3, H, W), dtype=np.uint8)
    crops = []
    for i in range(n):
        try:
            crops.append(decode_jpeg(sample.frames[i], cfg.frame_size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise schema.SampleError(f"{meta.key}: frame {i} does not decode: {exc}") from None
    frames[:n] = resize_frames(crops, cfg.frame_size)
    audio = np.zeros((S, SUBSEGMENTS, T, M), dtype=np.float32)
    mel = sample.mel_float()  # (segments, M, F) or None
    if mel is not None:
        audio[:n] = cut_subsegments(mel[:n], T)
    text, text_mask = tokenize_words(meta.words, tokenizer, S, cfg.max_text_len)
    text_mask[n:] = False  # words never sit in padded segments (only if cut)
    return Example(
        key=meta.key,
        frames=frames,
        audio=audio,
        text=text,
        text_mask=text_mask,
        segment_mask=np.arange(S) < n,
        audio_present=mel is not None,
    )


def collate(examples: list[Example]) -> Batch:
    """Stack examples into a Batch: frames (B, S, 3, H, W), audio (B, S, 3, T, M), ..."""
    assert examples, "cannot collate an empty list"

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(e, name) for e in examples]))

    return Batch(
        frames=stack("frames"),
        audio=stack("audio"),
        text=stack("text"),
        text_mask=stack("text_mask"),
        segment_mask=stack("segment_mask"),
        audio_present=torch.tensor([e.audio_present for e in examples], dtype=torch.bool),
    )
