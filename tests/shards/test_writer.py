import io
import resource
import signal
import tarfile

import pytest

from devtools.samples import make_sample
from shards import manifest, reader, schema
from shards.writer import ShardLimits, ShardWriter, encode_video, member_size


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


def test_the_bytes_are_those_tarfile_writes(tmp_path):
    videos = {v: video(v) for v in "ab"}
    with ShardWriter(str(tmp_path / "w"), "t") as w:
        for v, samples in videos.items():
            w.add_video(samples, row(v))
    with tarfile.open(tmp_path / "ref.tar", "w", format=tarfile.PAX_FORMAT) as ref:
        for samples in videos.values():
            for name, data in encode_video(samples):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o444, 0
                ref.addfile(info, io.BytesIO(data))
    assert (tmp_path / "w" / "t-000.tar").read_bytes() == (tmp_path / "ref.tar").read_bytes()


def test_a_video_that_fails_to_encode_leaves_the_shard_as_it_was(tmp_path):
    broken = video("b")
    broken[1].meta.words.append("not a word record")  # schema.encode cannot serialise it
    with ShardWriter(str(tmp_path), "e") as w:
        w.add_video(video("a"), row("a"))
        with pytest.raises(Exception):  # noqa: B017 - whatever encoding raises
            w.add_video(broken, row("b"))
        w.add_video(video("c"), row("c"))
    assert w.lost == [] and [r.video_id for r in w.rows] == ["a", "c"]
    keys = [s.key for s in reader.iter_samples(str(tmp_path / "e-000.tar"))]
    assert keys == ["a_w0000", "a_w0001", "c_w0000", "c_w0001"]


def test_a_shard_whose_file_fails_is_removed_and_its_videos_are_reported_lost(tmp_path):
    """A real write failure: the file size limit (RLIMIT_FSIZE) reached in the middle of a
    video. The shard cannot be trusted any more, so it goes, with its rows in ``lost``."""
    small = sum(len(d) for _, d in encode_video(video("a"))) + 4 * 512
    big = [make_sample("big", window=w, segments=3) for w in range(40)]
    out = tmp_path / "out"
    out.mkdir()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 * small, limit[1]))
        with ShardWriter(str(out), "f") as w:
            w.add_video(video("a"), row("a"))
            with pytest.raises(OSError):
                w.add_video(big, row("big"))
            w.add_video(video("c"), row("c"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert [(s.name, [r.video_id for r in s.rows]) for s in w.lost] == [("f-000.tar", ["a"])]
    assert "File too large" in w.lost[0].error
    assert sorted(p.name for p in out.glob("*.tar")) == ["f-001.tar"]
    assert [s.meta.video_id for s in reader.iter_samples(str(out / "f-001.tar"))] == ["c", "c"]
    assert list((out / "_tmp").iterdir()) == []
    assert set(manifest.load_state(str(out))) == {"c"}
