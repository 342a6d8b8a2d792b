"""ingest.features: per-segment log-mel and its uint8 form."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from ingest.config import AudioConfig
from ingest.features import log_mel_segments, mel_basis
from shards.schema import dequantize_mel as dequantize
from shards.schema import quantize_mel as quantize

CFG = AudioConfig()
SR = CFG.sample_rate
SEG_MS = 5000
SEG = SR * SEG_MS // 1000  # 110,250 samples


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise and a gliding tone, gated on and off: energy that varies in time and frequency."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = np.sin(2 * np.pi * (150 * t + 40 * np.sin(2 * np.pi * 0.7 * t)))
    gate = (np.sin(2 * np.pi * 2.1 * t) > 0).astype(np.float64)
    return (0.4 * gate * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_log_mel(samples: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=samples,
        sr=SR,
        n_fft=CFG.n_fft,
        hop_length=CFG.hop_length,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=CFG.n_mels,
        fmin=CFG.fmin,
        fmax=CFG.fmax,
    )
    return np.log(mel + CFG.log_offset) - np.log(CFG.log_offset)


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return _speechy(12.0)


def test_five_second_segments_are_64_by_188(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 2, SEG_MS, CFG)
    assert mel.shape == (2, 64, 188) and mel.dtype == np.float32
    assert CFG.frames_per_segment(SEG_MS) == 188


def test_each_segment_matches_librosa_melspectrogram_on_its_own_samples(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 2, SEG_MS, CFG)
    for k in range(2):
        expected = _librosa_log_mel(audio[k * SEG : (k + 1) * SEG])
        np.testing.assert_allclose(mel[k], expected, atol=1e-4, rtol=1e-4)
    assert mel[0].max() > 1.0  # not trivially silent
    assert not np.allclose(mel[0], mel[1])


def test_silence_gives_zeros() -> None:
    mel = log_mel_segments(np.zeros(SEG, dtype=np.float32), 1, SEG_MS, CFG)
    assert np.array_equal(mel, np.zeros_like(mel))


def test_audio_shorter_than_the_segments_is_zero_padded(audio: np.ndarray) -> None:
    short = audio[: SEG + SEG // 3]  # one whole segment and a third of the next
    mel = log_mel_segments(short, 3, SEG_MS, CFG)
    padded = np.zeros(SEG, dtype=np.float32)
    padded[: SEG // 3] = short[SEG:]
    np.testing.assert_allclose(mel[1], _librosa_log_mel(padded), atol=1e-4, rtol=1e-4)
    assert np.array_equal(mel[2], np.zeros_like(mel[2]))


def test_a_tone_lands_in_the_mel_band_of_its_frequency() -> None:
    t = np.arange(SEG) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel = log_mel_segments(tone, 1, SEG_MS, CFG)[0]
    centres = librosa.mel_frequencies(CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax)[1:-1]
    assert abs(centres[mel[:, 94].argmax()] - 1000) < 80


def test_the_mel_filterbank_is_built_once() -> None:
    assert mel_basis(CFG) is mel_basis(AudioConfig())
    assert mel_basis(CFG).shape == (64, CFG.n_fft // 2 + 1)


def test_quantize_scales_each_segment_by_its_99th_percentile(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 2, SEG_MS, CFG)
    q, scales = quantize(mel)
    assert q.dtype == np.uint8 and q.shape == mel.shape
    assert scales.dtype == np.float32 and scales.shape == (2,)
    for k in range(2):
        assert scales[k] == pytest.approx(255 / max(np.quantile(mel[k], 0.99), 1.0), rel=1e-6)
    assert (q == 255).mean() == pytest.approx(0.01, abs=0.005)  # the top 1% saturates


def test_quantize_round_trip_is_within_half_a_step(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 2, SEG_MS, CFG)
    q, scales = quantize(mel)
    back = dequantize(q, scales)
    assert back.dtype == np.float32
    step = (1 / scales)[:, None, None]
    unsaturated = q < 255
    err = np.abs(back - mel)
    assert np.all(err[unsaturated] <= (0.5 * step * np.ones_like(mel))[unsaturated] + 1e-5)
    assert np.all(err <= np.maximum(step, mel - 255 * step) + 1e-5)  # saturated: clipped


def test_quantize_of_silence_is_zero_with_scale_255() -> None:
    q, scales = quantize(np.zeros((1, 64, 188), dtype=np.float32))
    assert not q.any() and scales.tolist() == [255.0]
