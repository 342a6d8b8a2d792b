import tarfile

import pytest

from devtools.samples import make_sample
from shards import manifest, reader, schema
from shards.writer import ShardLimits, ShardWriter, member_size


def row(vid: str) -> manifest.ManifestRow:
    return manifest.ManifestRow(video_id=vid, url=f"http://x/{vid}", status="ok", windows=2)


def video(vid: str, windows: int = 2):
    return [make_sample(vid, window=w, segments=3) for w in range(windows)]


def test_shards_are_whole_tars_and_round_trip(tmp_path):
    with ShardWriter(str(tmp_path), "shard-t") as w:
        for v in ["a", "b", "c"]:
            w.add_video(video(v), row(v))
    tars = sorted(tmp_path.glob("*.tar"))
    assert [t.name for t in tars] == ["shard-t-000.tar"]
    keys = [s.key for s in reader.iter_samples(str(tars[0]))]
    assert keys == ["a_w0000", "a_w0001", "b_w0000", "b_w0001", "c_w0000", "c_w0001"]
    # the accounting matches the file: members + the end-of-archive blocks
    size = tars[0].stat().st_size
    assert size >= sum(r.bytes for r in w.rows) + 1024
    with tarfile.open(tars[0]) as t:
        assert all(m.mtime == 0 for m in t.getmembers())


def test_rolls_over_by_samples_and_bytes_without_splitting_a_video(tmp_path):
    with ShardWriter(str(tmp_path / "n"), "s", ShardLimits(max_samples=4)) as w:
        for v in "abcde":
            w.add_video(video(v), row(v))
    assert len(list((tmp_path / "n").glob("*.tar"))) == 3  # 2 videos, 2 videos, 1 video
    one_video = sum(member_size(len(d)) for s in video("a") for d in schema.encode(s).values())
    with ShardWriter(str(tmp_path / "b"), "s", ShardLimits(max_bytes=int(one_video * 1.5))) as w:
        for v in "abc":
            w.add_video(video(v), row(v))
    shards = sorted((tmp_path / "b").glob("*.tar"))
    assert len(shards) == 3
    for shard in shards:
        vids = {s.meta.video_id for s in reader.iter_samples(str(shard))}
        assert len(vids) == 1


def test_index_rows_name_their_shard_and_state_sees_them(tmp_path):
    with ShardWriter(str(tmp_path), "p", ShardLimits(max_samples=2)) as w:
        w.add_video(video("a"), row("a"))
        w.add_video(video("b"), row("b"))
    state = manifest.load_state(str(tmp_path))
    assert state["a"].shards == ["p-000.tar"] and state["b"].shards == ["p-001.tar"]
    assert state["a"].bytes > 0


def test_failed_write_leaves_nothing_visible(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(str(tmp_path), "x") as w:
        w.add_video(video("a"), row("a"))
        raise RuntimeError("worker died")
    assert list(tmp_path.glob("*.tar")) == []
    assert list((tmp_path / "_tmp").iterdir()) == []
    assert manifest.load_state(str(tmp_path)) == {}


def test_index_without_its_shard_is_not_done(tmp_path):
    # a run killed between writing the index and renaming the tar
    with ShardWriter(str(tmp_path), "k") as w:
        w.add_video(video("a"), row("a"))
    (tmp_path / "k-000.tar").unlink()
    assert manifest.load_state(str(tmp_path)) == {}


def test_prefix_must_be_safe(tmp_path):
    with pytest.raises(ValueError):
        ShardWriter(str(tmp_path), "../evil")
