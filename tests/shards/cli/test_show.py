"""show: one sample as a PNG (frames, log-mel, words on one time axis) and as a WAV."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from shards.cli.locate import locate
from shards.cli.main import main
from shards.cli.show import ShowError, find_sample, render, synthesize
from tests.helpers import RealOutput, real_output


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealOutput:
    return real_output(tmp_path_factory)


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def test_show_draws_a_full_picture_of_a_real_sample(real, tmp_path, capsys):
    out = tmp_path / "speech.png"
    assert main(["show", str(real.out), "--key", "speech_w0001", "--out", str(out)]) == 0
    assert f"{out}: speech_w0001 (shard-test-000.tar)" in capsys.readouterr().out
    px = pixels(out)
    h, w, _ = px.shape
    assert w == 1600 and 500 <= h <= 1000, (w, h)
    not_white = (px < 245).any(axis=2)
    assert 0.2 < not_white.mean() < 0.95  # drawn on, not a blank or flooded canvas
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 500  # frames and a spectrogram
    # the spectrogram band (middle of the picture) is mostly dark (magma's low end)
    band = px[int(h * 0.45) : int(h * 0.6), int(w * 0.1) : int(w * 0.9)]
    assert (band.mean(axis=2) < 80).mean() > 0.3


def test_key_and_index_pick_the_same_sample(real):
    target = locate(str(real.out))
    by_index = find_sample(target, index=3)
    by_key = find_sample(target, key=by_index[1].key)
    assert by_index[1].key == "manual_w0000"  # shards hold speech x2, silent, manual x2
    assert by_key[0] == by_index[0] == "shard-test-002.tar"
    assert by_key[1].meta == by_index[1].meta and by_key[1].frames == by_index[1].frames


def test_a_sample_without_audio_is_drawn_and_has_no_sound(real, tmp_path, capsys):
    shard, sample = find_sample(locate(str(real.out)), key="silent_w0000")
    assert sample.mel is None
    px = pixels(render(sample, tmp_path / "silent.png", shard))
    assert px.shape[1] == 1600
    code = main(
        ["show", str(real.out), "--key", "silent_w0000", "--out", str(tmp_path / "s.png"),
         "--wav", str(tmp_path / "s.wav")]
    )  # fmt: skip
    assert code == 1 and not (tmp_path / "s.wav").exists()
    assert "has no audio" in capsys.readouterr().err


def test_wav_is_the_spectrogram_made_audible(real, tmp_path):
    import librosa
    import soundfile

    wav = tmp_path / "speech.wav"
    args = ["show", str(real.out), "--index", "0", "--out", str(tmp_path / "p.png")]
    assert main([*args, "--wav", str(wav), "--iters", "16"]) == 0
    audio, rate = soundfile.read(wav, dtype="float32")
    _, sample = find_sample(locate(str(real.out)), index=0)
    p = sample.meta.params
    seg = p.sample_rate * p.segment_ms // 1000
    assert rate == p.sample_rate and len(audio) == sample.meta.n_segments * seg
    assert np.sqrt(np.mean(audio**2)) > 0.01 and np.abs(audio).max() <= 0.91
    # the log-mel of what we wrote matches the stored one, segment by segment
    stored = sample.mel_float()
    for k in range(sample.meta.n_segments):
        mel = librosa.feature.melspectrogram(
            y=audio[k * seg : (k + 1) * seg], sr=rate, n_fft=p.n_fft, hop_length=p.hop_length,
            n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax, pad_mode="constant",
        )  # fmt: skip
        heard = np.log1p(mel / p.log_offset).ravel()
        assert np.corrcoef(heard, stored[k].ravel())[0, 1] > 0.8
        other = stored[(k + 1) % len(stored)].ravel()
        assert np.corrcoef(heard, other)[0, 1] < 0.5


def test_synthesize_keeps_the_videos_time(real):
    _, sample = find_sample(locate(str(real.out)), key="manual_w0001")  # one segment
    audio, rate = synthesize(sample, n_iter=2)
    assert len(audio) == sample.meta.n_segments * rate * sample.meta.params.segment_ms // 1000


def test_missing_key_and_index_out_of_range_say_so(real):
    target = locate(str(real.out))
    with pytest.raises(ShowError, match=r"no sample with key 'nope_w0000' .* \(5 samples\)"):
        find_sample(target, key="nope_w0000")
    with pytest.raises(ShowError, match=r"--index 5 is out of range: .* holds 5 samples"):
        find_sample(target, index=5)


def test_a_damaged_sample_is_refused_with_its_reason(real, tmp_path):
    from tests.helpers import edit_json, read_members, write_members

    shard = tmp_path / "one.tar"
    members = edit_json(read_members(real.shards[0]), "speech_w0000", _shape)
    write_members(shard, members)
    with pytest.raises(ShowError, match=r"speech_w0000.*json mel_shape"):
        find_sample(locate(str(shard)), index=0)
    _, ok = find_sample(locate(str(shard)), index=1)  # its neighbour is fine
    assert ok.key == "speech_w0001"


def _shape(meta: dict) -> None:
    meta["mel_shape"] = [9, 9, 9]


def test_show_without_matplotlib_exits_2_naming_the_extra(real, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "x.png"
    assert main(["show", str(real.out), "--index", "0", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.count("\n") == 1 and "pip install 'montage[tools]'" in captured.err
    assert captured.err.startswith("montage-shards show: error: drawing needs matplotlib")
