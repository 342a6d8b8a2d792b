"""encode_video on a generated video equals embedding the shards ingest writes for it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from devtools import mediagen
from ingest import config as ingest_config
from ingest.core import VideoSource, process_video
from model.cli.main import main
from model.inference import Encoder, encode_video, load_checkpoint
from shards.manifest import ManifestRow
from shards.writer import ShardWriter

SECONDS = 42.0  # 8 full segments: one window of 8


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    path = mediagen.make_video(root / "talk.mp4", SECONDS, audio="speech", width=480, height=270)
    vtt = mediagen.write_auto_vtt(root / "talk.vtt", mediagen.make_words(SECONDS, seed=5))
    return path, vtt


def test_encode_video_equals_embedding_its_ingested_shards(trained_run, video, tmp_path):
    path, vtt = video
    # what `python -m ingest run` does per video: the core with the shipped settings, the writer
    settings = ingest_config.load().ingest
    result = process_video(path, vtt, settings.core, VideoSource("talk", "file://talk"))
    with ShardWriter(str(tmp_path / "shards"), "talk") as writer:
        writer.add_video(
            result.samples, ManifestRow(video_id="talk", url="file://talk", status="ok")
        )
    args = ["embed", str(tmp_path / "shards"), "--out", str(tmp_path / "idx")]
    assert main([*args, "--checkpoint", str(trained_run.checkpoint)]) == 0
    rows = [r for p in (tmp_path / "idx").glob("*.parquet") for r in pq.read_table(p).to_pylist()]

    got = encode_video(Encoder(load_checkpoint(str(trained_run.checkpoint))), str(path), str(vtt))
    assert [m.start_ms for m in got.metas] == [s.meta.start_ms for s in result.samples]
    assert got.metas[0].words == result.samples[0].meta.words
    names = ["text-video/text", "text-video/video", "audio-video/audio", "audio-video/video"]
    for r in rows:
        w = next(i for i, m in enumerate(got.metas) if m.window == r["window"])
        for name in names:
            mine = (
                got.vectors.windows[name][w]
                if r["level"] == "window"
                else got.vectors.segments[name][w, r["segment"]]
            )
            if r[name] is None:
                continue
            assert np.allclose(np.asarray(r[name]), mine.numpy(), atol=1e-5), (
                r["level"],
                r["segment"],
                name,
            )
    assert len(rows) == len(result.samples) * (1 + 4), "windows of 4 segments (the model's max)"


def test_a_video_without_captions_still_gives_video_and_audio_vectors(trained_run, video):
    path, _ = video
    got = encode_video(Encoder(load_checkpoint(str(trained_run.checkpoint))), str(path))
    assert got.metas and not got.metas[0].words
    assert got.vectors.present["text-video/video"].all()
    assert got.vectors.present["audio-video/audio"].all()
    assert not got.vectors.present["text-video/text"].any()


def test_a_file_that_is_not_a_video_is_one_line(trained_run, tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"x\.mp4") as err:
        encode_video(Encoder(load_checkpoint(str(trained_run.checkpoint))), str(bad))
    assert "\n" not in str(err.value)
