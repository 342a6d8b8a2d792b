"""The per-video core on real media made by ffmpeg."""

import dataclasses
import io
import time

import numpy as np
import pytest
from PIL import Image

from devtools import mediagen
from ingest import core
from ingest.config import CoreConfig, FilterConfig, LimitConfig, SegmentConfig
from shards import schema
from tests.helpers import stalled_input

DURATION_S = 16.0  # three full 5 s segments; the last 1 s is dropped


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("core")
    words = mediagen.make_words(DURATION_S, seed=3)
    mediagen.make_video(root / "v.mp4", DURATION_S, audio="speech", width=640, height=360)
    mediagen.make_video(root / "mute.mp4", DURATION_S, audio=None, width=320, height=180)
    mediagen.make_video(root / "short.mp4", 3.0, audio="tone", width=320, height=180)
    mediagen.write_auto_vtt(root / "auto.vtt", words)
    mediagen.write_manual_vtt(root / "manual.vtt", words)
    (root / "garbage.mp4").write_bytes(b"\x00" * 1000 + b"not a video")
    return root, words


def cfg(**filters) -> CoreConfig:
    return CoreConfig(
        segments=SegmentConfig(window_segments=2, window_stride=2, min_segments=1),
        filters=FilterConfig(**{"min_words_per_window": 5, **filters}),
    )


SRC = core.VideoSource(video_id="vid", url="http://x/v.mp4", title="T")


def test_windows_frames_mel_and_words_line_up(media):
    root, words = media
    r = core.process_video(root / "v.mp4", root / "auto.vtt", cfg(), SRC)
    assert (r.segments, len(r.samples), r.has_audio, r.caption_kind) == (3, 2, True, "auto")
    first, last = r.samples
    assert [s.meta.n_segments for s in r.samples] == [2, 1]  # trailing partial window kept
    assert first.mel.shape == (2, 64, 188) and first.mel.dtype == np.uint8
    assert last.meta.segments == [(10_000, 15_000)]
    img = Image.open(io.BytesIO(first.frames[0]))
    assert img.size == (512, 288)
    # every word whose centre is inside the segments is in exactly one window, in order
    inside = [w for w in words if (w.start_ms + w.end_ms) // 2 < 15_000]
    got = [w.text for s in r.samples for w in s.meta.words]
    assert got == [w.text for w in inside] and r.words == len(inside)
    for s in r.samples:
        schema.check(s)  # the format's own invariants hold
        assert s.meta.params.mel_frames == 188 and s.meta.title == "T"


def test_video_without_audio_still_gives_frames_and_words(media):
    root, _ = media
    r = core.process_video(root / "mute.mp4", root / "auto.vtt", cfg(), SRC)
    assert not r.has_audio and r.words > 0
    assert all(
        s.mel is None and not s.meta.has_audio and len(s.frames) == s.meta.n_segments
        for s in r.samples
    )


def test_manual_captions_are_flagged(media):
    root, _ = media
    r = core.process_video(root / "v.mp4", root / "manual.vtt", cfg(), SRC)
    assert r.caption_kind == "manual" and r.samples[0].meta.caption_kind == "manual"


@pytest.mark.parametrize(
    "video, captions, config, expect",
    [
        ("garbage.mp4", "auto.vtt", cfg(), ("failed", "probe", "corrupt_media")),
        (
            "short.mp4",
            "auto.vtt",
            cfg(min_words_per_window=None),
            ("skipped", "filter", "too_short"),
        ),
        ("v.mp4", None, cfg(), ("skipped", "captions", "no_captions")),
        ("v.mp4", "auto.vtt", cfg(max_duration_s=10.0), ("skipped", "filter", "too_long")),
        ("v.mp4", "auto.vtt", CoreConfig(), ("skipped", "filter", "too_few_words")),
        ("v.mp4", "missing.vtt", cfg(), ("failed", "captions", "unreadable_captions")),
        (  # 3 segments: a partial window under the default min_segments=4, so no window at all
            "v.mp4",
            "auto.vtt",
            CoreConfig(filters=FilterConfig(min_words_per_window=None)),
            ("skipped", "filter", "too_short"),
        ),
    ],
)
def test_failures_name_stage_and_reason(media, video, captions, config, expect):
    root, _ = media
    with pytest.raises(core.VideoFailure) as info:
        core.process_video(root / video, root / captions if captions else None, config, SRC)
    exc = info.value
    assert (exc.status, exc.stage, exc.reason) == expect


def test_captions_optional_when_configured(media):
    root, _ = media
    r = core.process_video(
        root / "v.mp4", None, cfg(require_captions=False, min_words_per_window=None), SRC
    )
    assert r.words == 0 and r.caption_kind == "none" and len(r.samples) == 2


def test_a_stalled_input_ends_as_a_timeout_at_its_step(tmp_path, media):
    root, _ = media
    config = dataclasses.replace(cfg(), limits=LimitConfig(process_deadline_s=1.0))
    # without the deadline, this fails as corrupt_media after 60 s
    stalled = stalled_input(tmp_path / "stalled.mp4")
    with stalled as path, pytest.raises(core.VideoFailure) as info:
        core.process_video(path, root / "auto.vtt", config, SRC)
    exc = info.value
    assert (exc.status, exc.stage, exc.reason) == ("failed", "probe", "timeout"), exc
    assert "1 s deadline" in exc.message


def test_a_video_past_its_deadline_between_steps_is_a_timeout(media, monkeypatch):
    root, _ = media
    config = dataclasses.replace(cfg(), limits=LimitConfig(process_deadline_s=2.0))
    parse = core.parse_captions

    def slow_parse(path):  # an in-process step that takes longer than the whole deadline
        time.sleep(2.5)
        return parse(path)

    monkeypatch.setattr(core, "parse_captions", slow_parse)
    with pytest.raises(core.VideoFailure) as info:
        core.process_video(root / "v.mp4", root / "auto.vtt", config, SRC)
    assert (info.value.stage, info.value.reason) == ("captions", "timeout")


@pytest.mark.parametrize(
    "target, stage",
    [("parse_captions", "captions"), ("make_windows", "segments"), ("build_sample", "samples")],
)
def test_an_unexpected_error_is_an_internal_error_of_its_step(media, monkeypatch, target, stage):
    root, _ = media

    def broken(*args, **kwargs):
        raise KeyError("a bug\nover two lines")

    monkeypatch.setattr(core, target, broken)
    with pytest.raises(core.VideoFailure) as info:
        core.process_video(root / "v.mp4", root / "auto.vtt", cfg(), SRC)
    exc = info.value
    assert (exc.status, exc.stage, exc.reason) == ("failed", stage, "internal_error")
    assert exc.message.startswith("KeyError: ") and "\n" not in exc.message
