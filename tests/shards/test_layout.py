"""shards.layout: the names and folders of an output, and what a shard spec expands to."""

from __future__ import annotations

import fsspec
import pytest

from devtools.samples import make_sample
from shards import layout, manifest
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter


def write_group(out, prefix: str, videos: list[str]) -> list[str]:
    with ShardWriter(str(out), prefix, ShardLimits(max_samples=1)) as w:
        for v in videos:
            w.add_video([make_sample(v, 0, segments=1)], ManifestRow(v, "u", "ok"))
    return w.written


def test_names_follow_the_documented_layout():
    assert layout.shard_file("shard-ab", 7) == "shard-ab-007.tar"
    assert layout.index_file("shard-ab-007.tar") == "_index/shard-ab-007.parquet"
    name = layout.rows_file("20260101T000000-aaaaaa", ["a", "b"])
    assert name.startswith("_index/rows-20260101T000000-aaaaaa-") and name.endswith(".parquet")
    assert name == layout.rows_file("20260101T000000-aaaaaa", ["a", "b"])
    assert name != layout.rows_file("20260101T000000-aaaaaa", ["a", "c"])


def test_a_group_prefix_depends_on_its_videos_not_their_order():
    assert layout.group_prefix(["b", "a"]) == layout.group_prefix(["a", "b"])
    assert layout.group_prefix(["a", "b"]) != layout.group_prefix(["a", "c"])
    assert layout.group_prefix(["a"]).startswith("shard-")


def test_writer_and_manifest_put_files_where_layout_says(tmp_path):
    written = write_group(tmp_path, "p", ["a", "b"])
    assert written == [layout.shard_file("p", 0), layout.shard_file("p", 1)]
    fs, root = layout.open_output(str(tmp_path))
    assert layout.shard_names(fs, root) == set(written)
    assert [p.rsplit("/", 1)[1] for p in layout.index_paths(fs, root)] == [
        layout.index_file(n).rsplit("/", 1)[1] for n in written
    ]
    manifest.write_rows(str(tmp_path), "run1", [ManifestRow("c", "u", "failed")])
    assert fs.exists(layout.join(root, layout.rows_file("run1", ["c"])))
    manifest.consolidate(str(tmp_path), "run1")
    assert fs.exists(layout.manifest_path(root)) and not fs.exists(layout.join(root, "_tmp"))
    assert layout.has_manifest(fs, root)


def test_remove_group_removes_its_shards_and_index_only(tmp_path):
    mine = write_group(tmp_path, "shard-aaa", ["a", "b"])
    theirs = write_group(tmp_path, "shard-bbb", ["c"])
    removed = layout.remove_group(str(tmp_path), "shard-aaa")
    assert [p.rsplit("/", 1)[1] for p in removed] == mine
    fs, root = layout.open_output(str(tmp_path))
    assert layout.shard_names(fs, root) == set(theirs)
    assert set(manifest.load_state(str(tmp_path))) == {"c"}


def test_expand_takes_a_folder_a_brace_pattern_a_glob_and_a_url(tmp_path):
    names = write_group(tmp_path, "s", ["a", "b", "c"])
    (tmp_path / "_tmp").mkdir(exist_ok=True)
    (tmp_path / "_tmp" / "partial.tar").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a shard")
    paths = [str(tmp_path / n) for n in names]
    assert layout.expand(str(tmp_path)) == paths
    assert layout.expand(str(tmp_path) + "/") == paths
    assert layout.expand(str(tmp_path / "s-{000..001}.tar")) == paths[:2]
    assert layout.expand(str(tmp_path / "s-00[12].tar")) == paths[1:]
    assert layout.expand(str(tmp_path / "s-000.tar")) == paths[:1]
    with fsspec.open("memory://layout-test/x-000.tar", "wb") as f:
        f.write(b"")
    try:
        assert layout.expand("memory://layout-test/") == ["memory:///layout-test/x-000.tar"]
    finally:
        fsspec.filesystem("memory").rm("/layout-test", recursive=True)


@pytest.mark.parametrize("max_bytes,max_samples", [(2047, 1), (4096, 0)])
def test_limits_below_the_one_minimum_are_refused(max_bytes, max_samples):
    with pytest.raises(ValueError, match="must be >="):
        ShardLimits(max_bytes=max_bytes, max_samples=max_samples)
    assert ShardLimits(max_bytes=2048, max_samples=1).max_bytes == 2048


def test_find_shards_returns_what_expand_finds_when_every_shard_exists(tmp_path):
    with ShardWriter(str(tmp_path), "t", ShardLimits(max_samples=1)) as writer:
        for v in range(3):
            writer.add_video(
                [make_sample(f"v{v}", 0)], ManifestRow(video_id=f"v{v}", url="u", status="ok")
            )
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert len(names) == 3
    assert layout.find_shards(str(tmp_path)) == layout.expand(str(tmp_path))
    assert len(layout.find_shards(str(tmp_path / "*.tar"))) == 3
    braces = str(tmp_path / ("{" + ",".join(names) + "}"))
    assert [u.rsplit("/", 1)[1] for u in layout.find_shards(braces)] == names


@pytest.mark.parametrize(
    "spec,message",
    [
        ("missing/", "missing: no such file or folder"),
        ("empty", "empty: folder holds no shards (*.tar)"),
        ("empty/*.tar", "empty/*.tar: no shard matches this pattern"),
        ("empty/shard-{000..002}.tar", "empty/shard-000.tar: no such shard (and 2 more of 3)"),
        ("empty/one.tar", "empty/one.tar: no such file or folder"),
    ],
)
def test_find_shards_refuses_a_spec_that_names_nothing_in_one_line(tmp_path, spec, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a shard")
    with pytest.raises(layout.NoShards) as err:
        layout.find_shards(str(tmp_path / spec), "data.train_shards")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("data.train_shards: ") and text.endswith(message), text


def test_find_shards_checks_remote_shards_too():
    fs = fsspec.filesystem("memory")
    fs.pipe("/found/shard-a.tar", b"x" * 1024)
    (found,) = layout.find_shards("memory://found/")
    assert found.startswith("memory://") and found.endswith("/found/shard-a.tar")
    with pytest.raises(layout.NoShards, match=r"memory://.*found/shard-b\.tar: no such file"):
        layout.find_shards("memory://found/shard-b.tar")
    with pytest.raises(layout.NoShards, match="folder holds no shards"):
        fs.mkdir("/nothing")
        layout.find_shards("memory://nothing/")


def test_clear_tmp_removes_what_killed_writers_left_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    write_group(out, "shard-k", ["a"])
    tmp = out / layout.TMP_DIR
    tmp.mkdir(exist_ok=True)
    (tmp / "shard-k-001.tar.3fa9").write_bytes(b"half a shard")
    (tmp / "rows-r-1.parquet.77").write_bytes(b"half an index")
    (tmp / "odd").mkdir()
    removed = layout.clear_tmp(str(out))
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == [
        "odd", "rows-r-1.parquet.77", "shard-k-001.tar.3fa9"
    ]  # fmt: skip
    assert list(tmp.iterdir()) == []
    assert layout.shard_names(*layout.open_output(str(out))) == {"shard-k-000.tar"}
    assert manifest.load_state(str(out))["a"].status == "ok"
    assert layout.clear_tmp(str(tmp_path / "new")) == []
