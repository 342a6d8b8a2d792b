"""`python -m shards`: the four commands, and bad input as one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shards import layout
from shards.cli.locate import locate
from shards.cli.main import main
from shards.cli.sample import clock
from shards.cli.show import find_sample
from tests.helpers import (
    RealOutput,
    read_members,
    real_output,
    rewrite_manifest,
    write_members,
)

REPO = Path(__file__).resolve().parents[3]
COMMANDS = ("inspect", "verify", "show", "sample")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealOutput:
    return real_output(tmp_path_factory)


def run(command: str, path: Path | str, tmp_path: Path, *extra: str) -> int:
    args = [command, str(path)]
    if command == "show":
        args += ["--index", "0", "--out", str(tmp_path / "show.png")]
    elif command in ("inspect", "verify"):
        args += ["-q"]
    return main([*args, *extra])


def assert_one_line_error(capsys, *expected: str) -> str:
    """No traceback; each expected piece on one line (stderr, or verify's report on stdout)."""
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    for piece in expected:
        assert any(piece in line for line in text.splitlines()), (piece, text)
    return captured.err


# --- bad input ---


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_path_is_one_line_and_exit_1(command, tmp_path, capsys):
    assert run(command, tmp_path / "no-such.tar", tmp_path) == 1
    err = assert_one_line_error(capsys, "no such file")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "spec,expected",
    [
        ("empty", "folder holds no shards"),
        ("empty/*.tar", "no shards match"),
        ("empty/shard-{000..002}.tar", "none of the 3 shards exists"),
    ],
)
def test_a_folder_or_pattern_with_no_shards_is_one_line_and_exit_1(
    command, spec, expected, tmp_path, capsys
):
    (tmp_path / "empty").mkdir()
    assert run(command, f"{tmp_path}/{spec}", tmp_path) == 1
    err = assert_one_line_error(capsys, expected)
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_tar(command, tmp_path, capsys):
    bogus = tmp_path / "bogus.tar"
    bogus.write_text("just some text, certainly not a tar archive\n" * 30)
    assert run(command, bogus, tmp_path) == 1
    assert_one_line_error(capsys, "bogus.tar", "not a tar")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_truncated_tar(command, real, tmp_path, capsys):
    cut = tmp_path / "cut.tar"
    data = real.shards[0].read_bytes()
    cut.write_bytes(data[:400])  # inside the first member
    assert run(command, cut, tmp_path) == 1
    assert_one_line_error(capsys, "cut.tar", "truncated")


@pytest.mark.parametrize("command", ["verify", "show"])
def test_a_sample_with_missing_members(command, real, tmp_path, capsys):
    shard = tmp_path / "gap.tar"
    write_members(shard, [m for m in read_members(real.shards[0]) if m[0] != "speech_w0000.01.jpg"])
    assert run(command, shard, tmp_path) == 1
    assert_one_line_error(capsys, "speech_w0000", ".01.jpg missing")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_json_that_does_not_parse(command, real, tmp_path, capsys):
    shard = tmp_path / "badjson.tar"
    members = read_members(real.shards[0])
    members = [(n, b'{"schema": 1,' if n == "speech_w0000.json" else d) for n, d in members]
    write_members(shard, members)
    assert run(command, shard, tmp_path) == 1
    assert_one_line_error(capsys, "speech_w0000", "json does not parse")


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_manifest_that_does_not_read(command, real, tmp_path, capsys):
    out = Path(shutil.copytree(real.out, tmp_path / "out"))
    (out / layout.MANIFEST_NAME).write_bytes(b"PAR1 not really parquet")
    assert run(command, out, tmp_path) == 1
    assert_one_line_error(capsys, "manifest does not read")


def test_a_manifest_that_does_not_match(real, tmp_path, capsys):
    out = Path(shutil.copytree(real.out, tmp_path / "out"))
    rewrite_manifest(out, lambda rows: [r for r in rows if r.video_id != "manual"])
    (out / "shard-test-000.tar").unlink()
    assert run("verify", out, tmp_path) == 1
    assert_one_line_error(
        capsys,
        "shard-test-002.tar: manual_w0000: video manual has no manifest row",
        "manifest: speech: row is ok but names missing shards ['shard-test-000.tar']",
        "; 2 problems",
    )


