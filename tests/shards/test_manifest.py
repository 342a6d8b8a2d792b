import pytest

from devtools.samples import make_sample
from shards import layout, manifest
from shards.manifest import ManifestRow
from shards.writer import ShardWriter


def failed(vid: str, run: str, reason: str = "network") -> ManifestRow:
    return ManifestRow(
        video_id=vid, url="u", status="failed", stage="download", reason=reason, run=run
    )


def test_rows_round_trip_through_parquet(tmp_path):
    rows = [
        ManifestRow(
            video_id="a", url="u", status="ok", shards=["s-000.tar"], windows=3, has_audio=True
        ),
        failed("b", "r1"),
    ]
    fs, root = layout.open_output(str(tmp_path))
    manifest.write_rows_atomic(fs, root, "m.parquet", rows)
    assert manifest.read_rows(fs, str(tmp_path / "m.parquet")) == rows
    assert not list((tmp_path / "_tmp").iterdir())


def test_status_is_validated():
    with pytest.raises(ValueError, match="status"):
        ManifestRow(video_id="a", url="u", status="done")


def test_later_runs_override_earlier_failures_but_never_an_ok(tmp_path):
    fs, root = layout.open_output(str(tmp_path))
    manifest.write_rows_atomic(
        fs,
        root,
        "_index/rows-20260101T000000-aaaaaa-0.parquet",
        [failed("a", "r1"), failed("b", "r1")],
    )
    manifest.write_rows_atomic(
        fs,
        root,
        "_index/rows-20260102T000000-bbbbbb-0.parquet",
        [failed("a", "r2", reason="rate_limited")],
    )
    with ShardWriter(str(tmp_path), "s") as w:
        w.add_video([make_sample("b")], ManifestRow(video_id="b", url="u", status="ok"))
    manifest.write_rows_atomic(
        fs, root, "_index/rows-20260103T000000-cccccc-0.parquet", [failed("b", "r3")]
    )
    state = manifest.load_state(str(tmp_path))
    assert state["a"].reason == "rate_limited"
    assert state["b"].status == "ok"
    rows = manifest.consolidate(str(tmp_path), run="r4")
    assert [r.video_id for r in rows] == ["a", "b"]
    assert manifest.read_rows(fs, str(tmp_path / "manifest.parquet")) == rows


def test_run_ids_sort_by_time():
    a = manifest.new_run_id()
    assert len(a.split("-")) == 2 and a[:8].isdigit()
