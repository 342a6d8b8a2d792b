"""The sample format on disk: the one module writers and readers both import.

A shard is a POSIX tar readable by ``webdataset``. One sample is one window of
consecutive segments of one video. Its members share the sample key
(``<video_id>_w<window>``, characters ``[A-Za-z0-9_-]`` only, so webdataset's
"key = name up to the first dot" rule holds):

``<key>.json``
    :class:`SampleMeta` as JSON: schema version, video id, source URL, title,
    window bounds, segment times, the words (absolute times in ms, the segment
    index *within the window*, the audio sub-segment), flags and the extraction
    parameters, plus the shape, dtype and per-segment scales of the mel member.
``<key>.NN.jpg``
    one JPEG per segment, ``NN`` = segment index within the window (00, 01, ...).
``<key>.mel.npy``
    the log-mel spectrogram of every segment, quantized to uint8, shape
    ``(segments, n_mels, frames)``; absent when the video has no audio.
    ``float = uint8 / scale[segment]`` (see :func:`dequantize_mel`).

Writers build samples here (:func:`encode`); readers get them from
:func:`shards.decode.decode_sample`, which checks every field and member before it
trusts one. Change anything here only together with a bump of :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
MEL_MEMBER = "mel.npy"
JSON_MEMBER = "json"
FRAME_MEMBER_RE = re.compile(r"^(\d{2})\.jpg$")
MAX_SEGMENTS = 100  # two-digit frame member names
# Audio sub-segments per segment: the unit a word's audio is placed in and masked as
# (MERLOT Reserve: 3 x 60 of a segment's 188 mel frames; docs/DESIGN.md section 2).
# Ingest writes it into every sample's params; the model is built for it.
SUBSEGMENTS = 3
# A member of this format is a few hundred kB at most; a tar header may declare any size,
# and a reader allocates what it declares.
MAX_MEMBER_BYTES = 64 << 20


class SampleError(ValueError):
    """A sample does not follow the format; the message says which member and why."""


def sample_key(video_id: str, window: int) -> str:
    """The key of one window of one video."""
    if not KEY_RE.match(video_id):
        raise SampleError(f"video id {video_id!r} has characters outside [A-Za-z0-9_-]")
    if window < 0:
        raise SampleError(f"window index must be >= 0, got {window}")
    return f"{video_id}_w{window:04d}"


def frame_member(segment: int) -> str:
    return f"{segment:02d}.jpg"


@dataclass(slots=True)
class WordRecord:
    """One spoken word. Times are absolute video milliseconds."""

    text: str
    start_ms: int
    end_ms: int
    segment: int  # index within the window, 0..segments-1
    subsegment: int  # audio sub-segment within the segment, 0..subsegments-1


@dataclass(slots=True)
class ExtractionParams:
    """How the members were made; readers check these instead of assuming."""

    segment_ms: int
    subsegments: int
    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    log_offset: float
    mel_frames: int  # frames per segment
    frame_short_side: int
    frame_max_long_side: int


@dataclass(slots=True)
class SampleMeta:
    video_id: str
    url: str
    title: str
    window: int
    start_ms: int
    end_ms: int
    segments: list[tuple[int, int]]  # (start_ms, end_ms) of each segment
    words: list[WordRecord]
    caption_kind: str  # "auto" (ASR with word times) | "manual" (cue times spread)
    has_audio: bool
    params: ExtractionParams
    mel_shape: tuple[int, int, int] | None  # (segments, n_mels, frames); None without audio
    mel_scale: list[float] | None  # per-segment quantization scale
    non_speech: list[str] = field(default_factory=list)  # tags seen in the window, e.g. "[Music]"
    schema: int = SCHEMA_VERSION

    @property
    def key(self) -> str:
        return sample_key(self.video_id, self.window)

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(slots=True)
class Sample:
    """One decoded sample: metadata, JPEG bytes per segment, uint8 mel (or None)."""

    meta: SampleMeta
    frames: list[bytes]
    mel: np.ndarray | None  # (segments, n_mels, frames) uint8

    @property
    def key(self) -> str:
        return self.meta.key

    def mel_float(self) -> np.ndarray | None:
        """The log-mel as float32, (segments, n_mels, frames)."""
        if self.mel is None:
            return None
        assert self.meta.mel_scale is not None, "a sample with a mel has its scales"
        return dequantize_mel(self.mel, np.asarray(self.meta.mel_scale, dtype=np.float32))


def quantize_mel(mel: np.ndarray, quantile: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment uint8 quantization: scale = 255 / max(quantile(segment), 1).

    ``mel`` is (segments, n_mels, frames) float; returns (uint8 array, float32 scales).
    """
    assert mel.ndim == 3, f"expected (segments, n_mels, frames), got {mel.shape}"
    q = np.quantile(mel.reshape(mel.shape[0], -1), quantile, axis=1)
    scale = (255.0 / np.maximum(q, 1.0)).astype(np.float32)
    out = np.clip(np.rint(mel * scale[:, None, None]), 0, 255).astype(np.uint8)
    return out, scale


