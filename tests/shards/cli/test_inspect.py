"""inspect (shards/inspection.py): totals, manifest counts and the per-shard table."""

from __future__ import annotations

import io
import json
import shutil
import sys

import fsspec
import pytest

from devtools.samples import make_sample
from shards import layout, manifest, reader
from shards.cli.inspection import _union_ms, format_report, inspect_shards
from shards.cli.locate import LocateError, locate
from shards.cli.main import main
from shards.manifest import ManifestRow
from shards.writer import ShardWriter
from tests.helpers import RealOutput, real_output


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealOutput:
    return real_output(tmp_path_factory)


def truth(real: RealOutput) -> dict:
    """What the shards hold, read the slow way (every sample decoded)."""
    samples = [s for p in real.shards for s in reader.iter_samples(str(p))]
    return {
        "samples": len(samples),
        "videos": len({s.meta.video_id for s in samples}),
        "words": sum(len(s.meta.words) for s in samples),
        "ms": sum(s.meta.end_ms - s.meta.start_ms for s in samples),
    }


def test_totals_match_the_decoded_samples_and_the_files(real):
    report = inspect_shards(locate(str(real.out)))
    want = truth(real)
    assert report.problems == []
    assert len(report.shards) == 3
    assert (report.samples, report.videos, report.words) == (
        want["samples"],
        want["videos"],
        want["words"],
    )
    assert report.video_ms == want["ms"]  # windows do not overlap here
    sizes = [p.stat().st_size for p in real.shards]
    assert report.bytes == sum(sizes)
    spread = report.size_spread()
    assert spread["min"] == min(sizes) and spread["max"] == max(sizes)
    assert spread["mean"] == pytest.approx(sum(sizes) / 3)
    assert [s.samples for s in report.shards] == [2, 1, 2]


def test_manifest_counts_videos_per_status_and_failure_reason(real):
    m = inspect_shards(locate(str(real.out))).manifest
    assert m is not None and m.path.endswith("manifest.parquet")
    assert m.videos == 5
    assert m.statuses == {"ok": 3, "skipped": 1, "failed": 1}
    assert m.reasons["skipped"] == {"captions/no_captions": 1}
    broken = real.rows["broken"]
    assert m.reasons["failed"] == {f"{broken.stage}/{broken.reason}": 1}
    ok_ms = sum(r.duration_ms for r in real.rows.values() if r.status == "ok")
    assert m.ok_hours == pytest.approx(ok_ms / 3_600_000)


def test_text_report_has_totals_statuses_and_one_row_per_shard(real):
    text = format_report(inspect_shards(locate(str(real.out))))
    assert "samples" in text and "videos" in text and "per shard: mean" in text
    assert "captions/no_captions 1" in text
    for p in real.shards:
        assert sum(line.startswith(p.name) for line in text.splitlines()) == 1
    assert format_report(inspect_shards(locate(str(real.out))), table=False).count(".tar") == 0


