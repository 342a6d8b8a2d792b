"""The Beam ingest pipeline end to end: real yt-dlp, ffmpeg and Beam runners on loopback."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import pytest

from devtools import mediagen
from devtools.localserve import LocalServer
from ingest import __main__ as cli
from shards import layout, manifest, reader, schema
from tests.helpers import free_port, write_config

REPO = Path(__file__).resolve().parents[2]
DURATION_S = 11.0  # two 5 s segments


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    words = mediagen.make_words(DURATION_S, seed=1)
    mediagen.make_video(root / "good.mp4", DURATION_S, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(root / "good.en.vtt", words)
    mediagen.make_video(root / "silent.mp4", DURATION_S, audio=None, width=320, height=180)
    return root


def serve_copy(media: Path, dest: Path, names: dict[str, str]) -> Path:
    """Lay out a served folder: {served name: source file in media}."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in names.items():
        shutil.copy(media / src, dest / name)
    return dest


def run_cli(profile: str, config: Path, inputs: Path, out: Path, *extra: str) -> int:
    """`python -m ingest run` in this process."""
    args = [
        "--profile",
        profile,
        "--config",
        str(config),
        "--input",
        str(inputs),
        "--output",
        str(out),
    ]
    return cli.main(["run", *args, *extra])


def rows_by_url(out: Path) -> dict[str, manifest.ManifestRow]:
    rows = manifest.read_rows(*layout.open_output(str(out / "manifest.parquet")))
    return {r.url: r for r in rows}


def samples_per_video(out: Path) -> collections.Counter:
    seen = collections.Counter()
    for url in layout.expand(str(out)):
        for s in reader.iter_samples(url):
            seen[s.key] += 1
    return seen


