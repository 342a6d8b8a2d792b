"""The whole path on object stores, for real: an S3 server (moto) and a GCS emulator on
loopback, started here. Input list on s3://, ingest to s3:// (killed and resumed),
`shards verify` / `inspect` there, training reading its shards from s3://, and shards
on gs://. The production code is told nothing: the endpoints reach s3fs and gcsfs through
the environment (devtools/objectstores.py)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from devtools import mediagen
from devtools.localserve import LocalServer
from devtools.objectstores import LoopbackGCS, LoopbackS3
from shards import layout, manifest, reader
from tests.helpers import (
    ROOT,
    real_output,
    recorder,
    steps_of,
    tiny_config,
    write_config,
    write_shards,
)

DURATION_S = 11.0  # two 10 s windows of 5 s segments (test config): 1 full, 1 partial


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    kept = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in kept.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _forget_clients() -> None:
    """fsspec keeps one filesystem per set of arguments: drop those of another endpoint."""
    import gcsfs
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    gcsfs.GCSFileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3() -> Iterator[LoopbackS3]:
    with LoopbackS3() as server, environ(server.env):
        _forget_clients()
        yield server
    _forget_clients()


@pytest.fixture(scope="module")
def gcs() -> Iterator[LoopbackGCS]:
    with LoopbackGCS() as server, environ(server.env):
        _forget_clients()
        yield server
    _forget_clients()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[LocalServer, Path]]:
    """Eight copies of one narrated video with its auto-captions, served on loopback."""
    root = tmp_path_factory.mktemp("site")
    mediagen.make_video(root / "v.mp4", DURATION_S, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(root / "v.en.vtt", mediagen.make_words(DURATION_S, seed=1))
    for i in range(8):
        shutil.copy(root / "v.mp4", root / f"v{i}.mp4")
    with LocalServer(root) as server:
        yield server, root


def put_input_list(server: LocalServer, url: str, n: int) -> None:
    rows = [f"{server.url(f'v{i}.mp4')},{server.url('v.en.vtt')}" for i in range(n)]
    with fsspec.open(url, "w") as f:
        f.write("url,captions\n" + "\n".join(rows) + "\n")


def ingest(config: Path, inputs: str, out: str) -> list[str]:
    return [
        sys.executable, "-m", "ingest", "run", "--config", str(config),
        "--input", inputs, "--output", out, "--direct_num_workers=2",
    ]  # fmt: skip


def shards_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "shards", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def sample_keys(out: str) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for url in layout.expand(out):
        seen.update(s.key for s in reader.iter_samples(url))
    return seen


def listing(fs, pattern: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.glob(pattern))


@pytest.mark.slow  # two Beam runs
def test_a_list_on_s3_is_ingested_to_s3_and_verify_and_inspect_read_the_shards_there(
    s3, site, tmp_path
):
    server, _ = site
    bucket = s3.make_bucket("ingest")
    put_input_list(server, f"{bucket}/lists/in.csv", 4)
    config = write_config(tmp_path / "pipelines.yaml")
    out = f"{bucket}/shards"
    done = subprocess.run(
        ingest(config, f"{bucket}/lists/in.csv", out),
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok 4, skipped 0, failed 0" in done.stdout, done.stdout
    rows = manifest.load_state(out)
    assert sorted(r.status for r in rows.values()) == ["ok"] * 4
    fs, root = layout.open_output(out)
    assert fs.exists(layout.manifest_path(root)), "the manifest is on s3"
    assert not fs.exists(f"{root}/_tmp") or not fs.find(f"{root}/_tmp"), "nothing left in _tmp"
    keys = sample_keys(out)
    assert sum(keys.values()) == len(keys) == sum(r.windows for r in rows.values())

    verified = shards_cli("verify", out, "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["samples"] == len(keys) and report["manifest"]
    inspected = shards_cli("inspect", out, "--json")
    assert inspected.returncode == 0, inspected.stderr
    totals = json.loads(inspected.stdout)["totals"]
    assert totals["samples"] == len(keys) and totals["videos"] == 4
    assert totals["shards"] == len(layout.expand(out))


@pytest.mark.slow  # a Beam run killed mid-way, then the resumed run
def test_an_ingest_to_s3_killed_mid_run_resumes_without_losing_doubling_or_rewriting(
    s3, site, tmp_path
):
    server, _ = site
    bucket = s3.make_bucket("killed")
    put_input_list(server, f"{bucket}/in.csv", 8)
    # groups of 2 videos, a pause before each download: the run lands shards for a while
    config = write_config(tmp_path / "pipelines.yaml", sleep_interval_s=1.0)
    out = f"{bucket}/shards"
    fs, root = layout.open_output(out)
    cmd = ingest(config, f"{bucket}/in.csv", out)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not listing(fs, f"{root}/*.tar") and proc.poll() is None:
            assert time.monotonic() < deadline, "no shard landed in 300 s"
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    landed = {p: fs.cat(p) for p in listing(fs, f"{root}/*.tar")}
    assert 0 < len(landed) < 4, "killed after some shards and before all"
    for url in landed:  # what is visible is whole
        assert list(reader.iter_samples(f"s3://{url}"))
    before = {r.video_id for r in manifest.load_state(out).values()}

    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    fs.invalidate_cache()  # this process listed the output before the resumed run wrote to it
    rows = manifest.load_state(out)
    assert len(rows) == 8 and all(r.status == "ok" for r in rows.values())
    assert before < set(rows), "the resumed run did only what was left"
    keys = sample_keys(out)
    assert max(keys.values()) == 1, "no window twice"
    assert len(keys) == sum(r.windows for r in rows.values()), "none lost"
    assert {p: fs.cat(p) for p in landed} == landed, "landed shards were not rewritten"
    assert not listing(fs, f"{root}/_tmp/**"), "the resumed run cleared the killed run's partials"
    assert shards_cli("verify", out).returncode == 0


def test_training_reads_its_shards_from_s3(s3, tmp_path, cli_in_process):
    from model.train.cli import main

    bucket = s3.make_bucket("train")
    train = write_shards(f"{bucket}/train", 2, prefix="train")
    write_shards(f"{bucket}/val", 1, prefix="val")
    out = tmp_path / "run"
    config = tiny_config(out, callbacks=[recorder(out / "keys")])
    cli = main(
        [
            "fit", "--config", str(config), "--data.train_shards", f"{bucket}/train/",
            "--data.val_shards", f"{bucket}/val/", "--data.steps_per_epoch", "2",
            "--trainer.max_steps", "2",
        ]
    )  # fmt: skip
    assert cli.trainer.global_step == 2
    seen = [k for row in steps_of(out / "keys") for k in row["keys"]]
    assert seen and set(seen) <= set(train), "every sample came from the s3 shards"
    assert int(cli.trainer.callback_metrics["val/n"]) > 0, "validation read s3 too"


def test_shards_on_gcs_verify_and_inspect_there(gcs, tmp_path_factory):
    """Shards made by the real per-video core, uploaded to gs:// as they are (the emulator
    has no moveTo, and gcsfs spends minutes of retries before it copies instead: writing
    to gs:// is left to the S3 tests, which run the same fsspec code)."""
    real = real_output(tmp_path_factory)
    out = f"gs://{gcs.bucket}/real"
    fsspec.filesystem("gs").put(f"{real.out}/", out, recursive=True)
    done = shards_cli("verify", out, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    local = json.loads(shards_cli("verify", str(real.out), "--json").stdout)
    assert report["ok"] and report["manifest"] == f"{out}/manifest.parquet"
    assert (report["shards"], report["samples"]) == (local["shards"], local["samples"]) != (0, 0)
    inspected = shards_cli("inspect", out, "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["manifest"]["statuses"] == {
        "ok": 3, "skipped": 1, "failed": 1
    }  # fmt: skip
