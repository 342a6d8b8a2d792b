"""Clip mode: a CSV of (video, start, end, sentence) -> one window per clip, on real media."""

from __future__ import annotations

import pytest

from devtools import mediagen
from ingest import clips
from ingest.config import CoreConfig
from shards.layout import find_shards
from shards.reader import iter_samples


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    mediagen.make_video(root / "a.mp4", 12.0, audio="speech", width=320, height=180)
    mediagen.make_video(root / "mute.mp4", 8.0, audio=None, width=320, height=180)
    return root


def write_csv(path, rows) -> str:
    path.write_text(
        "video,start,end,sentence,id\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    return str(path)


def test_each_clip_becomes_one_window_with_its_sentence_spread_over_it(videos, tmp_path, capsys):
    csv = write_csv(tmp_path / "c.csv", [
        (videos / "a.mp4", 0, 4.5, "a man slices an onion", "one"),
        (videos / "a.mp4", 3, 12, "a woman pours milk into a bowl", "two"),
        (videos / "mute.mp4", 1.5, 7, "the dog runs", ""),
    ])  # fmt: skip
    out = tmp_path / "out"
    assert clips.main([csv, "--output", str(out)]) == 0
    assert "3 of 3 clips ingested" in capsys.readouterr().out
    samples = {s.meta.video_id: s for url in find_shards(str(out)) for s in iter_samples(url)}
    assert sorted(samples) == ["clip000003", "one", "two"]
    one, two, mute = samples["one"], samples["two"], samples["clip000003"]
    assert one.meta.segments == [(0, 5000)] and one.meta.window == 0
    assert two.meta.segments == [(3000, 8000), (8000, 13000)], "5 s segments from the clip's start"
    assert " ".join(w.text for w in two.meta.words) == "a woman pours milk into a bowl"
    assert two.meta.words[0].start_ms == 3000 and two.meta.words[-1].end_ms <= 12000
    assert {w.segment for w in two.meta.words} == {0, 1}, "words follow the clip's time"
    assert one.meta.has_audio and one.mel.shape[0] == 1 and len(two.frames) == 2
    assert not mute.meta.has_audio and mute.meta.caption_kind == "manual"


def test_a_long_clip_is_cut_at_window_segments():
    cfg = CoreConfig()
    segs = clips.clip_segments(10_000, 10_000 + 200_000, cfg)
    assert len(segs) == cfg.segments.window_segments and segs[0].start_ms == 10_000


@pytest.mark.parametrize(
    "body,want",
    [
        ("video,start,sentence\nv,0,x\n", "header lacks ['end']"),
        ("video,start,end,sentence\nv,zero,1,x\n", "c.csv:2: start 'zero' is not a number"),
        ("video,start,end,sentence\nv,3,1,x\n", "c.csv:2: end 1000 ms is not after start"),
        ("video,start,end,sentence\nv,0,1,\n", "c.csv:2: video and sentence must not be empty"),
        (
            "video,start,end,sentence,id\nv,0,1,x,a\nv,1,2,y,a\n",
            "c.csv:3: clip id 'a' appears twice",
        ),
        ("video,start,end,sentence\n", "lists no clips"),
    ],
)
def test_a_bad_clip_list_is_one_line_naming_its_row(tmp_path, capsys, body, want):
    path = tmp_path / "c.csv"
    path.write_text(body)
    assert clips.main([str(path), "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert want in err and len(err.strip().splitlines()) == 1


def test_a_clip_that_fails_is_reported_and_the_others_are_kept(videos, tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 500)
    csv = write_csv(tmp_path / "c.csv", [
        (tmp_path / "bad.mp4", 0, 2, "broken", "bad"),
        (videos / "a.mp4", 30, 35, "after the end", "late"),
        (videos / "a.mp4", 0, 2, "fine", "ok"),
    ])  # fmt: skip
    out = tmp_path / "out"
    assert clips.main([csv, "--output", str(out)]) == 1
    said = capsys.readouterr()
    assert "1 of 3 clips ingested" in said.out
    assert "bad: probe/corrupt_media" in said.err and "late: filter/too_short" in said.err
    assert [s.meta.video_id for url in find_shards(str(out)) for s in iter_samples(url)] == ["ok"]
