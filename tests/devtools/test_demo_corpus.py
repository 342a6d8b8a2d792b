"""The demo corpus: picture, speech and captions of each video agree, exactly and repeatably."""

from __future__ import annotations

import csv
import json
import random
import re
import signal
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import webvtt

from devtools import demo_assets, demo_corpus
from devtools.demo_assets import (
    COLOURS,
    SHAPES,
    VOCABULARY,
    Item,
    draw_item,
    spoken_ms,
    spoken_word,
    vocabulary_words,
)
from devtools.demo_corpus import CorpusIndex, generate_corpus, plan_video, write_inputs
from devtools.mediagen import render_auto_vtt
from ingest.captions import Word, parse_captions

SEED, SECONDS = 7, 15.0
ROOT = Path(__file__).resolve().parents[2]
SR = demo_assets.SAMPLE_RATE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> CorpusIndex:
    out = tmp_path_factory.mktemp("demo")
    return generate_corpus(out, n_videos=3, seed=SEED, duration_s=SECONDS, heldout=1)


def _ffprobe(path: Path) -> dict:
    cmd = ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    return json.loads(subprocess.run(cmd, capture_output=True, check=True, text=True).stdout)


def _decode_audio(path: Path) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16).astype(np.float64)


def _decode_frames(path: Path, w: int = 160, h: int = 90) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={w}:{h}"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).astype(np.int32)  # (N, H, W, 3)


def _top_level_boxes(path: Path) -> list[str]:
    data, pos, names = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        names.append(data[pos + 4 : pos + 8].decode("latin-1"))
        size = int.from_bytes(data[pos + 8 : pos + 16], "big") if size == 1 else size
        if size < 8:
            break
        pos += size
    return names


def _shown_colour(frame: np.ndarray) -> str | None:
    """The palette colour of the shape in a frame: the mean of the pixels unlike the corner."""
    background = frame[0, 0]
    mask = np.abs(frame - background).sum(axis=-1) > 60
    if mask.mean() < 0.05:
        return None
    mean = frame[mask].mean(axis=0)
    return min(COLOURS, key=lambda c: float(np.linalg.norm(mean - np.array(COLOURS[c]))))


def _ms(ts: str) -> int:
    h, m, s = ts.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)


def _vtt_words(text: str) -> list[tuple[str, int]]:
    """Words of a YouTube auto-caption VTT, each once, at its tag (or its cue start)."""
    words = []
    for block in text.split("\n\n")[1:]:
        timing, *lines = block.strip("\n").split("\n")
        start = _ms(timing.split(" --> ")[0])
        if not lines[-1].strip():
            continue  # a 10 ms transition cue: its text was counted already
        first, *rest = re.split(r"<(\d\d:\d\d:\d\d\.\d\d\d)>", lines[-1])
        words.append((first, start))
        for tag, chunk in zip(rest[::2], rest[1::2], strict=True):
            words.append((re.sub(r"</?c>", "", chunk).strip(), _ms(tag)))
    return words


def _info_words(video: demo_corpus.DemoVideo) -> list[tuple[str, int]]:
    return [(w.text, w.start_ms) for w in video.words]


# --- the pieces -------------------------------------------------------------------------


def test_vocabulary_is_24_distinct_colour_shape_items():
    assert len(VOCABULARY) == len(set(VOCABULARY)) == len(COLOURS) * len(SHAPES) == 24


def test_each_shape_is_drawn_differently_in_its_item_colour():
    masks = {}
    for shape in SHAPES:
        item = Item("blue", shape)
        picture = np.asarray(draw_item(item, random.Random(1)), dtype=np.int32)
        assert _shown_colour(picture) == "blue"
        masks[shape] = np.abs(picture - picture[0, 0]).sum(axis=-1) > 60
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.9, f"{a} and {b} look the same (IoU {iou:.2f})"


def test_two_pictures_of_one_item_are_not_pixel_identical():
    rng = random.Random(0)
    a, b = (np.asarray(draw_item(Item("red", "star"), rng)) for _ in range(2))
    assert not np.array_equal(a, b)


