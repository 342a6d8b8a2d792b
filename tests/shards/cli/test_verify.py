"""verify: whole shards pass; each kind of damage is found and named (shard, key, reason)."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from devtools.samples import jpeg, make_sample
from shards import reader, schema
from shards.cli.locate import locate
from shards.cli.main import main
from shards.cli.verify import MANIFEST, check_sample, verify_shards
from tests.helpers import (
    Members,
    RealOutput,
    edit_json,
    read_members,
    real_output,
    rewrite_manifest,
    write_members,
)


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealOutput:
    return real_output(tmp_path_factory)


@pytest.fixture
def copy(real, tmp_path) -> Path:
    """A private copy of the whole output folder, free to damage."""
    return Path(shutil.copytree(real.out, tmp_path / "out"))


def problems_of(out: Path | str) -> list[tuple[str, str, str]]:
    report = verify_shards(locate(str(out)))
    assert report.shards >= 1
    return [(p.shard, p.key, p.reason) for p in report.problems]


def test_verify_passes_the_real_pipelines_shards(real, capsys):
    report = verify_shards(locate(str(real.out)))
    assert report.problems == []
    assert report.shards == 3 and report.samples == 5
    assert report.bytes == sum(p.stat().st_size for p in real.shards)
    assert report.manifest and report.manifest.endswith("manifest.parquet")
    assert main(["verify", str(real.out), "-q"]) == 0
    assert "all whole" in capsys.readouterr().out


SHARD = "shard-test-000.tar"  # the "speech" video: speech_w0000, speech_w0001


def _truncate(members: Members, path: Path) -> None:
    write_members(path, members)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])


def _drop_end_blocks(members: Members, path: Path) -> None:
    write_members(path, members)
    with tarfile.open(path) as tar:
        last = tar.getmembers()[-1]
        end = last.offset_data + -(-last.size // 512) * 512
    path.write_bytes(path.read_bytes()[:end])


def _append_garbage(members: Members, path: Path) -> None:
    write_members(path, members)
    with path.open("ab") as f:
        f.write(np.random.default_rng(0).bytes(3000))


def _rewrite(edit: Callable[[Members], Members]) -> Callable[[Members, Path], None]:
    return lambda members, path: write_members(path, edit(members))


def _wrong_mel_shape(meta: dict) -> None:
    meta["mel_shape"] = [2, 64, 100]


def _words_go_back(meta: dict) -> None:
    meta["words"][3]["start_ms"] = meta["words"][0]["start_ms"] - 1
    meta["words"][3]["end_ms"] = meta["words"][0]["start_ms"] + 1


def _bad_subsegment(meta: dict) -> None:
    meta["words"][1]["subsegment"] = 7


def _float_mel(members: Members) -> Members:
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 64, 188), dtype=np.float32))
    return [(n, buf.getvalue() if n.endswith(".mel.npy") else d) for n, d in members]


DAMAGES = {
    "truncated": (_truncate, "", "truncated"),
    "no end-of-archive blocks": (_drop_end_blocks, "", "no end-of-archive blocks"),
    "garbage appended": (_append_garbage, "", "3000 bytes of garbage after the last member"),
    "frame removed": (
        _rewrite(lambda ms: [m for m in ms if m[0] != "speech_w0001.01.jpg"]),
        "speech_w0001",
        "member .01.jpg missing",
    ),
    "mel removed": (
        _rewrite(lambda ms: [m for m in ms if m[0] != "speech_w0000.mel.npy"]),
        "speech_w0000",
        "has_audio but no mel member",
    ),
    "json removed": (
        _rewrite(lambda ms: [m for m in ms if m[0] != "speech_w0001.json"]),
        "speech_w0001",
        "no .json member",
    ),
    "wrong mel shape in the json": (
        _rewrite(lambda ms: edit_json(ms, "speech_w0000", _wrong_mel_shape)),
        "speech_w0000",
        "json mel_shape (2, 64, 100) != (2, 64, 188)",
    ),
    "json does not parse": (
        _rewrite(lambda ms: [(n, b"{not json" if n == "speech_w0000.json" else d) for n, d in ms]),
        "speech_w0000",
        "json does not parse",
    ),
    "jpeg cut short": (
        _rewrite(
            lambda ms: [(n, d[: len(d) // 2] if n.endswith("w0000.00.jpg") else d) for n, d in ms]
        ),
        "speech_w0000",
        ".00.jpg does not decode",
    ),
    "mel of the wrong dtype": (
        _rewrite(_float_mel),
        "speech_w0000",
        "mel is float32(2, 64, 188), expected uint8(2, 64, 188)",
    ),
    "words go back in time": (
        _rewrite(lambda ms: edit_json(ms, "speech_w0000", _words_go_back)),
        "speech_w0000",
        "starts before the word before it",
    ),
    "sub-segment out of range": (
        _rewrite(lambda ms: edit_json(ms, "speech_w0000", _bad_subsegment)),
        "speech_w0000",
        "sub-segment 7 out of range",
    ),
    "member twice": (
        _rewrite(lambda ms: [*ms[:2], ms[1], *ms[2:]]),
        "speech_w0000",
        "member .00.jpg appears twice",
    ),
    "unexpected member": (
        _rewrite(lambda ms: [*ms[:3], ("speech_w0000.07.jpg", ms[1][1]), *ms[3:]]),
        "speech_w0000",
        "unexpected member .07.jpg",
    ),
    "members not contiguous": (
        _rewrite(lambda ms: [*ms, ms[0]]),
        "speech_w0000",
        "members are not contiguous",
    ),
    "not a tar": (
        lambda _ms, path: path.write_bytes(b"PK\x03\x04 this is a zip, not a tar" * 40),
        "",
        "not a tar",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_verify_finds_and_names_each_damage(copy, damage, capsys):
    apply, key, reason = DAMAGES[damage]
    shard = copy / SHARD
    apply(read_members(shard), shard)
    found = problems_of(copy)
    assert any(s == SHARD and k == key and reason in r for s, k, r in found), found
    assert all(s in (SHARD, MANIFEST) for s, _, _ in found), found
    assert main(["verify", str(copy), "-q"]) == 1
    out = capsys.readouterr().out
    assert f"{SHARD}: {key or '-'}: " in out and reason in out


def test_workers_report_the_same_problems_in_order_and_a_sample_in_two_shards(copy):
    first, second, third = sorted(copy.glob("shard-*.tar"))
    dup = [(n, d) for n, d in read_members(first) if n.startswith("speech_w0000.")]
    assert dup, "the first shard holds the speech video's first window"
    write_members(second, read_members(second) + dup)
    _truncate(read_members(third), third)
    one = verify_shards(locate(str(copy)), workers=1)
    many = verify_shards(locate(str(copy)), workers=3)
    assert many.problems == one.problems
    assert (many.shards, many.samples, many.bytes) == (one.shards, one.samples, one.bytes)
    also = [p for p in many.problems if p.reason == f"sample also in {first.name}"]
    assert [(p.shard, p.key) for p in also] == [(second.name, "speech_w0000")]
    assert any(p.shard == third.name and "truncated" in p.reason for p in many.problems)
    assert main(["verify", str(copy), "-q", "--workers", "3"]) == 1


def test_verify_refuses_zero_workers(real, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(real.out), "--workers", "0"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="workers"):
        verify_shards(locate(str(real.out)), workers=0)


def test_rewritten_but_undamaged_copy_passes(copy):
    """The damage tests' tar writer itself leaves a shard whole."""
    shard = copy / SHARD
    write_members(shard, read_members(shard))
    assert problems_of(copy) == []


