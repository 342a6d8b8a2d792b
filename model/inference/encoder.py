"""Embeddings from a loaded model: windows, their segments, and free text.

Every vector comes from the model's ``embed`` (each objective's public ``embed``), so the
spaces an objective aligns appear here without this module naming any head. A vector is
named ``<space>/<modality>``: ``text-video/text``, ``text-video/video``,
``audio-video/audio``, ``audio-video/video`` (and whatever spaces later objectives add).

- a window's vector is what validation computes for it (model/eval/evaluation.py);
- a segment's vector is the same computation on a window of that one segment alone;
- a sentence's vector is a one-segment window whose words are the sentence (spread over
  the three sub-segments), with a blank frame and no audio: the text side of each space.

    enc = Encoder(load_checkpoint(path), device="cuda")   # bf16 autocast on CUDA
    enc.encode_text(["whisk the eggs"])                     # {"text-video/text": (1, E)}
    out = enc.encode_windows(batch)                         # WindowVectors
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from model.config import SUBSEGMENTS
from model.data.batch import Batch
from model.data.collate import DecodeConfig, load_frame, tokenize_words
from model.inference.loading import Loaded
from model.objectives import SPACES
from shards.schema import WordRecord


@dataclass
class WindowVectors:
    """Vectors of B windows and of their S segments, float32 on the CPU.

    windows[name]: (B, E); segments[name]: (B, S, E); present[name]: (B,) and
    segment_present[name]: (B, S) bool (the window / segment holds that modality)."""

    windows: dict[str, Tensor]
    segments: dict[str, Tensor]
    present: dict[str, Tensor]
    segment_present: dict[str, Tensor]


def vector_names(spaces: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    return {f"{space}/{m}": v for space, sides in spaces.items() for m, v in sides.items()}


def modality_present(batch: Batch) -> dict[str, Tensor]:
    """(B, S) bool per modality: which segments hold it."""
    return {
        "video": batch.segment_mask,
        "text": batch.text_present.any(-1),
        "audio": batch.audio_valid[:, :, 0],
        # video and audio fused (Everything at Once): counted where both are there, as
        # validation counts text -> fused only over windows with audio
        "fused": batch.segment_mask & batch.audio_valid[:, :, 0],
    }


def single_segments(batch: Batch) -> tuple[Batch, Tensor]:
    """Each real segment of the batch as a window of its own, and the (N, 2) (window,
    segment) index of each."""
    where = batch.segment_mask.nonzero()  # (N, 2)
    b, s = where[:, 0], where[:, 1]

    def pick(t: Tensor) -> Tensor:
        return t[b, s].unsqueeze(1)  # (N, 1, ...)

    one = Batch(
        frames=pick(batch.frames),
        audio=pick(batch.audio),
        text=pick(batch.text),
        text_mask=pick(batch.text_mask),
        segment_mask=torch.ones(len(b), 1, dtype=torch.bool, device=b.device),
        audio_present=batch.audio_present[b],
    )
    return one, where


def sentence_words(sentence: str) -> list[WordRecord]:
    """The words of a sentence in segment 0, spread evenly over the sub-segments."""
    words = sentence.split()
    n = len(words)
    return [WordRecord(w, 0, 0, 0, i * SUBSEGMENTS // n) for i, w in enumerate(words)]


class Encoder:
    """A loaded model on a device, turning batches and sentences into vectors."""

    def __init__(self, loaded: Loaded, device: str | torch.device = "cpu", batch_size: int = 32):
        self.loaded = loaded
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = loaded.model.eval().to(self.device)

    @property
    def embed_dim(self) -> int:
        return self.model.config.embed_dim

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _embed(self, batch: Batch) -> dict[str, Tensor]:
        """name -> (B, E) float32 on the CPU, in chunks of batch_size windows."""
        parts: dict[str, list[Tensor]] = {}
        for chunk in _chunks(batch, self.batch_size):
            with self._autocast():
                named = vector_names(self.model.embed(chunk.to(self.device), SPACES))
            for name, v in named.items():
                parts.setdefault(name, []).append(v.float().cpu())
        return {name: torch.cat(vs) for name, vs in parts.items()}

    def encode_windows(self, batch: Batch, segments: bool = True) -> WindowVectors:
        """Vectors of each window and (``segments``) of each of its segments alone."""
        B, S = batch.segment_mask.shape
        present = {k: v.cpu() for k, v in modality_present(batch).items()}
        windows = self._embed(batch)
        seg_vectors: dict[str, Tensor] = {}
        seg_present: dict[str, Tensor] = {}
        if segments:
            one, where = single_segments(batch)
            flat = self._embed(one)
            b, s = where[:, 0].cpu(), where[:, 1].cpu()
            for name, v in flat.items():
                full = torch.zeros(B, S, v.shape[-1])
                full[b, s] = v
                seg_vectors[name] = full
        out_present = {}
        for name in windows:
            modality = name.rsplit("/", 1)[1]
            seg_present[name] = present[modality] & batch.segment_mask.cpu()
            out_present[name] = seg_present[name].any(1)
        return WindowVectors(windows, seg_vectors, out_present, seg_present)

    def encode_text(self, sentences: list[str]) -> dict[str, Tensor]:
        """name -> (N, E) for the text side of every space with text (empty input: (0, E))."""
        if not sentences:
            raise ValueError("encode_text: no sentences")
        empty = [i for i, s in enumerate(sentences) if not s.split()]
        if empty:
            raise ValueError(f"encode_text: sentence {empty[0]} has no words")
        batch = self.text_batch(sentences)
        return {k: v for k, v in self._embed(batch).items() if k.endswith("/text")}

    def encode_video(self, path_or_url: str, captions: str | None = None):
        """Every window and segment of a video file or URL (model/inference/video.py)."""
        from model.inference.video import encode_video

        return encode_video(self, path_or_url, captions)

    def encode_images(self, images: list[bytes]) -> dict[str, Tensor]:
        """Encoded pictures (JPEG, PNG, ...) -> name -> (N, E) for the video side of every
        space: each picture is a one-segment window with no words and no audio."""
        size = self.loaded.decode.frame_size
        frames = []
        for i, data in enumerate(images):
            try:
                frames.append(picture_frame(data, size))
            except (OSError, ValueError) as exc:
                raise ValueError(f"image {i}: does not decode ({exc})") from None
        batch = image_batch(frames, self.loaded.decode)
        return {k: v for k, v in self._embed(batch).items() if k.endswith("/video")}

    def text_batch(self, sentences: list[str]) -> Batch:
        """One-segment windows holding the sentences; blank frames, no audio."""
        cfg, tok = self.loaded.decode, self.loaded.tokenizer
        N, (H, W) = len(sentences), cfg.frame_size
        texts, masks = zip(
            *(tokenize_words(sentence_words(s), tok, 1, cfg.max_text_len) for s in sentences),
            strict=True,
        )
        return Batch(
            frames=torch.zeros(N, 1, 3, H, W, dtype=torch.uint8),
            audio=torch.zeros(N, 1, SUBSEGMENTS, cfg.audio_frames, cfg.n_mels),
            text=torch.from_numpy(np.stack(texts)),
            text_mask=torch.from_numpy(np.stack(masks)),
            segment_mask=torch.ones(N, 1, dtype=torch.bool),
            audio_present=torch.zeros(N, dtype=torch.bool),
        )


def _chunks(batch: Batch, size: int) -> Iterator[Batch]:
    B = batch.batch_size
    if size >= B:
        yield batch
        return
    for i in range(0, B, size):
        yield Batch(
            frames=batch.frames[i : i + size],
            audio=batch.audio[i : i + size],
            text=batch.text[i : i + size],
            text_mask=batch.text_mask[i : i + size],
            segment_mask=batch.segment_mask[i : i + size],
            audio_present=batch.audio_present[i : i + size],
        )


def picture_frame(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Picture bytes -> (3, H, W) uint8, centre-cropped and resized as the loader does."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    return load_frame(buf.getvalue(), size)


def image_batch(frames: list[np.ndarray], cfg: DecodeConfig) -> Batch:
    """(3, H, W) uint8 frames -> one-segment windows with no words and no audio."""
    N = len(frames)
    L = cfg.max_text_len
    return Batch(
        frames=torch.from_numpy(np.stack(frames))[:, None],
        audio=torch.zeros(N, 1, SUBSEGMENTS, cfg.audio_frames, cfg.n_mels),
        text=torch.zeros(N, 1, SUBSEGMENTS, L, dtype=torch.int64),
        text_mask=torch.zeros(N, 1, SUBSEGMENTS, L, dtype=torch.bool),
        segment_mask=torch.ones(N, 1, dtype=torch.bool),
        audio_present=torch.zeros(N, dtype=torch.bool),
    )
