"""shards.mel: a stored log-mel block back to sound, checked against ingest's forward mel."""

from __future__ import annotations

import numpy as np
import pytest

from devtools.samples import PARAMS
from ingest.config import AudioConfig
from ingest.features import log_mel_segments
from shards.mel import log_mel_to_audio

CFG = AudioConfig()
SEG_MS = 5000
SEG = CFG.sample_rate * SEG_MS // 1000


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """Noise and a gliding tone, gated on and off: energy that varies in time and frequency."""
    rng = np.random.default_rng(0)
    t = np.arange(SEG) / CFG.sample_rate
    tone = np.sin(2 * np.pi * (150 * t + 40 * np.sin(2 * np.pi * 0.7 * t)))
    gate = (np.sin(2 * np.pi * 2.1 * t) > 0).astype(np.float64)
    return (0.4 * gate * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_mel_to_audio_gives_a_waveform_whose_mel_matches(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 1, SEG_MS, CFG)[0]
    wave = log_mel_to_audio(mel, CFG, n_iter=16)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SEG) <= CFG.hop_length
    again = log_mel_segments(wave, 1, SEG_MS, CFG)[0]
    assert np.corrcoef(again.ravel(), mel.ravel())[0, 1] > 0.9


def test_a_samples_own_params_invert_it_as_ingests_config_does(audio: np.ndarray) -> None:
    mel = log_mel_segments(audio, 1, SEG_MS, CFG)[0]
    from_params = log_mel_to_audio(mel, PARAMS, n_iter=4)  # what `shards show --wav` passes
    assert np.array_equal(from_params, log_mel_to_audio(mel, CFG, n_iter=4))