def test_garbage_after_zero_padding_is_found_and_zero_padding_is_not(copy):
    shard = copy / SHARD
    with shard.open("ab") as f:
        f.write(bytes(4096))  # more zero padding: harmless
    assert problems_of(copy) == []
    with shard.open("ab") as f:
        f.write(b"\x00" * 100 + b"x")
    found = problems_of(copy)
    assert [(s, k) for s, k, _ in found] == [(SHARD, "")]
    assert "1 bytes of garbage" in found[0][2]


def test_members_named_with_dotdot_are_a_key_problem_and_nothing_is_written(copy):
    shard = copy / SHARD
    evil = [("../../evil.json", b"{}"), ("/abs/evil.00.jpg", b"x")]
    write_members(shard, read_members(shard) + evil)
    before = sorted(p for p in copy.parent.parent.rglob("*"))
    found = problems_of(copy)
    assert (SHARD, "../../evil", "key has characters outside [A-Za-z0-9_-]") in found
    assert any(k == "/abs/evil" and "key has characters" in r for _, k, r in found)
    assert sorted(p for p in copy.parent.parent.rglob("*")) == before
    assert not (copy.parent.parent / "evil.json").exists()


# --- the manifest against the shards ---


def _set(rows, vid, **changes):
    return [dataclasses.replace(r, **changes) if r.video_id == vid else r for r in rows]