def test_mixed_list_every_input_gets_one_right_row(media, tmp_path):
    site = serve_copy(
        media,
        tmp_path / "site",
        {
            "good.mp4": "good.mp4",
            "good.en.vtt": "good.en.vtt",
            "page.mp4": "good.mp4",
            "page.en.vtt": "good.en.vtt",
            "noaudio.mp4": "silent.mp4",
            "retry.mp4": "good.mp4",
            "nocap.mp4": "good.mp4",
            "badvtt.mp4": "good.mp4",
        },
    )
    mediagen.truncate(media / "good.mp4", site / "trunc.mp4", 0.4)
    (site / "bad.vtt").write_bytes(b"\x00\x01garbage\xff not a caption file")
    (site / "page.html").write_text(
        "<html><head><title>A page</title></head><body>"
        '<video src="page.mp4"><track kind="subtitles" srclang="en" src="page.en.vtt"></video>'
        "</body></html>"
    )
    with LocalServer(site) as srv:
        base = srv.base_url

        def u(name: str) -> str:
            return f"{base}/{name}"

        lines = [
            "url,id,captions",
            f"{u('good.mp4')},,{u('good.en.vtt')}",
            f"{u('good.mp4')},,{u('good.en.vtt')}",  # a duplicate
            f'{u("good.mp4")}?copy=2,"../evil;rm -rf ~",{u("good.en.vtt")}',
            f"{u('page.html')},,",
            f"{u('noaudio.mp4')},,{u('good.en.vtt')}",
            f"{u('trunc.mp4')},,{u('good.en.vtt')}",
            f"{u('nocap.mp4')},,",
            f"{u('badvtt.mp4')},,{u('bad.vtt')}",
            f"{u('missing.mp4')},,{u('good.en.vtt')}",
            f"{u('retry.mp4')},,{u('good.en.vtt')}",
            "-o /tmp/pwned,,",
        ]
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
        srv.fail("retry.mp4", 429, times=2)
        out = tmp_path / "out"
        cfg = write_config(tmp_path / "p.yaml")
        rc = run_cli("local", cfg, tmp_path / "in.csv", out, "--direct_num_workers=2")
        assert rc == 0
        assert srv.requests("retry.mp4") >= 3

    rows = rows_by_url(out)
    assert len(rows) == 10  # 11 lines, one duplicate
    expect = {
        "good.mp4": ("ok", ""),
        "good.mp4?copy=2": ("ok", ""),
        "page.html": ("ok", ""),
        "noaudio.mp4": ("ok", ""),
        "retry.mp4": ("ok", ""),
        "trunc.mp4": ("failed", "corrupt_media"),
        "nocap.mp4": ("skipped", "no_captions"),
        "badvtt.mp4": ("failed", "malformed_captions"),
        "missing.mp4": ("failed", "unavailable"),
    }
    for name, (status, reason) in expect.items():
        row = rows[u(name)]
        assert (row.status, row.reason) == (status, reason), (name, row)
    assert rows["-o /tmp/pwned"].status == "failed" and rows["-o /tmp/pwned"].stage == "input"
    assert rows[u("noaudio.mp4")].has_audio is False
    assert rows[u("page.html")].title.startswith("A page")  # yt-dlp numbers page entries
    weird = rows[u("good.mp4") + "?copy=2"]
    assert schema.KEY_RE.match(weird.video_id) and ".." not in weird.video_id

    # every good video's windows are in the shards, exactly once; every shard is whole
    seen = samples_per_video(out)
    for row in rows.values():
        if row.status == "ok":
            assert row.windows == 1 and row.shards
            assert seen[schema.sample_key(row.video_id, 0)] == 1
    assert sum(seen.values()) == 5
    assert not any((out / "_tmp").glob("*")) if (out / "_tmp").exists() else True
    shards = {s for r in rows.values() for s in r.shards}
    assert shards == {Path(p).name for p in layout.expand(str(out))}

    # a rerun does nothing new; --retry-failed reruns only the failed rows
    rc = run_cli("local", cfg, tmp_path / "in.csv", out, "--direct_num_workers=1")
    assert rc == 0
    assert samples_per_video(out) == seen

    # --retry-failed: the missing video now exists; only failed rows are tried again
    shutil.copy(site / "good.mp4", site / "missing.mp4")
    before = rows_by_url(out)
    with LocalServer(site, port=int(base.rsplit(":", 1)[1])):
        rc = run_cli(
            "local", cfg, tmp_path / "in.csv", out, "--direct_num_workers=1", "--retry-failed"
        )
    assert rc == 0
    after = rows_by_url(out)
    assert after[u("missing.mp4")].status == "ok"
    assert (
        after[u("trunc.mp4")].status == "failed"
        and after[u("trunc.mp4")].run != before[u("trunc.mp4")].run
    )
    assert after[u("nocap.mp4")] == before[u("nocap.mp4")]  # skipped, not retried
    assert after[u("good.mp4")] == before[u("good.mp4")]
    assert sum(samples_per_video(out).values()) == 6


