"""Listening to a sample: a stored log-mel block back to a waveform (Griffin-Lim).

The forward direction, audio to log-mel, is ingest's (``ingest.features``). Its
inverse needs only the parameters every sample records (``ExtractionParams``), so
it lives with the format: ``shards show --wav`` and ingest's tests use this one
function. Values are ``ln(mel + offset) - ln(offset)`` of a power mel spectrogram
(a centred STFT with a Hann window and zero padding), as in docs/DESIGN.md section 2.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class MelParams(Protocol):
    """What the inversion reads: ``shards.schema.ExtractionParams`` and ingest's
    ``AudioConfig`` both have these fields."""

    sample_rate: int
    n_fft: int
    hop_length: int
    fmin: float
    fmax: float
    log_offset: float


def log_mel_to_audio(log_mel: np.ndarray, params: MelParams, n_iter: int = 32) -> np.ndarray:
    """A float32 waveform for one ``(n_mels, T)`` log-mel block, about
    ``(T - 1) * hop_length`` samples at ``params.sample_rate``; the same block gives
    the same waveform (Griffin-Lim starts from seeded random phases)."""
    import librosa  # slow to import; only listening needs it
    from threadpoolctl import threadpool_limits

    assert log_mel.ndim == 2, f"expected (n_mels, T), got shape {log_mel.shape}"
    power = np.maximum(np.expm1(log_mel.astype(np.float32)) * params.log_offset, 0.0)
    with threadpool_limits(limits=1, user_api="blas"):  # small products; idle BLAS threads spin
        magnitude = librosa.feature.inverse.mel_to_stft(
            power,
            sr=params.sample_rate,
            n_fft=params.n_fft,
            power=2.0,
            fmin=params.fmin,
            fmax=params.fmax,
        )  # (1 + n_fft // 2, T): the least-squares STFT magnitude under the filterbank
        audio = librosa.griffinlim(
            magnitude,
            n_iter=n_iter,
            hop_length=params.hop_length,
            n_fft=params.n_fft,
            window="hann",
            center=True,
            pad_mode="constant",
            random_state=0,
        )
    return audio.astype(np.float32, copy=False)
