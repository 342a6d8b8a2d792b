"""`python -m ingest run` as a user runs it: a process whose exit status is the run's result."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import mediagen
from devtools.localserve import LocalServer
from tests.helpers import without_modules, write_config

DURATION_S = 11.0  # two 5 s segments

REPO = Path(__file__).resolve().parents[2]
RUNS = 20  # the abort this guards against came about once in 20 runs


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One good video, a 404, a truncated mp4 and a hostile id, served on loopback."""
    root = tmp_path_factory.mktemp("cli")
    media = root / "media"
    media.mkdir()
    mediagen.make_video(media / "good.mp4", DURATION_S, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(media / "good.en.vtt", mediagen.make_words(DURATION_S, seed=1))
    mediagen.truncate(media / "good.mp4", media / "trunc.mp4")
    shutil.copy(media / "good.en.vtt", media / "trunc.en.vtt")
    with LocalServer(media) as server:
        urls = [server.url(n) for n in ("good.mp4", "missing.mp4", "trunc.mp4")]
        (root / "in.txt").write_text("\n".join([*urls, "'; rm -rf / #"]) + "\n")
        yield root, write_config(root / "pipelines.yaml")


def run(root: Path, config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ingest", "run", "--config", str(config)]
    cmd += ["--input", str(root / "in.txt"), "--output", str(out), *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def lines(done: subprocess.CompletedProcess) -> list[str]:
    """What a person sees: the bar redraws in place (\r), each redraw is one more line."""
    return (done.stdout + done.stderr).replace("\r", "\n").splitlines()


def test_a_4_video_run_shows_a_bar_and_a_summary_and_runner_logs_only_with_v(served, tmp_path):
    root, config = served
    quiet = run(root, config, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    seen = lines(quiet)
    assert len(seen) < 40, "\n".join(seen)
    assert any(line.startswith("videos: 100%") and "4/4" in line for line in seen), seen
    assert "4 videos" in quiet.stdout and "failed:invalid_input" in quiet.stdout
    assert not [line for line in seen if "apache_beam" in line or " INFO " in line], seen
    loud = run(root, config, tmp_path / "loud", "-v")
    assert loud.returncode == 0
    assert "apache_beam" in loud.stderr, "-v shows the runner's own logs"
    assert len(lines(loud)) > len(seen)


@pytest.mark.slow
def test_every_run_of_a_mixed_list_exits_0_after_writing_its_rows(served, tmp_path):
    root, config = served
    codes = []
    for i in range(RUNS):
        done = run(root, config, tmp_path / f"out{i}")
        codes.append(done.returncode)
        assert "4 videos" in done.stdout, done.stdout + done.stderr[-2000:]
        assert len(lines(done)) < 40
    assert codes == [0] * RUNS, f"exit statuses {codes}"


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_an_input_list_that_is_missing_or_empty_stops_the_run_in_one_line(
    tmp_path, capsys, content
):
    from ingest.__main__ import main

    listed = tmp_path / "videos.txt"
    if content is not None:
        listed.write_text(content)
    assert main(["run", "--input", str(listed), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(listed) in err[0] and err[0].startswith("error: "), err
    assert not (tmp_path / "out").exists()


# --- what `run` checks before it starts ---


def run_without(tmp_path: Path, block: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ingest", "run", *args]
    env = without_modules(tmp_path, *block)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_profile_whose_runner_or_filesystem_is_missing_fails_before_launch(tmp_path):
    listed = tmp_path / "in.txt"
    listed.write_text("dQw4w9WgXcQ\n")
    dataflow = ["--profile", "dataflow", "--project", "p", "--region", "r"]
    dataflow += ["--temp_location", "gs://b/tmp", "--sdk_container_image", "img"]
    done = run_without(
        tmp_path,
        ("google.cloud.dataflow", "gcsfs"),
        "--input",
        str(listed),
        "--output",
        "gs://bucket/shards",
        *dataflow,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("pip install 'montage[gcp]'" in line for line in errors), errors
    assert any("DataflowRunner" in line for line in errors) and any("gs://" in e for e in errors)
    assert "montage ingest: run" not in done.stderr, "nothing was launched"
    done = run_without(
        tmp_path, ("s3fs",), "--input", str(listed), "--output", "s3://bucket/shards"
    )
    assert done.returncode == 2 and "montage[aws]" in done.stderr, done.stderr


def test_a_youtube_run_that_cannot_work_is_refused_and_a_loopback_run_is_not(served, tmp_path):
    root, config = served
    broken = "ingest.download.ytdlp.js_runtimes={deno: {path: /nonexistent/deno}}"
    youtube = tmp_path / "youtube.txt"
    youtube.write_text("dQw4w9WgXcQ\n")
    cmd = [sys.executable, "-m", "ingest", "run", "--config", str(config), "--set", broken]
    out = tmp_path / "yt"
    done = subprocess.run(
        [*cmd, "--input", str(youtube), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "error: js runtime: deno: not found (/nonexistent/deno)" in done.stderr
    assert "ingest doctor" in done.stderr and not out.exists()
    local = tmp_path / "local.txt"
    local.write_text((root / "in.txt").read_text().splitlines()[1] + "\n")  # a 404 on loopback
    done = subprocess.run(
        [*cmd, "--input", str(local), "--output", str(tmp_path / "local")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 videos" in done.stdout and "failed:unavailable" in done.stdout, done.stdout