def wait_for_port(port: int, proc: subprocess.Popen, limit_s: float = 120.0) -> None:
    """Until something listens on 127.0.0.1:``port`` (fails if ``proc`` dies first)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the worker pool exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {limit_s} s")


def test_portable_runner_with_external_worker_pool(media, tmp_path):
    site = serve_copy(media, tmp_path / "site", {"a.mp4": "good.mp4", "a.en.vtt": "good.en.vtt"})
    port = free_port()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    pool = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, pool)  # a busy machine can take seconds to start the pool
        with LocalServer(site) as srv:
            (tmp_path / "in.txt").write_text(f"{srv.url('a.mp4')}\n")
            (tmp_path / "in.csv").write_text(
                f"url,captions\n{srv.url('a.mp4')},{srv.url('a.en.vtt')}\n"
            )
            out = tmp_path / "out"
            config = write_config(tmp_path / "p.yaml")
            rc = run_cli(
                "portable",
                config,
                tmp_path / "in.csv",
                out,
                f"--environment_config=localhost:{port}",
            )
        assert rc == 0
        (row,) = rows_by_url(out).values()
        assert row.status == "ok" and row.windows == 1
        assert sum(samples_per_video(out).values()) == 1
    finally:
        pool.terminate()
        pool.wait(timeout=10)


def test_killed_run_resumes_without_duplicates_losses_or_leftovers(media, tmp_path, monkeypatch):
    n = 8
    temp = tmp_path / "temp"  # the runs' temp folder, where their workers download
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    site = serve_copy(media, tmp_path / "site", {f"v{i}.mp4": "good.mp4" for i in range(n)})
    shutil.copy(media / "good.en.vtt", site / "c.en.vtt")
    cfg = write_config(tmp_path / "p.yaml", sleep_interval_s=0.7)
    out = tmp_path / "out"
    with LocalServer(site) as srv:
        lines = ["url,captions"] + [
            f"{srv.url(f'v{i}.mp4')},{srv.url('c.en.vtt')}" for i in range(n)
        ]
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
        args = [
            "--profile",
            "local",
            "--config",
            str(cfg),
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(out),
            "--direct_num_workers=2",
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", *args],
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*.tar")):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
        assert before, "no shard landed before the kill"
        assert not (out / "manifest.parquet").exists()
        killed_scratch = list(temp.glob("montage-dl-*"))
        assert killed_scratch, "the killed workers left no download folder"
        assert cli.main(["run", *args]) == 0
    assert not any(p.exists() for p in killed_scratch)
    assert not (out / "_tmp").exists() or not any((out / "_tmp").iterdir())

    for name, data in before.items():
        assert (out / name).read_bytes() == data, f"{name} was lost or rewritten"
    rows = rows_by_url(out)
    assert len(rows) == n and all(r.status == "ok" for r in rows.values())
    seen = samples_per_video(out)
    assert len(seen) == n and set(seen.values()) == {1}


# -- SkipDone on its own: the output's rows joined with the refs by id ---------------------------


def _row(vid: str, status: str, shards=(), reason: str = "") -> manifest.ManifestRow:
    return manifest.ManifestRow(vid, f"http://h/{vid}", status, reason=reason, shards=list(shards))


@pytest.fixture
def earlier_output(tmp_path) -> Path:
    """A consolidated manifest plus later index files, as earlier runs leave them."""
    out = tmp_path / "out"
    fs, root = layout.open_output(str(out))
    (out / "shard-a-000.tar").parent.mkdir(parents=True)
    (out / "shard-a-000.tar").write_bytes(b"")  # only existence counts here
    manifest.write_rows_atomic(
        fs,
        root,
        layout.MANIFEST_NAME,
        [
            _row("done", "ok", ["shard-a-000.tar"]),
            _row("lost", "ok", ["shard-gone-000.tar"]),  # its shard is gone: not done
            _row("flaky", "failed", reason="network"),
            _row("fixed", "failed", reason="network"),
            _row("long", "skipped", reason="too_long"),
        ],
    )
    later = [_row("fixed", "ok", ["shard-a-000.tar"]), _row("done", "failed", reason="network")]
    manifest.write_rows_atomic(fs, root, f"{layout.INDEX_DIR}/rows-b.parquet", later)
    return out


@pytest.mark.parametrize(
    "retry_failed, todo",
    [(False, ["lost", "new"]), (True, ["flaky"])],
    ids=["resume", "retry-failed"],
)
def test_skip_done_keeps_exactly_the_videos_still_to_do(earlier_output, retry_failed, todo):
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from ingest.refs import make_ref
    from ingest.resume import SkipDone

    ids = ["done", "lost", "flaky", "fixed", "long", "new"]
    refs = [make_ref(f"http://h/{vid}", video_id=vid) for vid in ids]
    with TestPipeline() as p:
        kept = (
            p
            | beam.Create(refs)
            | SkipDone(str(earlier_output), retry_failed)
            | beam.Map(lambda r: r.video_id)
        )
        assert_that(kept, equal_to(todo))


def test_skip_done_on_a_new_output_keeps_everything(tmp_path):
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from ingest.refs import make_ref
    from ingest.resume import SkipDone

    refs = [make_ref(f"http://h/{vid}", video_id=vid) for vid in ("a", "b")]
    with TestPipeline() as p:
        kept = (
            p
            | beam.Create(refs)
            | SkipDone(str(tmp_path / "none"))
            | beam.Map(lambda r: r.video_id)
        )
        assert_that(kept, equal_to(["a", "b"]))
