"""demo.build_shards run twice on the same folder: the second run renders nothing and
ingests nothing again (the corpus is served at another port each time; the ids in the
input list are the corpus's own, so the manifest recognises what is done)."""

from __future__ import annotations

import contextlib
import io

import pytest

import demo
from shards import layout, reader


def _windows(folder) -> list[str]:
    return sorted(s.key for shard in layout.expand(str(folder)) for s in reader.iter_samples(shard))


@pytest.mark.slow
def test_a_second_build_on_the_same_folder_adds_no_window(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        first = demo.build_shards(demo.Stages(), tmp_path, videos=3, heldout=1, duration_s=40.0)
    assert first is not None
    before = {split: _windows(first / split) for split in ("train", "heldout")}
    assert before["train"] and before["heldout"]
    mp4s = {p: p.stat().st_mtime_ns for p in (tmp_path / "corpus").rglob("*.mp4")}
    with contextlib.redirect_stdout(io.StringIO()):
        second = demo.build_shards(demo.Stages(), tmp_path, videos=3, heldout=1, duration_s=40.0)
    assert second == first
    after = {split: _windows(first / split) for split in ("train", "heldout")}
    assert after == before, "the second run ingested videos again"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "corpus").rglob("*.mp4")} == mp4s