def test_synthesized_word_starts_and_ends_audible():
    samples = spoken_word("triangle", "en-us")
    assert 0.2 * SR < samples.size < 1.2 * SR
    edge = int(0.01 * SR)
    peak = np.abs(samples).max()
    assert np.abs(samples[:edge]).max() > 0.02 * peak
    assert np.abs(samples[-edge:]).max() > 0.02 * peak
    assert spoken_ms("triangle", "en-us") == -(-samples.size * 1000 // SR)


def test_render_auto_vtt_is_rolling_youtube_style_with_exact_word_tags():
    words = [Word(t, 1000 + 400 * k, 1300 + 400 * k) for k, t in enumerate("abcdef")]
    text = render_auto_vtt(words, max_chars=5)  # lines "a b c", "d e f"
    assert text.startswith("WEBVTT\nKind: captions\nLanguage: en\n\n")
    cues = [c.split("\n") for c in text.strip().split("\n\n")[1:]]
    assert [c[0] for c in cues] == [
        "00:00:01.000 --> 00:00:02.190 align:start position:0%",
        "00:00:02.190 --> 00:00:02.200 align:start position:0%",  # 10 ms transition
        "00:00:02.200 --> 00:00:03.300 align:start position:0%",
    ]
    assert cues[0][1:] == [" ", "a<00:00:01.400><c> b</c><00:00:01.800><c> c</c>"]
    assert cues[1][1:] == ["a b c", " "]
    assert cues[2][1:] == ["a b c", "d<00:00:02.600><c> e</c><00:00:03.000><c> f</c>"]
    assert _vtt_words(text) == [(w.text, w.start_ms) for w in words]
    assert len(webvtt.from_string(text).captions) == 3


# --- planning ---------------------------------------------------------------------------


def test_plan_puts_every_word_inside_its_item_on_frame_aligned_spans():
    video = plan_video(SEED, 0, "train", 30_000, fps=25)
    assert video.duration_ms == 30_000
    assert video.items[0].start_ms == 0 and video.items[-1].end_ms == video.duration_ms
    for prev, item in zip(video.items, video.items[1:], strict=False):
        assert prev.end_ms == item.start_ms and item.start_ms % 40 == 0
        assert prev.name != item.name
    for item in video.items:
        assert 2000 <= item.end_ms - item.start_ms <= (4500 if item != video.items[-1] else 9000)
        assert item.start_ms < item.words[0].start_ms and item.words[-1].end_ms < item.end_ms
        assert item.colour in item.phrase.split() and item.shape in item.phrase.split()
        for a, b in zip(item.words, item.words[1:], strict=False):
            assert a.start_ms < a.end_ms < b.start_ms


def test_plan_speaks_enough_words_for_reserves_filter():
    video = plan_video(SEED, 1, "train", 60_000)
    assert {w.text for w in video.words} <= set(vocabulary_words())
    starts = [w.start_ms for w in video.words]
    best = max(sum(1 for s in starts if a <= s < a + 30_000) for a in starts)
    assert best >= 50, f"only {best} words in the densest 30 s"


def test_same_seed_plans_the_same_video_and_other_seeds_or_indices_do_not():
    def names(seed, index):
        return [i.name for i in plan_video(seed, index, "train", 20_000).items]

    assert plan_video(SEED, 0, "train", 20_000) == plan_video(SEED, 0, "train", 20_000)
    assert names(SEED, 0) != names(SEED + 1, 0)
    assert names(SEED, 0) != names(SEED, 1)


def test_items_are_not_tied_to_positions():
    plans = [plan_video(SEED, i, "train", 15_000) for i in range(12)]
    firsts = {p.items[0].name for p in plans}
    seconds = {p.items[1].name for p in plans}
    assert len(firsts) >= 6 and len(seconds) >= 6
    assert len({i.name for p in plans for i in p.items}) >= 20


# --- the generated corpus ---------------------------------------------------------------


def test_corpus_files_exist_and_probe_as_640x360_h264_with_aac(corpus):
    assert [v.split for v in corpus.videos] == ["train", "train", "heldout"]
    for video in corpus.videos:
        mp4 = corpus.root / "videos" / f"{video.id}.mp4"
        boxes = _top_level_boxes(mp4)
        assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"
        probe = _ffprobe(mp4)
        streams = {s["codec_type"]: s for s in probe["streams"]}
        assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
        assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
        assert streams["video"]["r_frame_rate"] == "25/1"
        assert float(streams["video"]["duration"]) == pytest.approx(
            video.duration_ms / 1000, abs=0.041
        )
        assert float(probe["format"]["duration"]) == pytest.approx(
            video.duration_ms / 1000, abs=0.1
        )
        assert video.duration_ms == SECONDS * 1000
        info = json.loads((corpus.root / "videos" / f"{video.id}.info.json").read_text())
        assert demo_corpus.DemoVideo.from_info(info) == video
    assert CorpusIndex.load(corpus.root) == corpus


def test_vtt_is_youtube_style_and_its_word_times_match_info_json(corpus):
    for video in corpus.videos:
        text = (corpus.root / "videos" / f"{video.id}.en.vtt").read_text()
        assert text.startswith("WEBVTT\nKind: captions\nLanguage: en\n")
        assert "align:start position:0%" in text and "<c> " in text
        cues = [block.split("\n") for block in text.strip().split("\n\n")[1:]]
        transitions = [k for k, cue in enumerate(cues) if cue[2] == " "]
        assert len(transitions) >= 3, "no rolling layout"
        for k in transitions:
            timing = cues[k][0].split()  # start --> end align:start position:0%
            assert _ms(timing[2]) - _ms(timing[0]) == 10, cues[k]
            assert cues[k + 1][1] == cues[k][1], "the finished line must stay on top"
        assert _vtt_words(text) == _info_words(video)


def test_pipeline_caption_parser_reads_the_same_words(corpus):
    video = corpus.videos[0]
    parsed = parse_captions(corpus.root / "videos" / f"{video.id}.en.vtt")
    assert parsed.kind == "auto"
    assert [(w.text, w.start_ms) for w in parsed.words] == _info_words(video)


def test_audio_is_loud_while_words_are_spoken_and_silent_between_items(corpus):
    def rms(x, a_ms, b_ms):
        return float(np.sqrt(np.mean(x[a_ms * SR // 1000 : b_ms * SR // 1000] ** 2)))

    for video in corpus.videos:
        x = _decode_audio(corpus.root / "videos" / f"{video.id}.mp4")
        for w in video.words:
            assert rms(x, w.start_ms, w.end_ms) > 1000, w
            assert rms(x, w.start_ms, w.start_ms + 30) > 200, f"no onset at {w}"
            assert rms(x, w.start_ms - 25, w.start_ms - 3) < 100, f"sound before {w}"
            assert rms(x, w.end_ms + 3, w.end_ms + 25) < 100, f"sound after {w}"
        for a, b in zip(video.items, video.items[1:], strict=False):
            assert rms(x, a.words[-1].end_ms + 30, b.words[0].start_ms - 30) < 30


def test_frames_show_each_items_colour_exactly_over_its_span(corpus):
    for video in corpus.videos:
        frames = _decode_frames(corpus.root / "videos" / f"{video.id}.mp4")
        assert len(frames) == video.duration_ms // 40
        for item in video.items:
            first, last = item.start_ms // 40, item.end_ms // 40 - 1
            for k in (first, (item.start_ms + item.end_ms) // 80, last):
                assert _shown_colour(frames[k]) == item.colour, (video.id, item, k)
            assert np.abs(frames[first] - frames[first - 1]).mean() > 3 if first else True


def test_page_has_title_video_and_english_subtitle_track(corpus):
    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text, self._open = {}, {}, None

        def handle_starttag(self, tag, attrs):
            self.tags[tag], self._open = dict(attrs), tag

        def handle_data(self, data):
            self.text[self._open] = self.text.get(self._open, "") + data

        def handle_endtag(self, tag):
            self._open = None

    video = corpus.videos[0]
    page = Tags()
    page.feed((corpus.root / "videos" / f"{video.id}.html").read_text())
    assert page.text["title"] == video.title
    assert page.tags["video"]["src"] == f"{video.id}.mp4"
    track = page.tags["track"]
    assert (track["kind"], track["srclang"]) == ("subtitles", "en")
    assert track["src"] == f"{video.id}.en.vtt"


def test_same_seed_regenerates_identical_files_and_reruns_render_nothing(
    corpus, tmp_path, monkeypatch
):
    again = generate_corpus(tmp_path, n_videos=1, seed=SEED, duration_s=SECONDS, workers=1)
    vid = again.videos[0].id
    assert vid == corpus.videos[0].id
    for ext in (".mp4", ".en.vtt", ".info.json", ".html"):
        new, old = tmp_path / "videos" / f"{vid}{ext}", corpus.root / "videos" / f"{vid}{ext}"
        assert new.read_bytes() == old.read_bytes(), ext
    monkeypatch.setattr(demo_assets, "FFMPEG", "false")  # any render now fails
    assert generate_corpus(tmp_path, n_videos=1, seed=SEED, duration_s=SECONDS) == again


def test_failed_render_leaves_no_file_of_the_video(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_assets, "FFMPEG", "false")
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        generate_corpus(tmp_path, n_videos=1, seed=SEED, duration_s=5.0)
    assert list((tmp_path / "videos").iterdir()) == []
    assert not (tmp_path / "corpus.json").exists()


def test_inputs_list_each_split_by_page_url_and_by_csv(corpus):
    rows = list(csv.DictReader((corpus.root / "inputs.csv").open()))
    assert [r["id"] for r in rows] == [v.id for v in corpus.videos]
    assert all(
        (corpus.root / r["url"]).is_file() and (corpus.root / r["captions"]).is_file() for r in rows
    )
    base = "http://127.0.0.1:9/"
    train = write_inputs(corpus.root, base, "train").read_text().split()
    assert train == [f"http://127.0.0.1:9/videos/{v.id}.html" for v in corpus.videos[:2]]
    held = list(csv.DictReader(write_inputs(corpus.root, base, "heldout", fmt="csv").open()))
    vid = corpus.videos[2].id
    assert held == [
        {"url": f"{base}videos/{vid}.mp4", "id": vid, "captions": f"{base}videos/{vid}.en.vtt"}
    ]
    pages = write_inputs(corpus.root, base, "heldout", fmt="pages")
    assert pages.name == "heldout.pages.csv"
    assert list(csv.DictReader(pages.open())) == [{"url": f"{base}videos/{vid}.html", "id": vid}]


def test_served_page_is_read_by_ytdlp_with_its_subtitles(corpus):
    yt_dlp = pytest.importorskip("yt_dlp")
    from devtools.localserve import LocalServer

    video = corpus.videos[0]
    with (
        LocalServer(corpus.root) as server,
        yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True}) as ydl,
    ):
        info = ydl.extract_info(server.url(f"videos/{video.id}.html"), download=False)
        assert info["url"] == server.url(f"videos/{video.id}.mp4")
        assert info["subtitles"]["en"][0]["url"] == server.url(f"videos/{video.id}.en.vtt")
        assert info["title"].startswith(video.title)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_generates_then_serves_until_interrupted(tmp_path, stop):
    cmd = [sys.executable, "-m", "devtools.demo_corpus", str(tmp_path), "--videos", "2"]
    cmd += ["--heldout", "1", "--duration-s", "5", "--seed", "3", "--serve"]
    log = (tmp_path / "cli.log").open("w")
    # As from a terminal. A shell that runs this suite in the background (`cmd &`) has
    # SIGINT ignored; a child would inherit that, and Python then never turns SIGINT into
    # KeyboardInterrupt. A handled signal is reset to its default in the child instead.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line, "the CLI exited before serving"
        base = line.split(" at ")[1].strip()
        url = (tmp_path / "heldout.txt").read_text().strip()
        assert url == f"{base}/videos/shapes-s3-0001.html"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b'<track kind="subtitles"' in page.read()
        proc.send_signal(stop)
        assert proc.wait(timeout=10) == 0, (tmp_path / "cli.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
