"""YouTube json3 captions: word offsets per event, taken once each; manual json3 spread
over its events; a malformed file is a one-line CaptionError, and the video's failure."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.caption_forms import parse_json3
from ingest.captions import CaptionError, parse_captions
from ingest.core import VideoFailure, load_captions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captions"


def test_json3_asr_gives_the_words_and_times_of_the_same_track_as_vtt() -> None:
    vtt = parse_captions(FIXTURES / "youtube_auto.en.vtt")
    j3 = parse_captions(FIXTURES / "youtube_auto.en.json3")
    assert j3.kind == "auto"
    assert [(w.text, w.start_ms) for w in j3.words] == [(w.text, w.start_ms) for w in vtt.words]
    assert [w.text for w in j3.non_speech] == ["[Music]", "[Applause]"]
    for a, b in zip(j3.words, vtt.words, strict=True):
        assert abs(a.end_ms - b.end_ms) <= 10, (a, b)  # VTT cues end 10 ms before the next
    assert all(a.end_ms <= b.start_ms for a, b in pairwise(j3.words))


def test_each_word_starts_at_its_event_plus_its_offset_and_ends_at_the_next() -> None:
    doc = {"events": [
        {"tStartMs": 0, "dDurationMs": 9000, "id": 1},
        {"tStartMs": 1000, "dDurationMs": 5000, "segs": [
            {"utf8": "hello"}, {"utf8": " big", "tOffsetMs": 400}, {"utf8": " world", "tOffsetMs": 900}]},
        {"tStartMs": 3000, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]},
        {"tStartMs": 3000, "dDurationMs": 800, "segs": [{"utf8": "again"}]},
    ]}  # fmt: skip
    caps = parse_json3(json.dumps(doc))
    got = [(w.text, w.start_ms, w.end_ms) for w in caps.words]
    assert got == [("hello", 1000, 1400), ("big", 1400, 1900), ("world", 1900, 3000),
                   ("again", 3000, 3800)]  # fmt: skip


def test_manual_json3_lines_are_spread_over_their_events() -> None:
    doc = {"events": [{"tStartMs": 1000, "dDurationMs": 1000, "segs": [{"utf8": "ab cd"}]},
                      {"tStartMs": 2000, "dDurationMs": 600, "segs": [{"utf8": "[Music]"}]}]}  # fmt: skip
    caps = parse_json3(json.dumps(doc))
    assert caps.kind == "manual"
    assert [(w.text, w.start_ms, w.end_ms) for w in caps.words] == [
        ("ab", 1000, 1500), ("cd", 1500, 2000)]  # fmt: skip
    assert [w.text for w in caps.non_speech] == ["[Music]"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"events": [{"tStartMs": 0, "segs": [', "json3 does not parse"),
        ("[]", "no events list"),
        ('{"events": {"a": 1}}', "no events list"),
        ('{"events": [7]}', "event 1: not an object"),
        ('{"events": [{"segs": [{"utf8": "x"}]}]}', "event 1: tStartMs must be"),
        ('{"events": [{"tStartMs": -5, "segs": [{"utf8": "x"}]}]}', "tStartMs must be"),
        ('{"events": [{"tStartMs": 1.5, "segs": [{"utf8": "x"}]}]}', "tStartMs must be"),
        ('{"events": [{"tStartMs": true, "segs": [{"utf8": "x"}]}]}', "tStartMs must be"),
        ('{"events": [{"tStartMs": 0, "segs": "x"}]}', "segs is not a list"),
        ('{"events": [{"tStartMs": 0, "segs": [{"utf8": 3}]}]}', "not an object with utf8"),
        (
            '{"events": [{"tStartMs": 0, "segs": [{"utf8": "x", "tOffsetMs": "9"}]}]}',
            "tOffsetMs must be",
        ),
        ('{"events": [{"tStartMs": 1e400, "segs": []}]}', "tStartMs must be"),
    ],
)
def test_a_malformed_json3_is_a_one_line_error_and_the_videos_failure(tmp_path, text, says):
    path = tmp_path / "video.en.json3"
    path.write_text(text)
    with pytest.raises(CaptionError, match=says) as info:
        parse_captions(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(VideoFailure) as failure:
        load_captions(path, require=True)
    assert (failure.value.stage, failure.value.reason) == ("captions", "malformed_captions")


def test_a_json3_file_is_told_by_content_whatever_its_name(tmp_path) -> None:
    path = tmp_path / "captions.txt"
    path.write_bytes((FIXTURES / "youtube_auto.en.json3").read_bytes())
    assert [w.text for w in parse_captions(path).words][:3] == ["so", "today", "we're"]


_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=8),
)
_SEG = st.dictionaries(st.sampled_from(["utf8", "tOffsetMs", "acAsrConf"]), _SCALAR, max_size=3)
_EVENT = st.one_of(
    _SCALAR,
    st.dictionaries(
        st.sampled_from(["tStartMs", "dDurationMs", "aAppend", "segs"]),
        st.one_of(_SCALAR, st.lists(st.one_of(_SEG, _SCALAR), max_size=4)),
        max_size=4,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_SCALAR, st.dictionaries(st.just("events"), st.lists(_EVENT, max_size=6))))
def test_any_json_gives_ordered_words_or_a_caption_error_never_a_crash(doc) -> None:
    try:
        caps = parse_json3(json.dumps(doc), "fuzz.json3")
    except CaptionError as exc:
        assert str(exc).startswith("fuzz.json3: ") and "\n" not in str(exc)
        return
    assert all(w.start_ms <= w.end_ms for w in caps.words + caps.non_speech)
    assert all(a.start_ms <= b.start_ms for a, b in pairwise(caps.words))
