"""Per-segment log-mel spectrograms (MERLOT Reserve's audio target) and their uint8 form.

Each segment of ``L = sample_rate * segment_ms // 1000`` samples gets its own
centred STFT (Hann window, zero padding at both ends, as
``librosa.feature.melspectrogram`` with ``pad_mode="constant"``), a power
spectrum (magnitude squared, librosa's ``power=2.0``), the mel filterbank and
``ln(mel + offset) - ln(offset)`` (computed as ``log1p(mel / offset)``, so
silence is exactly 0). With the defaults a 5 s segment gives (64, 188).

The inverse (a log-mel block back to sound, for listening) is ``shards.mel``: it
needs only what each sample records. Segments are computed one at a time into the
output array, so memory beyond
the audio itself is one segment's STFT; the filterbank is built once per
parameter set.

BLAS runs single-threaded here (``threadpoolctl``): the matrices are small, and
OpenBLAS's idle threads spin; with its default thread pool the mel projection
cost 100x more CPU time on the 2-core dev machine (0.8 s vs 0.006 s for 24
segments). Ingest parallelism comes from worker processes, not BLAS threads.
"""

from __future__ import annotations

import functools
import logging

import librosa
import numpy as np
from threadpoolctl import threadpool_limits

from ingest.config import AudioConfig

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    basis = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float32
    )
    basis.setflags(write=False)
    return basis  # (n_mels, 1 + n_fft // 2)


def mel_basis(cfg: AudioConfig) -> np.ndarray:
    """The (read-only, cached) mel filterbank for ``cfg``: (n_mels, 1 + n_fft // 2)."""
    return _mel_basis(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)


def segment_samples(segment_ms: int, cfg: AudioConfig) -> int:
    """Samples per segment: ``sample_rate * segment_ms // 1000``."""
    return cfg.sample_rate * segment_ms // 1000


def log_mel_segments(
    audio: np.ndarray, n_segments: int, segment_ms: int, cfg: AudioConfig
) -> np.ndarray:
    """Log-mel of each segment: (n_segments, n_mels, frames_per_segment) float32.

    Segment k covers samples ``[k * L, (k + 1) * L)`` of the mono ``audio``;
    samples past its end count as silence.
    """
    assert audio.ndim == 1, f"expected mono audio, got shape {audio.shape}"
    n_samples = segment_samples(segment_ms, cfg)
    n_frames = cfg.frames_per_segment(segment_ms)
    basis = mel_basis(cfg)
    out = np.empty((n_segments, cfg.n_mels, n_frames), dtype=np.float32)
    segment = np.zeros(n_samples, dtype=np.float32)  # reused sample buffer
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(n_segments):
            chunk = audio[k * n_samples : (k + 1) * n_samples]
            segment[: len(chunk)] = chunk
            segment[len(chunk) :] = 0.0  # past the end of the audio: silence
            out[k] = _log_mel(segment, basis, cfg)
    return out


def _log_mel(samples: np.ndarray, basis: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    spec = librosa.stft(
        samples,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        window="hann",
        center=True,
        pad_mode="constant",
    )  # (1 + n_fft // 2, frames) complex64
    mel = basis @ (spec.real**2 + spec.imag**2)  # (n_mels, frames) power mel
    return np.log1p(mel / cfg.log_offset)
