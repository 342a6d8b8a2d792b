"""shards.reader, the one tar reader: the key rule, grouping, streams over damage, scans."""

from __future__ import annotations

import io
import tarfile

import fsspec
import pytest

from devtools.samples import make_sample
from shards import reader, schema
from shards.decode import decode_sample
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter, encode_video, member_size


def write_shards(out, videos: int, per_shard: int = 1) -> list[str]:
    """``videos`` videos of 2 windows each, ``per_shard`` videos a shard; returns the keys."""
    keys = []
    with ShardWriter(str(out), "r", ShardLimits(max_samples=2 * per_shard)) as w:
        for v in range(videos):
            samples = [make_sample(f"v{v}", i, segments=2) for i in range(2)]
            w.add_video(samples, ManifestRow(video_id=f"v{v}", url="u", status="ok"))
            keys += [s.key for s in samples]
    return keys


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_key_is_the_basename_up_to_its_first_dot():
    assert reader.split_name("abc_w0001.00.jpg") == ("abc_w0001", "00.jpg")
    assert reader.split_name("abc_w0001.mel.npy") == ("abc_w0001", "mel.npy")
    assert reader.split_name("sub.dir/abc.json") == ("sub.dir/abc", "json")
    assert reader.split_name("no_suffix") == ("no_suffix", "")


def test_raw_samples_hold_what_the_writer_wrote_in_order(tmp_path):
    keys = write_shards(tmp_path, 2, per_shard=2)
    (shard,) = sorted(tmp_path.glob("*.tar"))
    raws = list(reader.iter_raw(str(shard)))
    assert [r.key for r in raws] == keys
    want = schema.encode(make_sample("v1", 1, segments=2))
    assert raws[3].members == want and raws[3].url == str(shard)
    decoded = list(reader.iter_samples(str(shard)))
    assert [s.key for s in decoded] == keys


def test_stream_goes_on_past_missing_unreadable_and_truncated_shards(tmp_path):
    write_shards(tmp_path / "good", 2)  # r-000.tar, r-001.tar: one video (2 samples) each
    good = sorted(str(p) for p in (tmp_path / "good").glob("*.tar"))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    cut = tmp_path / "cut.tar"
    members = encode_video([make_sample("c", i, segments=2) for i in range(3)])  # 4 members each
    write_tar(cut, members)
    third = sum(member_size(len(d)) for _, d in members[:8])  # where the third sample begins
    cut.write_bytes(cut.read_bytes()[: third + 512 + 10])  # inside its first member's data

    errors: list[Exception] = []
    urls = [good[0], str(tmp_path / "missing.tar"), str(junk), str(cut), good[1]]
    raws = list(reader.stream_raw(urls, on_error=errors.append))

    assert [type(e) for e in errors] == [reader.ShardError] * 3
    assert [str(e).split(": ")[0] for e in errors] == urls[1:4]
    assert [r.key for r in raws] == [
        *("v0_w0000", "v0_w0001"),
        *("c_w0000", "c_w0001"),  # read before the damage: kept
        *("v1_w0000", "v1_w0001"),
    ]
    assert decode_sample(raws[3].key, raws[3].members).key == "c_w0001"
    with pytest.raises(reader.ShardError, match="truncated"):
        list(reader.iter_raw(str(cut)))


def test_a_member_twice_is_reported_and_the_first_kept(tmp_path):
    sample = make_sample("d", 0, segments=2)
    members = encode_video([sample])
    path = tmp_path / "dup.tar"
    write_tar(path, [*members[:2], (members[1][0], b"second"), *members[2:]])
    errors: list[Exception] = []
    (raw,) = reader.stream_raw([str(path)], on_error=errors.append)
    assert raw.members == schema.encode(sample)
    assert len(errors) == 1 and "d_w0000.00.jpg appears twice" in str(errors[0])
    with pytest.raises(reader.ShardError, match="appears twice"):
        list(reader.iter_raw(str(path)))


def test_a_handler_that_raises_stops_the_stream(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"junk" * 300)

    def stop(exc: Exception) -> None:
        raise RuntimeError(f"stop: {exc}")

    with pytest.raises(RuntimeError, match=r"stop: .*junk\.tar"):
        list(reader.stream_raw([str(tmp_path / "junk.tar")], on_error=stop))


def test_streams_and_first_meta_read_fsspec_urls(tmp_path):
    keys = write_shards(tmp_path, 1)
    (shard,) = tmp_path.glob("*.tar")
    url = "memory://reader-test/r-000.tar"
    with fsspec.open(url, "wb") as f:
        f.write(shard.read_bytes())
    try:
        assert [r.key for r in reader.stream_raw([url], on_error=pytest.fail)] == keys
        assert reader.first_meta(url) == make_sample("v0", 0, segments=2).meta
    finally:
        fsspec.filesystem("memory").rm("/reader-test", recursive=True)


def test_first_meta_of_a_shard_without_json_says_so(tmp_path):
    path = tmp_path / "nojson.tar"
    write_tar(path, [("k_w0000.00.jpg", b"x")])
    with pytest.raises(reader.ShardError, match=r"no sample with a \.json member"):
        reader.first_meta(str(path))


def test_scan_and_stream_see_the_same_members(tmp_path):
    write_shards(tmp_path, 2, per_shard=2)
    (shard,) = tmp_path.glob("*.tar")
    scanned = [(e.key, e.suffix, e.data) for e in reader.TarScan(str(shard))]
    streamed = [(e.key, e.suffix, e.data) for e in reader.iter_entries(str(shard))]
    assert scanned == streamed and len(scanned) == 4 * (1 + 2 + 1)
