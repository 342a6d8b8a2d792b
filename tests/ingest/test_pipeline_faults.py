"""What one video can do to an ingest run: end as its own row, and nothing more.

The runs here are real (yt-dlp on loopback, ffmpeg, Beam's FnApiRunner) and in this
process (``direct_running_mode=in_memory``), so a test can make one function fail for
one video: the fault is the function raising, for that video only.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devtools import mediagen
from devtools.localserve import LocalServer
from ingest import __main__ as cli
from ingest import scratch
from ingest.refs import make_ref
from shards import layout, manifest, reader, schema
from tests.helpers import write_config

GOOD_S = 11.0  # two 5 s segments: one window of 2
VICTIM_S = 16.0  # three segments, so the functions that see no path can still tell it apart
NAMES = ("a0", "b0", "victim", "z0")  # sorted ids: the victim comes after two videos and before one


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    mediagen.make_video(root / "good.mp4", GOOD_S, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(root / "good.en.vtt", mediagen.make_words(GOOD_S, seed=1))
    mediagen.make_video(root / "victim.mp4", VICTIM_S, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(root / "victim.en.vtt", mediagen.make_words(VICTIM_S, seed=2))
    return root


def site_for(media: Path, dest: Path, names=NAMES) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = "victim" if name == "victim" else "good"
        shutil.copy(media / f"{src}.mp4", dest / f"{name}.mp4")
        shutil.copy(media / f"{src}.en.vtt", dest / f"{name}.en.vtt")
    return dest


def write_list(path: Path, srv: LocalServer, names=NAMES) -> Path:
    lines = ["url,captions"] + [f"{srv.url(f'{n}.mp4')},{srv.url(f'{n}.en.vtt')}" for n in names]
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest(config: Path, inputs: Path, out: Path, *extra: str) -> int:
    """`python -m ingest run` in this process, one group, the runner in this process too."""
    args = ["run", "--config", str(config), "--input", str(inputs), "--output", str(out)]
    args += ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    args += ["--set", "ingest.shards.videos_per_group=8", "--set", "ingest.shards.min_groups=1"]
    return cli.main([*args, *extra])


def rows_by_name(out: Path) -> dict[str, manifest.ManifestRow]:
    rows = manifest.read_rows(*layout.open_output(str(out / layout.MANIFEST_NAME)))
    return {Path(r.url).stem if r.url else r.video_id: r for r in rows}


def samples_by_video(out: Path) -> tuple[collections.Counter, dict[str, set[str]]]:
    """Windows per video over every shard (each checked against the format) and the shards
    each video is in."""
    windows: collections.Counter = collections.Counter()
    where: dict[str, set[str]] = collections.defaultdict(set)
    for url in layout.expand(str(out)):
        for sample in reader.iter_samples(url):
            schema.check(sample)
            windows[sample.meta.video_id] += 1
            where[sample.meta.video_id].add(Path(url).name)
    return windows, where


def no_leftovers(out: Path) -> bool:
    return not (out / layout.TMP_DIR).exists() or not any((out / layout.TMP_DIR).iterdir())


# -- item 1: an exception at any stage of one video ------------------------------------------


def _victim_path(path, *args, **kwargs) -> bool:
    return "victim" in str(path)


FAULTS = {
    # stage: (function to break, which call is the victim's, the victim's stage and reason)
    "download": ("ingest.download.Downloader.extract_info", lambda self, url: "victim" in url,
                 ("download", "other")),
    "probe": ("ingest.media.probe", _victim_path, ("probe", "internal_error")),
    "captions": ("ingest.core.parse_captions", _victim_path, ("captions", "internal_error")),
    "segments": ("ingest.core.make_windows", lambda segments, *a: len(segments) == 3,
                 ("segments", "internal_error")),
    "frames": ("ingest.media.extract_frames", _victim_path, ("media", "internal_error")),
    "audio": ("ingest.media.decode_audio", _victim_path, ("audio", "internal_error")),
    "features": ("ingest.features.log_mel_segments", lambda audio, n, *a: n == 3,
                 ("audio", "internal_error")),
    "samples": ("ingest.core.build_sample", lambda window, jpegs, *a: len(jpegs) == 3,
                ("samples", "internal_error")),
    "encode": ("shards.writer.encode_video",
               lambda samples: samples[0].meta.video_id.startswith("victim"),
               ("write", "internal_error")),
}  # fmt: skip


def inject(monkeypatch, target: str, is_victim) -> None:
    module_name, _, attr = target.rpartition(".")
    owner_name = None
    try:
        owner = __import__(module_name, fromlist=["_"])
    except ModuleNotFoundError:  # a method: module.Class.name
        module_name, _, owner_name = module_name.rpartition(".")
        owner = getattr(__import__(module_name, fromlist=["_"]), owner_name)
    original = getattr(owner, attr)

    def faulty(*args, **kwargs):
        if is_victim(*args, **kwargs):
            raise RuntimeError("injected fault")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attr, faulty)


@pytest.mark.parametrize("stage", sorted(FAULTS))
def test_an_exception_at_any_stage_of_one_video_costs_that_video_only(
    media, tmp_path, monkeypatch, stage
):
    target, is_victim, expected = FAULTS[stage]
    inject(monkeypatch, target, is_victim)
    site = site_for(media, tmp_path / "site")
    out = tmp_path / "out"
    with LocalServer(site) as srv:
        rc = ingest(write_config(tmp_path / "p.yaml"), write_list(tmp_path / "in.csv", srv), out)
    assert rc == 0
    rows = rows_by_name(out)
    assert sorted(rows) == sorted(NAMES)
    victim = rows["victim"]
    assert (victim.status, victim.stage, victim.reason) == ("failed", *expected), victim
    assert "injected fault" in victim.message and "\n" not in victim.message
    windows, where = samples_by_video(out)
    for name in ("a0", "b0", "z0"):
        row = rows[name]
        assert row.status == "ok" and windows[row.video_id] == row.windows == 1, row
        assert where[row.video_id] == set(row.shards)
    assert victim.video_id not in windows
    # the group went on in the same shard: the fault left nothing of the victim in it
    assert len({s for n in ("a0", "b0", "z0") for s in rows[n].shards}) == 1
    assert no_leftovers(out)


def test_a_shard_that_cannot_be_written_costs_its_videos_rows_that_a_retry_redoes(
    media, tmp_path, monkeypatch
):
    from shards import writer

    add = writer._OpenShard.add

    def disk_full_at_the_victim(self, data, n_samples, row):
        if row.video_id.startswith("victim"):
            self.file.write(data[: len(data) // 2])  # half of it lands, then the disk is full
            raise OSError(28, "No space left on device")
        return add(self, data, n_samples, row)

    site = site_for(media, tmp_path / "site")
    out = tmp_path / "out"
    config = write_config(tmp_path / "p.yaml")
    with LocalServer(site) as srv:
        inputs = write_list(tmp_path / "in.csv", srv)
        with monkeypatch.context() as patch:
            patch.setattr(writer._OpenShard, "add", disk_full_at_the_victim)
            assert ingest(config, inputs, out) == 0
        rows = rows_by_name(out)
        # a0 and b0 were in the shard the failed write spoiled: removed, and said so
        for name in ("a0", "b0", "victim"):
            row = rows[name]
            assert (row.status, row.stage, row.reason) == ("failed", "write", "internal_error")
            assert "No space left" in row.message, row
        assert "could not be written" in rows["a0"].message
        assert rows["z0"].status == "ok"
        windows, _ = samples_by_video(out)
        assert set(windows) == {rows["z0"].video_id}  # every shard on disk is whole
        assert no_leftovers(out)

        assert ingest(config, inputs, out, "--retry-failed") == 0
    rows = rows_by_name(out)
    assert all(r.status == "ok" for r in rows.values()), rows
    windows, _ = samples_by_video(out)
    assert windows == {r.video_id: r.windows for r in rows.values()}


# -- item 2: a processing deadline ----------------------------------------------------------


def test_a_video_past_its_processing_deadline_is_a_timeout_row_and_its_ffmpeg_is_gone(
    media, tmp_path
):
    # One keyframe in 240 s: every frame is decoded from the start of the video, so its
    # frames take ffmpeg minutes here, where the 11 s videos take a second or two.
    site = site_for(media, tmp_path / "site", names=("a0", "z0"))
    mediagen.make_video(site / "slow.mp4", 240, width=320, height=180, audio=None, gop_s=240)
    mediagen.write_auto_vtt(site / "slow.en.vtt", mediagen.make_words(240.0, seed=4))
    out = tmp_path / "out"
    with LocalServer(site) as srv:
        inputs = write_list(tmp_path / "in.csv", srv, names=("a0", "slow", "z0"))
        slow_id = make_ref(srv.url("slow.mp4")).video_id
        config = write_config(tmp_path / "p.yaml")
        assert ingest(config, inputs, out, "--set", "ingest.limits.process_deadline_s=20") == 0
    rows = rows_by_name(out)
    slow = rows["slow"]
    assert (slow.status, slow.stage, slow.reason) == ("failed", "media", "timeout"), slow
    assert "20 s deadline" in slow.message
    assert rows["a0"].status == rows["z0"].status == "ok"
    # the ffmpeg that was extracting its frames was killed, not left running
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            running.append(cmdline.read_bytes())
        except OSError:  # the process ended meanwhile
            continue
    assert not [c for c in running if slow_id.encode() in c]


# -- item 8: what killed runs leave ------------------------------------------------------------


def test_a_run_removes_partial_files_and_dead_workers_scratch_folders(media, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = temp / f"{scratch.PREFIX}{gone.pid}-x1"
    (dead / "vid.abc").mkdir(parents=True)
    (dead / "vid.abc" / "media.mp4").write_bytes(b"half a download")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = temp / f"{scratch.PREFIX}{alive.pid}-x2"
        live.mkdir()
        out = tmp_path / "out"
        partials = [out / "_tmp" / "shard-0a1b-000.tar.5f3e", out / "_tmp" / "rows-r.parquet.9c"]
        for path in partials:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"a partial file of a killed run")
        site = site_for(media, tmp_path / "site", names=("a0",))
        with LocalServer(site) as srv:
            inputs = write_list(tmp_path / "in.csv", srv, names=("a0",))
            assert ingest(write_config(tmp_path / "p.yaml"), inputs, out) == 0
        assert rows_by_name(out)["a0"].status == "ok"
        assert not any(p.exists() for p in partials) and no_leftovers(out)
        assert not dead.exists()
        assert live.is_dir()  # its worker may still be downloading
    finally:
        alive.kill()
        alive.wait()


# -- item 9: input lines, local sidecars, credentials --------------------------------------


def test_every_line_gets_a_row_no_file_is_echoed_and_no_credential_is_stored(media, tmp_path):
    site = site_for(media, tmp_path / "site")
    sidecars = tmp_path / "sidecars"
    sidecars.mkdir()
    shutil.copy(media / "victim.en.vtt", sidecars / "victim.en.vtt")
    (sidecars / "bad.vtt").write_text("SECRET-FIRST-LINE of a file\n00:01 --> SECRET-TIMING\n")
    (tmp_path / "private.vtt").write_text("WEBVTT\n\nSECRET-OUTSIDE\n")
    out = tmp_path / "out"
    with LocalServer(site) as srv:
        host = srv.base_url.removeprefix("http://")
        lines = [
            "url,id,captions",
            ",orphan,",  # no url
            f"http://u:SECRET-PASS@{host}/a0.mp4?token=SECRET-TOKEN,,{srv.url('a0.en.vtt')}",
            f"{srv.url('b0.mp4')},,{tmp_path / 'private.vtt'}",  # outside the root
            f"{srv.url('z0.mp4')},,bad.vtt",  # under the root, not a caption file
            f"{srv.url('victim.mp4')},,victim.en.vtt",  # under the root, good
        ]
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
        config = write_config(tmp_path / "p.yaml")
        root = f"ingest.download.captions_root={sidecars}"
        assert ingest(config, tmp_path / "in.csv", out, "--set", root) == 0
        assert "u:SECRET-PASS" in srv.logins("a0.mp4")  # the real URL was downloaded
    rows = manifest.load_state(str(out))
    assert len(rows) == 5
    by_url = {r.url: r for r in rows.values()}
    orphan = by_url[""]
    assert (orphan.status, orphan.stage, orphan.reason) == ("failed", "input", "invalid_input")
    assert "in.csv:2" in orphan.message
    a0 = by_url[f"http://{host}/a0.mp4?token=REDACTED"]
    assert a0.status == "ok", a0
    b0 = by_url[f"http://{host}/b0.mp4"]
    assert (b0.stage, b0.reason) == ("input", "invalid_input") and "captions_root" in b0.message
    z0 = by_url[f"http://{host}/z0.mp4"]
    assert (z0.stage, z0.reason) == ("captions", "malformed_captions")
    assert by_url[f"http://{host}/victim.mp4"].status == "ok"
    (a0_sample,) = [s for u in layout.expand(str(out)) for s in reader.iter_samples(u)
                    if s.meta.video_id == a0.video_id]  # fmt: skip
    assert a0_sample.meta.url == a0.url
    # no row in any state file, and no byte of a shard, holds a credential or a line of a
    # local file (the shards are plain tars; the rows are read, as Parquet compresses)
    fs, root = layout.open_output(str(out))
    for path in manifest.state_files(str(out)):
        for row in manifest.read_rows(fs, path):
            assert "SECRET" not in repr(row), (path, row)
    for shard in layout.expand(str(out)):
        assert b"SECRET" not in Path(shard).read_bytes(), shard
