"""The test media generator itself: barcode, words, caption layouts, truncation."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import webvtt
from PIL import Image

from devtools.mediagen import (
    make_video,
    make_words,
    read_frame_index,
    render_auto_vtt,
    truncate,
    write_auto_vtt,
    write_manual_vtt,
    write_srt,
)
from ingest.captions import Word, parse_captions

TAG = re.compile(r"<(\d\d):(\d\d):(\d\d)\.(\d\d\d)><c> ([^<]+)</c>")


def _ms(caption: webvtt.Caption, attr: str) -> int:
    return getattr(caption, attr + "_time").in_milliseconds()


def test_barcode_reads_back_from_ffmpeg_decoded_frames(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", 2.0, fps=30, audio=None)
    wanted = (0, 1, 37, 59)
    select = "+".join(f"eq(n\\,{n})" for n in wanted)
    cmd = ["ffmpeg", "-v", "error", "-i", str(video), "-vf", f"select={select}"]
    subprocess.run([*cmd, "-fps_mode", "passthrough", str(tmp_path / "f%d.png")], check=True)
    for i, n in enumerate(wanted, start=1):
        png = tmp_path / f"f{i}.png"
        assert read_frame_index(png.read_bytes()) == n
        assert read_frame_index(np.asarray(Image.open(png))) == n


def test_barcode_reader_rejects_a_frame_without_barcode() -> None:
    with pytest.raises(ValueError, match="no barcode"):
        read_frame_index(np.full((288, 512, 3), 200, dtype=np.uint8))


def test_make_words_is_deterministic_sorted_and_at_the_rate() -> None:
    words = make_words(60.0, words_per_s=2.5, seed=3)
    assert words == make_words(60.0, words_per_s=2.5, seed=3)
    assert words != make_words(60.0, words_per_s=2.5, seed=4)
    assert 120 <= len(words) <= 155
    for a, b in itertools.pairwise(words):
        assert 0 <= a.start_ms < a.end_ms <= b.start_ms
    assert words[-1].end_ms <= 60_000
    assert all(w.text.isalpha() for w in words)


def test_auto_vtt_has_youtube_asr_layout(tmp_path: Path) -> None:
    words = make_words(30.0, seed=1)
    path = write_auto_vtt(tmp_path / "a.en.vtt", words)
    assert path.read_text().startswith("WEBVTT\nKind: captions\nLanguage: en\n\n")
    captions = webvtt.read(str(path))
    mains, transitions = captions[0::2], captions[1::2]
    assert all(_ms(c, "end") - _ms(c, "start") == 10 for c in transitions)
    assert all(_ms(c, "end") - _ms(c, "start") > 10 for c in mains)
    assert mains[0].raw_text.split("\n")[0] == " "
    for prev, cue in itertools.pairwise(mains):  # rolling: the old line on top
        assert cue.raw_text.split("\n")[0] == TAG.sub(r" \5", prev.raw_text.split("\n")[1])
    # each word once, its time in its tag (the first of a line at the cue start)
    got = []
    for cue in mains:
        line = cue.raw_text.split("\n")[1]
        got.append((line.split("<")[0], _ms(cue, "start")))
        for h, m, s, ms, text in TAG.findall(line):
            got.append((text, ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)))
    assert got == [(w.text, w.start_ms) for w in words]


def test_manual_vtt_and_srt_group_words_into_cues(tmp_path: Path) -> None:
    words = make_words(20.0, seed=2)
    vtt = webvtt.read(str(write_manual_vtt(tmp_path / "m.vtt", words, words_per_cue=5)))
    srt = webvtt.from_srt(str(write_srt(tmp_path / "m.srt", words, words_per_cue=5)))
    for captions in (vtt, srt):
        assert len(captions) == -(-len(words) // 5)
        assert captions[0].text == " ".join(w.text for w in words[:5])
        assert _ms(captions[0], "start") == words[0].start_ms
        assert _ms(captions[0], "end") == words[4].end_ms
    assert (tmp_path / "m.srt").read_text().startswith("1\n00:00:")


def test_truncate_keeps_the_first_fraction_of_the_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 40)
    dst = truncate(src, tmp_path / "dst.bin", 0.25)
    assert dst.read_bytes() == src.read_bytes()[:2560]


def test_auto_vtt_parses_back_to_the_same_words_with_the_production_parser(tmp_path: Path) -> None:
    words = make_words(40.0, seed=5)
    parsed = parse_captions(write_auto_vtt(tmp_path / "a.en.vtt", words))
    assert parsed.kind == "auto"
    assert [(w.text, w.start_ms) for w in parsed.words] == [(w.text, w.start_ms) for w in words]


def test_auto_vtt_starts_a_new_line_after_a_long_pause() -> None:
    words = [Word("one", 0, 300), Word("two", 400, 700), Word("three", 2500, 2900)]
    cues = render_auto_vtt(words).split("\n\n")[1:]
    assert [c.split("\n")[2] for c in cues] == ["one<00:00:00.400><c> two</c>", " ", "three"]
    assert render_auto_vtt(words, pause_ms=5000).count("-->") == 1  # all on one line