def dequantize_mel(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_mel` (up to half a quantization step)."""
    return q.astype(np.float32) / scale.astype(np.float32)[:, None, None]


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def encode(sample: Sample) -> dict[str, bytes]:
    """Members of one sample, keyed by their suffix (the part after ``<key>.``)."""
    meta = sample.meta
    check(sample)
    members = {JSON_MEMBER: meta.to_json()}
    for i, jpg in enumerate(sample.frames):
        members[frame_member(i)] = jpg
    if sample.mel is not None:
        members[MEL_MEMBER] = _npy_bytes(sample.mel)
    return members


def check(sample: Sample) -> None:
    """Every invariant of one sample that can be checked without decoding JPEGs."""
    m = sample.meta
    key = m.key
    problems: list[str] = []
    if not 1 <= m.n_segments <= MAX_SEGMENTS:
        problems.append(f"{m.n_segments} segments, expected 1..{MAX_SEGMENTS}")
    if len(sample.frames) != m.n_segments:
        problems.append(f"{len(sample.frames)} frames for {m.n_segments} segments")
    for a, b in zip(m.segments, m.segments[1:], strict=False):
        if b[0] < a[1]:
            problems.append(f"segments overlap or go back: {a} then {b}")
            break
    if m.segments and (m.segments[0][0] != m.start_ms or m.segments[-1][1] != m.end_ms):
        problems.append("window bounds do not match its segments")
    if m.has_audio:
        expected = (m.n_segments, m.params.n_mels, m.params.mel_frames)
        if sample.mel is None:
            problems.append("has_audio but no mel member")
        elif sample.mel.dtype != np.uint8 or tuple(sample.mel.shape) != expected:
            problems.append(
                f"mel is {sample.mel.dtype}{tuple(sample.mel.shape)}, expected uint8{expected}"
            )
        if m.mel_shape is not None and tuple(m.mel_shape) != expected:
            problems.append(f"json mel_shape {m.mel_shape} != {expected}")
        if m.mel_scale is None or len(m.mel_scale) != m.n_segments:
            problems.append("mel_scale missing or not one per segment")
    elif sample.mel is not None:
        problems.append("mel member present but has_audio is false")
    last_start = -1
    for w in m.words:
        if not 0 <= w.segment < m.n_segments:
            problems.append(f"word {w.text!r} segment {w.segment} out of range")
            break
        if not 0 <= w.subsegment < m.params.subsegments:
            problems.append(f"word {w.text!r} sub-segment {w.subsegment} out of range")
            break
        if not (m.start_ms <= (w.start_ms + w.end_ms) // 2 <= m.end_ms) or w.end_ms < w.start_ms:
            problems.append(f"word {w.text!r} [{w.start_ms}, {w.end_ms}] outside window")
            break
        if w.start_ms < last_start:
            problems.append(f"word {w.text!r} starts before the word before it")
            break
        last_start = w.start_ms
    if problems:
        raise SampleError(f"{key}: " + "; ".join(problems))


def params_dict(params: ExtractionParams) -> dict[str, Any]:
    return asdict(params)