def test_json_output_parses_and_carries_the_same_numbers(real, capsys):
    assert main(["inspect", str(real.out), "--json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["samples"] == truth(real)["samples"]
    assert data["totals"]["shards"] == 3
    assert data["manifest"]["statuses"]["failed"] == 1
    assert [s["name"] for s in data["shards"]] == [p.name for p in real.shards]
    assert data["problems"] == []


def test_a_brace_selection_counts_its_shards_and_finds_the_manifest_beside_them(real):
    report = inspect_shards(locate(str(real.out / "shard-test-{000..001}.tar")))
    assert [s.name for s in report.shards] == ["shard-test-000.tar", "shard-test-001.tar"]
    assert report.samples == 3
    assert report.manifest is not None and report.manifest.videos == 5
    assert "(the whole folder, not only these shards)" in format_report(report)


def test_a_glob_without_manifest_says_there_is_none(real, tmp_path):
    for p in real.shards:
        shutil.copy(p, tmp_path / p.name)
    report = inspect_shards(locate(str(tmp_path / "*.tar")))
    assert report.manifest is None and report.samples == 5
    assert "manifest: none beside the shards" in format_report(report)


def test_fsspec_memory_url(real):
    fs = fsspec.filesystem("memory")
    for p in real.shards:
        fs.pipe(f"/inspect-mem/{p.name}", p.read_bytes())
    try:
        report = inspect_shards(locate("memory://inspect-mem/shard-test-{000..002}.tar"))
        assert report.samples == 5 and report.bytes == sum(p.stat().st_size for p in real.shards)
        assert report.manifest is None
    finally:
        fs.rm("/inspect-mem", recursive=True)


def test_overlapping_windows_count_their_video_time_once(tmp_path):
    assert _union_ms([(0, 10), (5, 15), (20, 30), (25, 26)]) == 25
    # windows of 4 segments starting every 2 segments: 0-20 s, 10-30 s, 20-40 s
    samples = []
    for w, first in enumerate((0, 2, 4)):
        s = make_sample("ov", window=0, segments=4)
        shift = first * 5000
        meta = s.meta
        meta.window, meta.start_ms, meta.end_ms = w, meta.start_ms + shift, meta.end_ms + shift
        meta.segments = [(a + shift, b + shift) for a, b in meta.segments]
        for word in meta.words:
            word.start_ms += shift
            word.end_ms += shift
        samples.append(s)
    with ShardWriter(str(tmp_path), "ov") as w:
        w.add_video(samples, ManifestRow("ov", "u", "ok", windows=3))
    report = inspect_shards(locate(str(tmp_path)))
    assert report.video_ms == 40_000
    assert report.shards[0].window_ms == 60_000


def test_an_unreadable_shard_is_a_problem_and_the_others_still_count(real, tmp_path, capsys):
    out = shutil.copytree(real.out, tmp_path / "out")
    victim = out / "shard-test-001.tar"
    victim.write_bytes(victim.read_bytes()[:700])
    report = inspect_shards(locate(str(out)))
    assert [s.error != "" for s in report.shards] == [False, True, False]
    assert report.shards[1].error.startswith("truncated")
    assert report.samples == 4
    assert main(["inspect", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "shard-test-001.tar: -: truncated" in err and "Traceback" not in err


def test_a_sample_whose_json_does_not_parse_is_counted_as_bad(tmp_path):
    import io
    import tarfile

    with ShardWriter(str(tmp_path), "j") as w:
        w.add_video([make_sample("a", window=i) for i in range(2)], ManifestRow("a", "u", "ok"))
    shard = tmp_path / "j-000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for info, data in members:
            data = b"{oops" if info.name == "a_w0001.json" else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = inspect_shards(locate(str(shard)))
    assert report.shards[0].bad_samples == 1 and report.shards[0].samples == 2
    assert [(p.key, "json does not parse" in p.reason) for p in report.problems] == [
        ("a_w0001", True)
    ]


def test_paths_that_name_nothing_raise_a_clear_error(tmp_path):
    with pytest.raises(LocateError, match="no such file"):
        locate(str(tmp_path / "nope.tar"))
    with pytest.raises(LocateError, match="no shards match"):
        locate(str(tmp_path / "*.tar"))
    with pytest.raises(LocateError, match="no shards"):
        locate(str(tmp_path))  # an empty folder


def test_inspect_of_an_output_with_no_shards_but_a_manifest(tmp_path):
    fs, root = layout.open_output(str(tmp_path))
    manifest.write_rows_atomic(
        fs,
        root,
        layout.MANIFEST_NAME,
        [ManifestRow("x", "u", "failed", "download", "unavailable")],
    )
    report = inspect_shards(locate(str(tmp_path)))
    assert report.shards == [] and report.manifest is not None
    assert report.manifest.reasons == {"failed": {"download/unavailable": 1}}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_and_not_when_quiet_or_piped(real, monkeypatch):
    target = locate(str(real.out))
    for quiet, tty, shown in ((False, True, True), (True, True, False), (False, False, False)):
        err = _Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        inspect_shards(target, quiet=quiet)
        text = err.getvalue()
        assert ("inspect" in text and "3/3" in text and "samples=5" in text) == shown, text
