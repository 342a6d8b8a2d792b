"""Tests for ingest.captions: YouTube auto captions, manual VTT, SRT, errors, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.captions import (
    CaptionError,
    Word,
    main,
    parse_captions,
    parse_srt,
    parse_vtt,
    spread,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captions"
ROOT = Path(__file__).resolve().parents[2]
YT_HEADER = "WEBVTT\nKind: captions\nLanguage: en\n\n"
CUE = "align:start position:0%"


def triples(words: tuple[Word, ...]) -> list[tuple[str, int, int]]:
    return [(w.text, w.start_ms, w.end_ms) for w in words]


# --- YouTube auto captions -------------------------------------------------------


def test_youtube_fixture_gives_each_word_once_with_its_tag_time() -> None:
    caps = parse_captions(FIXTURES / "youtube_auto.en.vtt")
    assert caps.kind == "auto"
    assert triples(caps.words) == [
        ("so", 1510, 1920),  # first word of a line: the cue start
        ("today", 1920, 2240),
        ("we're", 2240, 2560),
        ("going", 2560, 2800),
        ("to", 2800, 3040),
        ("make", 3040, 4320),  # last word of a cue: the cue end
        ("bread", 4330, 4800),
        ("at", 4800, 5010),
        ("home", 5010, 5520),
        ("it's", 5520, 5790),
        ("really", 5790, 6240),
        ("easy", 6240, 6950),
        ("okay", 6960, 8000),  # a one-word line has no tag
        ("first", 10510, 10900),
        ("the", 10900, 11200),
        ("flour", 11200, 12000),
    ]


def test_youtube_fixture_flags_bracketed_tags_as_non_speech() -> None:
    caps = parse_captions(FIXTURES / "youtube_auto.en.vtt")
    assert triples(caps.non_speech) == [("[Music]", 0, 1500), ("[Applause]", 8010, 10500)]
    assert not any("[" in w.text for w in caps.words)


def test_ten_ms_cues_that_repeat_text_add_no_words() -> None:
    text = (
        YT_HEADER + f"00:00:00.000 --> 00:00:02.000 {CUE}\n \n"
        "hello<00:00:00.500><c> there</c>\n\n"
        f"00:00:02.000 --> 00:00:02.010 {CUE}\nhello there\n \n\n"
        f"00:00:02.010 --> 00:00:02.020 {CUE}\nhello there\n \n\n"
        f"00:00:02.020 --> 00:00:04.000 {CUE}\nhello there\n"
        "friend<00:00:03.000><c> hello</c>\n"
    )
    caps = parse_vtt(text, "t.vtt")
    assert triples(caps.words) == [
        ("hello", 0, 500),
        ("there", 500, 2000),
        ("friend", 2020, 3000),
        ("hello", 3000, 4000),  # a real second "hello" is kept
    ]


def test_rolling_layout_keeps_a_new_line_equal_to_the_repeated_one() -> None:
    text = (
        YT_HEADER + f"00:00:01.000 --> 00:00:02.000 {CUE}\n \nokay\n\n"
        f"00:00:02.000 --> 00:00:02.010 {CUE}\nokay\n \n\n"
        f"00:00:02.010 --> 00:00:03.000 {CUE}\nokay\nokay\n\n"
        f"00:00:03.000 --> 00:00:03.010 {CUE}\nokay\n \n\n"
        f"00:00:03.010 --> 00:00:05.000 {CUE}\nokay\nso<00:00:04.000><c> yes</c>\n"
    )
    caps = parse_vtt(text, "t.vtt")
    assert triples(caps.words) == [
        ("okay", 1000, 2000),
        ("okay", 2010, 3000),
        ("so", 3010, 4000),
        ("yes", 4000, 5000),
    ]


def test_auto_times_keep_milliseconds_past_the_hour() -> None:
    text = YT_HEADER + f"01:02:03.456 --> 01:02:05.000 {CUE}\n \nab<01:02:04.321><c> cd</c>\n"
    caps = parse_vtt(text)
    assert triples(caps.words) == [("ab", 3723456, 3724321), ("cd", 3724321, 3725000)]


def test_auto_words_are_unique_and_time_ordered_in_fixture() -> None:
    caps = parse_captions(FIXTURES / "youtube_auto.en.vtt")
    counts = Counter(w.text for w in caps.words)
    assert max(counts.values()) == 1
    starts = [w.start_ms for w in caps.words]
    assert starts == sorted(starts)
    assert all(a.end_ms <= b.start_ms for a, b in pairwise(caps.words))


def test_auto_entities_are_decoded() -> None:
    text = (
        YT_HEADER
        + f"00:00:00.000 --> 00:00:01.000 {CUE}\n \nrock<00:00:00.400><c> &amp;</c><00:00:00.600><c> don&#39;t</c>\n"
    )
    caps = parse_vtt(text)
    assert [w.text for w in caps.words] == ["rock", "don't"]  # a bare "&" is no word
    assert triples(caps.words)[-1] == ("don't", 600, 1000)


# --- manual captions ---------------------------------------------------------------


def test_manual_vtt_spreads_words_by_length_and_strips_markup() -> None:
    caps = parse_captions(FIXTURES / "manual.en.vtt")
    assert caps.kind == "manual"
    # "Welcome to the kitchen." -> 7, 2, 3, 8 characters over 3000 ms
    assert triples(caps.words)[:4] == [
        ("Welcome", 500, 1550),
        ("to", 1550, 1850),
        ("the", 1850, 2300),
        ("kitchen.", 2300, 3500),
    ]
    texts = [w.text for w in caps.words]
    assert texts[4:] == ["Today:", "bread", "butter", "It's", "easy."]
    assert not any(ch in "".join(texts) for ch in "<>&")


def test_manual_vtt_flags_non_speech_in_other_languages() -> None:
    caps = parse_captions(FIXTURES / "manual.en.vtt")
    assert triples(caps.non_speech) == [
        ("[Música]", 6000, 8000),
        ("[Applaudissements]", 8666, 10000),
    ]


def test_manual_cue_words_tile_the_cue_exactly() -> None:
    caps = parse_vtt("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\naaa b cc dddd\n")
    words = caps.words
    assert words[0].start_ms == 0 and words[-1].end_ms == 1000
    assert all(a.end_ms == b.start_ms for a, b in pairwise(words))
    assert [w.end_ms - w.start_ms for w in words] == [300, 100, 200, 400]


@given(
    tokens=st.lists(st.text("abcxyz", min_size=1, max_size=12), min_size=1, max_size=30),
    start=st.integers(0, 10**7),
    length=st.integers(0, 10**5),
)
def test_spread_is_contiguous_exact_and_proportional(
    tokens: list[str], start: int, length: int
) -> None:
    words = spread(tokens, start, start + length)
    assert [w.text for w in words] == tokens
    assert words[0].start_ms == start and words[-1].end_ms == start + length
    assert all(a.end_ms == b.start_ms for a, b in pairwise(words))
    total, done = sum(map(len, tokens)), 0
    for w in words:
        done += len(w.text)
        exact_end = start + Fraction(length * done, total)
        assert 0 <= exact_end - w.end_ms < 1  # the floor of the exact boundary


# --- SRT and format detection --------------------------------------------------------


def test_srt_fixture_parses_words_and_non_speech() -> None:
    caps = parse_captions(FIXTURES / "simple.en.srt")
    assert caps.kind == "manual"
    assert triples(caps.words)[:2] == [("Hello", 1000, 1750), ("world", 1750, 2500)]
    assert [w.text for w in caps.words] == ["Hello", "world", "This", "is", "a", "test", "Bye"]
    assert [w.text for w in caps.non_speech] == ["[Music]"]
    assert caps.words[-1].end_ms == 7000


def test_srt_text_after_an_empty_line_stays_in_its_cue() -> None:
    caps = parse_srt(
        "1\n00:00:00,000 --> 00:00:01,000\nab\n\ncd\n\n2\n00:00:02,000 --> 00:00:03,000\nef\n"
    )
    assert triples(caps.words) == [("ab", 0, 500), ("cd", 500, 1000), ("ef", 2000, 3000)]


def test_srt_cues_without_empty_lines_between_them_are_split() -> None:
    caps = parse_srt(
        "1\n00:00:00,000 --> 00:00:01,000\nab\n2\n00:00:02,000 --> 00:00:03,000\n1984\n"
    )
    assert triples(caps.words) == [("ab", 0, 1000), ("1984", 2000, 3000)]


def test_format_is_detected_by_content_before_extension(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhi\n")
    (tmp_path / "b.vtt").write_text("1\n00:00:00,000 --> 00:00:01,000\nyo\n")
    assert [w.text for w in parse_captions(tmp_path / "a.txt").words] == ["hi"]
    assert [w.text for w in parse_captions(tmp_path / "b.vtt").words] == ["yo"]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.vtt"
    path.write_bytes(b"\xef\xbb\xbfWEBVTT\r\n\r\n00:00:00.000 --> 00:00:01.000\r\nhi there\r\n")
    assert [w.text for w in parse_captions(path).words] == ["hi", "there"]


@pytest.mark.parametrize(
    "text",
    [
        "WEBVTT\n",
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n[Music]\n",
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n♪ ♪\n",
    ],
)
def test_valid_file_without_speech_gives_no_words(text: str) -> None:
    caps = parse_vtt(text)
    assert caps.words == ()
    assert len(caps.non_speech) == text.count("[")


# --- malformed input ------------------------------------------------------------------

GOOD_CUE = "00:00:00.000 --> 00:00:01.000\nhello\n"
MALFORMED: dict[str, tuple[str, bytes, str]] = {
    "no_header": (".vtt", GOOD_CUE.encode(), "WEBVTT header"),
    "bad_header": (".vtt", b"WEBVTTX\n\n" + GOOD_CUE.encode(), "WEBVTT header"),
    "broken_timestamp": (".vtt", b"WEBVTT\n\n00:00:0x.000 --> 00:00:01.000\nhi\n", "line 3"),
    "srt_style_comma": (".vtt", b"WEBVTT\n\n00:00:00,000 --> 00:00:01,000\nhi\n", "timing"),
    "seconds_over_59": (".vtt", b"WEBVTT\n\n00:00:75.000 --> 00:01:20.000\nhi\n", "over 59"),
    "end_before_start": (".vtt", b"WEBVTT\n\n00:00:05.000 --> 00:00:01.000\nhi\n", "ends before"),
    "bad_word_tag": (
        ".vtt",
        b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\na<00:00:1.5><c> b</c>\n",
        "tag",
    ),
    "tag_goes_back": (
        ".vtt",
        b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\na<00:00:00.500><c> b</c>\n",
        "back",
    ),
    "binary_garbage": (".vtt", bytes(range(128, 256)) * 4, "utf-8"),
    "nul_bytes": (".vtt", b"WEBVTT\n\x00\x01\x02\n", "binary"),
    "empty": (".vtt", b"", "empty"),
    "whitespace_only": (".srt", b" \n\n\t\n", "empty"),
    "hours_past_webvtt": (
        ".vtt",
        b"WEBVTT\n\n12345678901:00:00.000 --> 12345678901:00:01.000\nhi\n",
        "could not be read",
    ),
    "srt_end_before_start": (".srt", b"1\n00:00:05,000 --> 00:00:01,000\nhi\n", "ends before"),
    "srt_broken_timestamp": (".srt", b"1\n00:00:aa,000 --> 00:00:01,000\nhi\n", "timing"),
    "srt_no_timing": (".srt", b"hello there\nno cues here\n", "timing line"),
    "hours_of_thousands_of_digits": (
        ".vtt",
        b"WEBVTT\n\n" + b"9" * 5000 + b":00:00.000 --> 00:00:01.000\nhi\n",
        "could not be read",
    ),
    "srt_hours_of_thousands_of_digits": (
        ".srt",
        b"1\n" + b"1" * 5000 + b":00:00,000 --> 00:00:01,000\nhi\n",
        "could not be read",
    ),
    "tag_hours_of_thousands_of_digits": (
        ".vtt",
        b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\na<" + b"1" * 5000 + b":00:00.500><c> b</c>\n",
        "could not be read",
    ),
    "unclosed_word_tag": (
        ".vtt",
        b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhe comes<00:00:01.063<c> now</c>\n",
        "not closed",
    ),
    "word_tag_cut_short": (
        ".vtt",
        b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhe comes<00:00:0",
        "not closed",
    ),
    "tag_after_cue_end": (
        ".vtt",
        b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\na<00:00:03.000><c> b</c>\n",
        "after the cue end",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_raises_caption_error_naming_file(tmp_path: Path, case: str) -> None:
    suffix, data, problem = MALFORMED[case]
    path = tmp_path / f"bad_{case}{suffix}"
    path.write_bytes(data)
    with pytest.raises(CaptionError) as info:
        parse_captions(path)
    message = str(info.value)
    assert f"bad_{case}{suffix}" in message
    assert problem.lower() in message.lower()


@pytest.mark.parametrize(
    "line",
    [
        "he comes&lt;00:00:01.063&gt; now<00:00:01.500><c> here</c>",  # escaped: text
        "he comes<<00:00:01.063><c> now</c><00:00:01.500><c> here</c>",  # doubled bracket
        "he comes<00:00:01.063>><c> now</c><00:00:01.500><c> here</c>",
        "he comes> now<00:00:01.500><c> here</c> <",  # stray brackets
    ],
)
def test_angle_brackets_never_stay_in_word_text(line: str) -> None:
    caps = parse_vtt(f"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n{line}\n")
    texts = [w.text for w in caps.words]
    assert not any("<" in t or ">" in t for t in texts), texts
    assert texts[:2] == ["he", "comes"] and texts[-2:] == ["now", "here"]
    assert caps.words[-1].start_ms == 1500


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".vtt", "SECRET first line\n\n00:00.000 --> 00:01.000\nhi\n"),
        (".vtt", "WEBVTT\n\n00:00:00.000 --> SECRET\nhi\n"),
        (".vtt", "WEBVTT\n\n00:00:05.000 --> 00:00:01.000 SECRET\nhi\n"),
        (".vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\na<0 SECRET><c> b</c>\n"),
        (".vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhe<00:00:01.063SECRET<c> b</c>\n"),
        (".srt", "SECRET\nline\n"),
    ],
)
def test_errors_name_the_line_but_never_quote_the_file(tmp_path: Path, suffix, text) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(CaptionError) as info:
        parse_captions(path)
    assert "SECRET" not in str(info.value) and "line" in str(info.value)


def test_string_parsers_name_the_given_source() -> None:
    with pytest.raises(CaptionError, match=r"^clip42\.vtt: "):
        parse_vtt("not captions", "clip42.vtt")
    with pytest.raises(CaptionError, match=r"^clip42\.srt: "):
        parse_srt("1\n00:00:02,000 --> 00:00:01,000\nx\n", "clip42.srt")


def test_word_rejects_end_before_start() -> None:
    with pytest.raises(ValueError, match="ends before"):
        Word("x", 10, 9)


# --- CLI ----------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.captions", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_one_json_word_per_line() -> None:
    result = run_cli(str(FIXTURES / "youtube_auto.en.vtt"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 16
    assert rows[0] == {"text": "so", "start_ms": 1510, "end_ms": 1920}
    assert rows[-1] == {"text": "flour", "start_ms": 11200, "end_ms": 12000}


def test_cli_exits_2_with_message_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "broken_cli.vtt"
    bad.write_text("WEBVTT\n\n00:00:09.000 --> 00:00:01.000\nhi\n")
    result = run_cli(str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "broken_cli.vtt" in result.stderr and "ends before" in result.stderr


def test_cli_exits_2_without_traceback_for_a_timestamp_of_thousands_of_digits(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "huge.vtt"
    bad.write_text("WEBVTT\n\n" + "1" * 5000 + ":00:00.000 --> 00:00:01.000\nhi\n")
    result = run_cli(str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "huge.vtt" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_main_returns_2_for_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope.vtt")]) == 2
    assert "nope.vtt" in capsys.readouterr().err


# --- rolling captions without word tags (ASR converted to SRT or plain VTT) ----------


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
def test_rolling_asr_converted_by_ffmpeg_gives_each_word_once_inside_its_new_cue(
    tmp_path, suffix
) -> None:
    """yt-dlp's --convert-subs runs ffmpeg: the word tags go, the rolling repeats stay."""
    tagged = parse_captions(FIXTURES / "youtube_auto.en.vtt")
    converted = tmp_path / f"converted.en{suffix}"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(FIXTURES / "youtube_auto.en.vtt"),
         str(converted)],
        check=True,
    )  # fmt: skip
    text = converted.read_text()
    assert "<c>" not in text and text.count("so today we're going to make") == 3, "rolls"
    caps = parse_captions(converted)
    assert [w.text for w in caps.words] == [w.text for w in tagged.words], "once per word"
    assert [w.text for w in caps.non_speech] == ["[Music]", "[Applause]"]
    assert caps.kind == "manual"  # times spread over cues, not tagged
    assert all(a.end_ms <= b.start_ms for a, b in pairwise(caps.words))
    # each word lies inside the cue where it first appears (the new part of that cue)
    new_part = {"so": (1510, 4320), "make": (1510, 4320), "bread": (4330, 6950),
                "easy": (4330, 6950), "okay": (6960, 8000), "flour": (10510, 12000)}  # fmt: skip
    for w in caps.words:
        if w.text in new_part:
            lo, hi = new_part[w.text]
            assert lo <= w.start_ms <= w.end_ms <= hi, w


def test_manual_srt_whose_lines_repeat_once_is_not_taken_for_rolling() -> None:
    srt = (
        "1\n00:00:01,000 --> 00:00:02,000\nla la\n\n"
        "2\n00:00:02,000 --> 00:00:03,000\nla la\nand again\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nsomething else\n\n"
        "4\n00:00:04,000 --> 00:00:05,000\nthe end\n"
    )
    words = [w.text for w in parse_srt(srt).words]
    assert words == ["la", "la", "la", "la", "and", "again", "something", "else", "the", "end"]
