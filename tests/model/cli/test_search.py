"""`python -m model search`: the best moments of an index, with links, words and scores."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from model.cli.main import main
from model.cli.search import moment_link
from model.inference import Encoder, index, load_checkpoint


@pytest.fixture(scope="module")
def made(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    args = [
        "embed",
        str(trained_run.val),
        "--out",
        str(out),
        "--checkpoint",
        str(trained_run.checkpoint),
    ]
    assert main(args) == 0
    return out


def search(run, made, capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["search", str(made), *args, "--checkpoint", str(run.checkpoint)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_search_ranks_segments_by_cosine_to_the_query(trained_run, made, capsys):
    queries = ["w1_0 w1_1", "Title val002"]
    code, out, _ = search(trained_run, made, capsys, *queries, "-k", "4", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [r["query"] for r in doc["results"]] == queries and not doc["approximate"]
    # the same ranking by brute force over the index's vectors
    idx = index.load_index(str(made), "segment")
    enc = Encoder(load_checkpoint(str(trained_run.checkpoint)))
    q = index.normalized(enc.encode_text(queries)["text-video/text"].numpy())
    scores = q @ index.normalized(idx.vectors["text-video/video"]).T
    for r, s in zip(doc["results"], scores, strict=True):
        got = [m["score"] for m in r["moments"]]
        assert got == sorted(got, reverse=True) and len(got) == 4
        assert np.allclose(got, np.sort(s)[::-1][:4], atol=1e-5)
        for m in r["moments"]:
            row = idx.meta["key"].index(m["key"]) + m["segment"]
            assert idx.meta["segment"][row] == m["segment"]
            assert m["link"].endswith(f"#t={m['start_ms'] // 1000}")
            assert m["text"] in m["context"]


def test_approximate_search_on_a_small_index_finds_what_exact_finds(trained_run, made, capsys):
    _, exact, _ = search(trained_run, made, capsys, "w2_1", "-k", "3", "--json")
    _, approx, _ = search(trained_run, made, capsys, "w2_1", "-k", "3", "--json", "--approximate")
    a, b = json.loads(exact)["results"][0]["moments"], json.loads(approx)["results"][0]["moments"]
    assert json.loads(approx)["approximate"]
    assert [m["score"] for m in a] == pytest.approx([m["score"] for m in b], abs=1e-5)


def test_window_level_and_text_output(trained_run, made, capsys):
    code, out, _ = search(trained_run, made, capsys, "w0_0", "--level", "window", "-k", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "w0_0" and lines[1].lstrip().startswith("1. ")
    assert len([ln for ln in lines if ln.lstrip()[:2] in ("1.", "2.")]) == 2


def test_a_picture_query_and_a_contact_sheet(trained_run, made, capsys, tmp_path):
    from PIL import Image

    pic = tmp_path / "pic.png"
    Image.new("RGB", (60, 40), (200, 30, 30)).save(pic)
    png = tmp_path / "sheet.png"
    code, out, err = search(trained_run, made, capsys, "w1_2", "--image", str(pic), "-k", "3",
                            "--json", "--png", str(png))  # fmt: skip
    assert code == 0, err
    results = json.loads(out)["results"]
    assert [r["query"] for r in results] == ["w1_2", f"image {pic}"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_video_query_finds_its_own_segments_first(trained_run, capsys, tmp_path):
    from devtools import mediagen

    video = mediagen.make_video(tmp_path / "q.mp4", 22.0, audio="speech", width=320, height=180)
    enc = Encoder(load_checkpoint(str(trained_run.checkpoint)))
    own = enc.encode_video(str(video)).vectors
    assert own.segment_present["text-video/video"].sum() == 4
    code, out, err = search(
        trained_run, trained_run.val.parent / "nothing", capsys, "--video", str(video)
    )
    assert code == 1 and "no such index folder" in err
    idx_dir = tmp_path / "idx"  # an index of the query video's own shards, beside the val set
    from ingest import config as ingest_config
    from ingest.core import VideoSource, process_video
    from shards.manifest import ManifestRow
    from shards.writer import ShardWriter

    settings = ingest_config.load().ingest.core
    core = dataclasses.replace(settings, filters=ingest_config.FilterConfig(require_captions=False,
                               min_words_per_window=None))  # fmt: skip
    samples = process_video(video, None, core, VideoSource("query", "file://q")).samples
    with ShardWriter(str(tmp_path / "shards"), "q") as w:
        w.add_video(samples, ManifestRow(video_id="query", url="file://q", status="ok"))
    for shards in (trained_run.val, tmp_path / "shards"):
        assert (
            main(
                [
                    "embed",
                    str(shards),
                    "--out",
                    str(idx_dir),
                    "--checkpoint",
                    str(trained_run.checkpoint),
                ]
            )
            == 0
        )
    code, out, err = search(
        trained_run, idx_dir, capsys, "--video", str(video), "-k", "4", "--json"
    )
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert result["query"] == f"video {video}"
    assert [m["video_id"] for m in result["moments"]] == ["query"] * 4, "its own 4 segments first"


@pytest.mark.parametrize(
    "args,want",
    [
        ([], "nothing to look for"),
        (["x", "-k", "0"], "-k must be"),
        (["x", "--image", "/no/such.png"], "--image /no/such.png"),
    ],
)
def test_bad_queries_are_one_line_and_exit_1(trained_run, made, capsys, args, want):
    code, _, err = search(trained_run, made, capsys, *args)
    assert code == 1 and want in err and len(err.strip().splitlines()) == 1


def test_an_empty_folder_is_not_an_index(trained_run, tmp_path, capsys):
    code, _, err = search(trained_run, tmp_path, capsys, "x")
    assert code == 1 and "no index files" in err


def test_moment_links_open_the_video_at_the_moment():
    yt = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert (
        moment_link(yt, "dQw4w9WgXcQ", 83_900)
        == "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=83s"
    )
    assert moment_link("", "dQw4w9WgXcQ", 5000).endswith("v=dQw4w9WgXcQ&t=5s")
    assert moment_link("http://h/v.mp4", "v", 12_000) == "http://h/v.mp4#t=12"
