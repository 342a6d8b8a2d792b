"""ingest.media on real ffmpeg runs over generated videos (see devtools/mediagen.py)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devtools.mediagen import make_video, read_frame_index, truncate
from ingest import media
from ingest.config import FrameConfig
from ingest.deadline import Deadline, DeadlineExceeded
from ingest.media import (
    MediaError,
    content_box,
    decode_audio,
    extract_frames,
    output_geometry,
    probe,
)
from tests.helpers import stalled_input

FPS = 25
PERIOD_MS = 1000 / FPS
CFG = FrameConfig()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def video(media_dir: Path) -> Path:
    return make_video(media_dir / "plain.mp4", 12.0, fps=FPS, audio="tone")


@pytest.fixture(scope="module")
def silent_video(media_dir: Path) -> Path:
    return make_video(media_dir / "silent.mp4", 6.0, fps=FPS, audio=None)


@pytest.fixture(scope="module")
def letterboxed(media_dir: Path) -> Path:
    return make_video(media_dir / "letterbox.mp4", 6.0, fps=FPS, audio=None, letterbox=True)


@pytest.fixture(scope="module")
def pillarboxed(media_dir: Path) -> Path:
    return make_video(media_dir / "pillarbox.mp4", 6.0, fps=FPS, audio=None, pillarbox=True)


def _image(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    return image


def _luma(jpeg: bytes) -> np.ndarray:
    return np.asarray(_image(jpeg).convert("L"), dtype=np.float32)


# ---------------------------------------------------------------- probe


def test_probe_reports_size_rate_duration_and_streams(video: Path) -> None:
    info = probe(video)
    assert (info.width, info.height) == (640, 360)
    assert info.fps == Fraction(FPS)
    assert abs(info.duration_ms - 12000) <= 50
    assert info.has_video and info.has_audio
    assert info.video_duration_ms == 12000


def test_probe_of_video_without_audio_says_so(silent_video: Path) -> None:
    info = probe(silent_video)
    assert info.has_video and not info.has_audio
    assert info.audio_duration_ms is None


def test_probe_of_garbage_raises_media_error_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(MediaError, match=r"garbage\.mp4: ffprobe cannot read it"):
        probe(garbage)


def test_probe_of_missing_file_raises_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"nothing\.mp4.*No such file"):
        probe(tmp_path / "nothing.mp4")


def test_truncated_mp4_without_faststart_fails_at_probe(tmp_path: Path) -> None:
    whole = make_video(tmp_path / "slow.mp4", 1.0, faststart=False, audio=None)
    cut = truncate(whole, tmp_path / "slow-cut.mp4", 0.5)
    probe(whole)  # the intact file is fine
    with pytest.raises(MediaError, match=r"slow-cut\.mp4: .*moov atom not found"):
        probe(cut)


# ---------------------------------------------------------------- frames


def test_frames_at_segment_midpoints_are_the_nearest_frames(video: Path) -> None:
    midpoints = [2500, 7500]  # 5 s segments of a 12 s video
    extra = [0, 1210, 6010, 11_960]  # 1210, 6010: the nearest frame is the earlier one
    times = midpoints + extra
    frames = extract_frames(video, times, CFG)
    assert len(frames) == len(times)
    for t, jpeg in zip(times, frames, strict=True):
        shown_ms = read_frame_index(jpeg) * PERIOD_MS
        assert abs(shown_ms - t) <= PERIOD_MS / 2 + 1, (t, shown_ms)


def test_frames_past_the_end_give_the_last_frame(video: Path) -> None:
    frames = extract_frames(video, [12_000, 15_000], CFG)
    assert [read_frame_index(f) for f in frames] == [12 * FPS - 1] * 2


def test_frames_keep_request_order_across_chunks_and_duplicates(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "MAX_INPUTS_PER_PROCESS", 4)  # 11 distinct times -> 3 processes
    times = [9000, 520, 3000, 11_000, 520, 7000, 1000, 5000, 10_000, 2000, 8000, 4000, 6000]
    frames = extract_frames(video, times, CFG)
    assert [read_frame_index(f) for f in frames] == [round(t / PERIOD_MS) for t in times]


def test_frames_of_a_16_by_9_video_are_512_by_288(video: Path) -> None:
    frames = extract_frames(video, [2500, 7500], CFG)
    assert [_image(f).size for f in frames] == [(512, 288)] * 2


def test_no_frames_requested_gives_no_frames(video: Path) -> None:
    assert extract_frames(video, [], CFG) == []


def test_letterbox_bars_are_trimmed(letterboxed: Path) -> None:
    frames = extract_frames(letterboxed, [1000, 2520, 4000], CFG)
    for t, jpeg in zip([1000, 2520, 4000], frames, strict=True):
        luma = _luma(jpeg)
        assert luma.shape == (288, 512)  # 640x270 picture -> 683x288, long side cropped to 512
        rows = luma.mean(axis=1)
        assert rows[:2].min() > CFG.black_threshold and rows[-2:].min() > CFG.black_threshold
        assert read_frame_index(jpeg) == round(t / PERIOD_MS)  # the picture, not squashed


def test_letterbox_bars_stay_when_trimming_is_off(letterboxed: Path) -> None:
    cfg = FrameConfig(trim_black_bars=False)
    (jpeg,) = extract_frames(letterboxed, [2500], cfg)
    rows = _luma(jpeg).mean(axis=1)
    assert rows[:10].max() <= cfg.black_threshold and rows[-10:].max() <= cfg.black_threshold


def test_pillarbox_bars_are_trimmed_to_the_4_by_3_picture(pillarboxed: Path) -> None:
    frames = extract_frames(pillarboxed, [1000, 4000], CFG)
    for t, jpeg in zip([1000, 4000], frames, strict=True):
        luma = _luma(jpeg)
        assert luma.shape == (288, 384)
        cols = luma.mean(axis=0)
        assert cols[:2].min() > CFG.black_threshold and cols[-2:].min() > CFG.black_threshold
        assert read_frame_index(jpeg) == round(t / PERIOD_MS)


def test_video_without_audio_still_yields_frames(silent_video: Path) -> None:
    info = probe(silent_video)
    frames = extract_frames(silent_video, [2520], CFG, info)
    assert read_frame_index(frames[0]) == round(2520 / PERIOD_MS)


def test_audio_only_file_has_no_frames(tmp_path: Path) -> None:
    m4a = tmp_path / "audio.m4a"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(m4a)],
        check=True,
    )
    info = probe(m4a)
    assert info.has_audio and not info.has_video and info.width == 0
    with pytest.raises(MediaError, match=r"audio\.m4a: no video stream"):
        extract_frames(m4a, [1000], CFG, info)


def test_frames_past_the_cut_of_a_truncated_video_raise(video: Path, tmp_path: Path) -> None:
    cut = truncate(video, tmp_path / "cut.mp4", 0.5)  # faststart: the moov survives
    info = probe(cut)
    assert info.duration_ms == 12000  # probing alone cannot tell
    assert read_frame_index(extract_frames(cut, [1000], CFG, info)[0]) == 25
    with pytest.raises(MediaError, match=r"cut\.mp4: no frame at"):
        extract_frames(cut, [1000, 10_000], CFG, info)


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("rate", [22050, 16000])
def test_decode_audio_is_mono_float32_of_the_full_length(video: Path, rate: int) -> None:
    audio = decode_audio(video, rate)
    assert audio.dtype == np.float32 and audio.ndim == 1
    aac_frame = 1024 * rate // 44100 + 1  # the source is 44.1 kHz AAC
    assert abs(len(audio) - 12 * rate) <= aac_frame
    spectrum = np.abs(np.fft.rfft(audio[rate : 3 * rate]))
    assert np.argmax(spectrum) * rate / (2 * rate) == pytest.approx(440, abs=1)  # the 440 Hz tone


def test_decode_audio_reads_past_a_too_short_probed_duration(video: Path) -> None:
    info = dataclasses.replace(probe(video), audio_duration_ms=2000)  # buffer must grow
    audio = decode_audio(video, 22050, info)
    assert abs(len(audio) - 12 * 22050) <= 512
    assert audio.flags.owndata and audio.base is None


def test_decode_audio_without_audio_stream_raises(silent_video: Path) -> None:
    with pytest.raises(MediaError, match=r"silent\.mp4: no audio stream"):
        decode_audio(silent_video, 22050)


def test_decode_audio_of_truncated_file_raises(video: Path, tmp_path: Path) -> None:
    cut = truncate(video, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(MediaError, match=r"cut\.mp4: audio truncated: decoded .* of 12\.00 s"):
        decode_audio(cut, 22050)


def test_decode_audio_of_garbage_raises(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(10_000))
    with pytest.raises(MediaError, match="garbage"):
        decode_audio(garbage, 22050)


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("box", "size", "region"),
    [
        ((0, 0, 640, 360), (512, 288), (0, 0, 640, 360)),  # 16:9 fits exactly
        ((80, 0, 560, 360), (384, 288), (80, 0, 560, 360)),  # 4:3 picture inside bars
        ((0, 45, 640, 315), (512, 288), (80, 45, 560, 315)),  # 2.37:1 -> long side centre-cropped
        ((0, 0, 360, 640), (288, 512), (0, 0, 360, 640)),  # portrait 9:16
        ((0, 0, 320, 180), (512, 288), (0, 0, 320, 180)),  # small: upscaled
        ((0, 0, 1280, 720), (512, 288), (0, 0, 1280, 720)),
    ],
)
def test_output_geometry_scales_short_side_and_crops_long_side(
    box: tuple[int, int, int, int], size: tuple[int, int], region: tuple[float, ...]
) -> None:
    got_size, got_region = output_geometry(box, CFG)
    assert got_size == size
    assert got_region == pytest.approx(region, abs=0.01)


def _frame(
    h: int = 90, w: int = 160, picture: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    if picture:
        left, top, right, bottom = picture
        rgb[top:bottom, left:right] = 180
    return rgb


def test_content_box_finds_bars_on_all_sides() -> None:
    frame = _frame(picture=(20, 10, 140, 80))
    frame[:10] = 12  # dark grey noise-level bars still count as black
    assert content_box([frame], threshold=24) == (20, 10, 140, 80)


def test_content_box_is_the_union_over_frames_and_ignores_black_frames() -> None:
    frames = [_frame(picture=(20, 10, 140, 80)), _frame(picture=(30, 5, 150, 60)), _frame()]
    assert content_box(frames, threshold=24) == (20, 5, 150, 80)


def test_content_box_keeps_the_frame_when_all_black_or_a_small_logo() -> None:
    assert content_box([_frame()], threshold=24) == (0, 0, 160, 90)
    logo = _frame(picture=(70, 40, 90, 50))  # 12% x 11% of the frame
    assert content_box([logo], threshold=24) == (0, 0, 160, 90)


# ---------------------------------------------------------------- deadlines


@pytest.mark.parametrize("step", ["probe", "frames", "audio"])
def test_ffmpeg_still_running_at_the_deadline_is_killed(tmp_path: Path, step: str) -> None:
    info = media.MediaInfo(12_000, 320, 180, Fraction(25), True, True)
    deadline = Deadline.after(1.0)
    calls = {
        "probe": lambda path: probe(path, deadline),
        "frames": lambda path: extract_frames(path, [500, 5500], CFG, info, deadline),
        "audio": lambda path: decode_audio(path, 22050, info, deadline),
    }
    # the input never delivers; without the deadline this ends as a MediaError after 60 s
    with stalled_input(tmp_path / "stalled.mp4") as path, pytest.raises(DeadlineExceeded) as err:
        calls[step](path)
    assert "killed, past its 1 s deadline" in str(err.value)
    assert str(path) in str(err.value)


def test_a_deadline_with_time_left_changes_nothing(video: Path) -> None:
    deadline = Deadline.after(300.0)
    info = probe(video, deadline)
    assert info == probe(video)
    assert extract_frames(video, [1000], CFG, info, deadline) == extract_frames(video, [1000], CFG)
    assert np.array_equal(decode_audio(video, 16000, info, deadline), decode_audio(video, 16000))