def test_malformed_command_lines_exit_2(real, tmp_path, capsys):
    for argv in (
        [],
        ["frobnicate", str(real.out)],
        ["show", str(real.out), "--out", str(tmp_path / "x.png")],  # neither --key nor --index
        ["show", str(real.out), "--key", "a", "--index", "0", "--out", "x.png"],
        ["sample", str(real.out), "-n", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    assert "Traceback" not in capsys.readouterr().err


def test_an_unwritable_out_is_one_line(real, tmp_path, capsys):
    code = main(["show", str(real.out), "--index", "0", "--out", str(tmp_path / "no" / "x.png")])
    assert code == 1
    assert_one_line_error(capsys, "No such file or directory")


# --- nothing is ever extracted ---


def test_dotdot_member_names_do_no_harm(real, tmp_path, monkeypatch, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    shard = work / "evil.tar"
    members = read_members(real.shards[0])
    evil = [
        ("../../escaped.json", b'{"schema": 1}'),
        ("../../escaped.00.jpg", members[1][1]),
        ("/tmp/absolute_escape.json", b"{}"),
    ]
    write_members(shard, evil + members)
    monkeypatch.chdir(work)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    png = work / "show.png"
    assert main(["verify", str(shard), "-q"]) == 1
    assert "../../escaped: key has characters outside" in capsys.readouterr().out
    assert main(["inspect", str(shard), "-q"]) == 1
    assert main(["sample", str(shard), "-n", "5"]) == 1
    assert main(["show", str(shard), "--key", "speech_w0000", "--out", str(png)]) == 0
    capsys.readouterr()
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert after == sorted([*before, str(png)])
    assert not (tmp_path / "escaped.json").exists()
    assert not Path("/tmp/absolute_escape.json").exists()


# --- the commands doing their job ---


def test_sample_prints_every_word_with_its_time(real, capsys):
    assert main(["sample", str(real.out), "-n", "2"]) == 0
    out = capsys.readouterr().out
    for key in ("speech_w0000", "speech_w0001"):
        _, sample = find_sample(locate(str(real.out)), key=key)
        assert f"{key}  {sample.meta.title}" in out
        for w in sample.meta.words:
            assert f"{clock(w.start_ms)} {w.text}" in out
    assert "silent_w0000" not in out  # only two


def test_sample_with_a_seed_is_reproducible_and_start_skips(real, capsys):
    main(["sample", str(real.out), "-n", "2", "--seed", "7"])
    first = capsys.readouterr().out
    main(["sample", str(real.out), "-n", "2", "--seed", "7"])
    assert capsys.readouterr().out == first
    main(["sample", str(real.out), "-n", "1", "--start", "4"])
    assert capsys.readouterr().out.startswith("manual_w0001")
    assert main(["sample", str(real.out), "--start", "9"]) == 1
    assert "no samples from position 9 on" in capsys.readouterr().err


def test_clock_formats_minutes_and_hours():
    assert clock(0) == "0:00.0"
    assert clock(65_432) == "1:05.4"
    assert clock(3_725_049) == "1:02:05.0"


def test_python_dash_m_and_the_console_script_run(real, tmp_path):
    shard = real.shards[0]
    alone = tmp_path / shard.name  # no manifest beside it
    shutil.copy(shard, alone)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "shards", "sample", str(alone), "-n", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("speech_w0000")
    script = Path(sys.executable).parent / "montage-shards"
    if not script.exists():
        pytest.skip("montage-shards is not installed in this environment")
    done = subprocess.run(
        [str(script), "verify", str(alone)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "manifest: none beside the shards" in done.stdout and "all whole" in done.stdout


def test_shards_made_by_the_pipeline_cli_verify_and_inspect(tmp_path, capsys):
    """`python -m ingest run` on served media, then these tools on its output."""
    from devtools import mediagen
    from devtools.localserve import LocalServer
    from ingest import __main__ as ingest_cli
    from tests.helpers import write_config

    site = tmp_path / "site"
    site.mkdir()
    mediagen.make_video(site / "a.mp4", 11, audio="speech", width=320, height=180)
    mediagen.write_auto_vtt(site / "a.en.vtt", mediagen.make_words(11, seed=4))
    with LocalServer(site) as srv:
        lines = [
            "url,id,captions",
            f"{srv.base_url}/a.mp4,,{srv.base_url}/a.en.vtt",
            f"{srv.base_url}/missing.mp4,,{srv.base_url}/a.en.vtt",
        ]
        (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
        out = tmp_path / "out"
        args = ["run", "--profile", "local", "--config", str(write_config(tmp_path / "p.yaml"))]
        args += ["--input", str(tmp_path / "in.csv"), "--output", str(out)]
        assert ingest_cli.main([*args, "--direct_num_workers=1"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "-q"]) == 0
    assert "all whole" in capsys.readouterr().out
    assert main(["inspect", str(out), "-q", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["samples"] == 1 and data["totals"]["videos"] == 1
    assert data["manifest"]["statuses"] == {"ok": 1, "failed": 1}
    assert main(["show", str(out), "--index", "0", "--out", str(tmp_path / "p.png")]) == 0


def test_sample_finds_the_json_wherever_it_is_among_a_samples_members(real, tmp_path, capsys):
    members = read_members(real.shards[0])
    moved = [m for m in members if not m[0].endswith(".json")]
    moved += [m for m in members if m[0].endswith(".json")]  # every json after all frames
    moved.sort(key=lambda m: m[0].split(".")[0])  # stable: keys contiguous, json last in each
    write_members(tmp_path / "late.tar", moved)
    assert main(["sample", str(tmp_path / "late.tar"), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "speech_w0000  " in out and "speech_w0001  " in out