def test_consolidated_manifest_without_index_still_passes(copy):
    rewrite_manifest(copy, lambda rows: rows)
    assert problems_of(copy) == []


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        (lambda rows: _set(rows, "speech", windows=3), (SHARD, "speech"), "windows [2] missing"),
        (
            lambda rows: _set(rows, "speech", windows=1),
            (SHARD, "speech"),
            "windows [1] not in the row",
        ),
        (
            lambda rows: [r for r in rows if r.video_id != "speech"],
            (SHARD, "speech_w0000"),
            "video speech has no manifest row",
        ),
        (
            lambda rows: _set(rows, "speech", status="failed", reason="corrupt_media"),
            (SHARD, "speech_w0000"),
            "row says failed (corrupt_media)",
        ),
        (
            lambda rows: _set(rows, "speech", shards=["shard-test-001.tar"]),
            (SHARD, "speech_w0000"),
            "row names ['shard-test-001.tar']",
        ),
        (lambda rows: [*rows, rows[0]], ("manifest", "broken"), "two rows"),
        (lambda rows: _set(rows, "silent", shards=[]), ("manifest", "silent"), "names no shard"),
    ],
    ids=[
        "window missing",
        "window not in row",
        "no row",
        "row failed",
        "other shard",
        "twice",
        "no shard",
    ],
)
def test_verify_finds_where_the_manifest_and_shards_disagree(copy, change, where, reason):
    rewrite_manifest(copy, change)
    found = problems_of(copy)
    assert any((s, k) == where and reason in r for s, k, r in found), found


def test_ok_row_whose_shard_is_gone_is_a_problem(copy):
    (copy / "shard-test-002.tar").unlink()
    found = problems_of(copy)
    assert (
        "manifest",
        "manual",
        "row is ok but names missing shards ['shard-test-002.tar']",
    ) in found


def test_a_selection_of_shards_checks_only_the_rows_it_holds(real):
    spec = str(real.out / "shard-test-{000..001}.tar")
    report = verify_shards(locate(spec))
    assert report.problems == [] and report.shards == 2
    assert report.manifest is not None  # found beside the shards


def test_fsspec_memory_url_is_verified_like_a_folder(real):
    import fsspec

    fs = fsspec.filesystem("memory")
    for p in real.out.rglob("*"):
        if p.is_file() and "_tmp" not in p.parts:
            fs.pipe(f"/verify-mem/{p.relative_to(real.out)}", p.read_bytes())
    try:
        report = verify_shards(locate("memory://verify-mem"))
        assert report.problems == [] and report.shards == 3 and report.samples == 5
        fs.pipe("/verify-mem/shard-test-001.tar", fs.cat("/verify-mem/shard-test-001.tar")[:5000])
        report = verify_shards(locate("memory://verify-mem/shard-test-{000..002}.tar"))
        assert [(p.shard, p.key) for p in report.problems][:1] == [("shard-test-001.tar", "")]
    finally:
        fs.rm("/verify-mem", recursive=True)


# --- one sample, no tar ---


def whole_sample(window: int = 1):
    """A synthetic sample whose frames have the size its params state (512x288)."""
    sample = make_sample("v", window=window, segments=3)
    return dataclasses.replace(sample, frames=[jpeg(i, (512, 288)) for i in range(3)])


def test_check_sample_accepts_a_whole_sample_and_reports_every_problem_of_a_bad_one():
    assert check_sample("v_w0001", schema.encode(whole_sample())) == []
    members = schema.encode(whole_sample())
    del members["02.jpg"]
    members["mel.npy"] = b"not npy"
    members["00.jpg"] = jpeg(0, (64, 36))
    found = check_sample("v_w0002", members)
    assert "json names key 'v_w0001'" in found
    assert "member .02.jpg missing" in found
    assert ".00.jpg is 64x36, expected short side 288 and long side <= 512" in found
    assert any(p.startswith(".mel.npy does not load") for p in found)
    assert len(found) == 4, found


def test_word_outside_its_segment_is_found():
    sample = whole_sample(window=0)
    words = sample.meta.words
    # centre 5100 ms lies in segment 1, the word says segment 0; starts stay in order
    moved = dataclasses.replace(words[2], start_ms=5000, end_ms=5200)
    meta = dataclasses.replace(sample.meta, words=[*words[:2], moved])
    members = schema.encode(sample) | {"json": meta.to_json()}
    found = check_sample("v_w0000", members)
    assert found == ["word 2 'w0_2' [5000, 5200] is not in its segment [0, 5000)"]


def test_tarscan_reads_only_wanted_members_and_reports_size(real):
    shard = real.shards[0]
    scan = reader.TarScan(str(shard), want=lambda _k, s: s == "json")
    entries = list(scan)
    assert {e.suffix for e in entries if e.data is not None} == {"json"}
    assert all(e.data is None for e in entries if e.suffix != "json")
    assert scan.size == shard.stat().st_size
