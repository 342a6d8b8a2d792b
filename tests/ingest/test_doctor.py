"""`python -m ingest doctor` in the full environment (exit 0) and in environments that
each miss one piece: a PATH without ffmpeg, a JavaScript runtime that is absent or too
old for yt-dlp, a Python that cannot import curl_cffi, yt-dlp-ejs, gcsfs, s3fs or
Beam's Google Cloud clients (a sitecustomize that blocks the import). Each time the
table names the piece with its fix and the exit status is 1."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import without_modules

REPO = Path(__file__).resolve().parents[2]


def doctor(
    tmp_path: Path, *args: str, block: tuple[str, ...] = (), path: str | None = None
) -> tuple[int, dict[str, str], str]:
    """Exit status, {check name: its line and fix}, and the whole output."""
    env = without_modules(tmp_path, *block)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # no solver scripts cached by earlier runs
    if path is not None:
        env["PATH"] = path
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "doctor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows: dict[str, str] = {}
    last = None
    for line in done.stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and parts[0] in ("ok", "warn", "missing", "optional"):
            name = next(n for n in KNOWN if line[11:].startswith(n))
            rows[name], last = line, name
        elif line.startswith("   ") and last:
            rows[last] += " " + line.strip()
    return done.returncode, rows, done.stdout + done.stderr


KNOWN = (
    "ffmpeg",
    "ffprobe",
    "yt-dlp",
    "js runtime",
    "challenge solver",
    "impersonation",
    "po token",
    "cookies",
    "proxy",
    "plugin dirs",
    "file://",
    "gs://",
    "s3://",
    "runner",
)


def status(rows: dict[str, str], name: str) -> str:
    return rows[name].split()[0]


def test_the_full_environment_is_ready(tmp_path):
    code, rows, out = doctor(tmp_path)
    assert code == 0, out
    assert out.splitlines()[-1] == "ready: a YouTube run can work"
    for name in ("ffmpeg", "ffprobe", "js runtime", "challenge solver", "impersonation"):
        assert status(rows, name) == "ok", rows[name]
    assert "deno" in rows["js runtime"] and "curl_cffi" in rows["impersonation"]
    assert all(status(rows, n) in ("ok", "warn", "optional") for n in rows), out


def test_a_path_without_ffmpeg_names_ffmpeg_and_ffprobe(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    code, rows, out = doctor(tmp_path, path=str(empty))
    assert code == 1, out
    for tool in ("ffmpeg", "ffprobe"):
        assert status(rows, tool) == "missing" and "apt-get install ffmpeg" in rows[tool]
    assert status(rows, "js runtime") == "ok", "yt-dlp finds the environment's own deno"
    assert "not ready: 2 missing (ffmpeg, ffprobe)" in out


def test_a_js_runtime_that_is_not_there_is_named(tmp_path):
    absent = tmp_path / "nowhere" / "deno"
    code, rows, out = doctor(
        tmp_path, "--set", f"ingest.download.ytdlp.js_runtimes={{deno: {{path: {absent}}}}}"
    )
    assert code == 1, out
    assert status(rows, "js runtime") == "missing" and str(absent) in rows["js runtime"]
    assert "fix:" in rows["js runtime"] and status(rows, "challenge solver") == "missing"


def test_a_node_older_than_yt_dlp_accepts_is_refused_with_the_version_it_needs(tmp_path):
    """A stand-in `node` that reports an old version; yt-dlp's own check refuses it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text("#!/bin/sh\necho v18.19.1\n")
    node.chmod(node.stat().st_mode | stat.S_IEXEC)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    code, rows, out = doctor(
        tmp_path, "--set", "ingest.download.ytdlp.js_runtimes={node: {}}", path=path
    )
    assert code == 1, out
    assert "node 18.19.1: yt-dlp needs 22.0.0 or newer" in rows["js runtime"], out


@pytest.mark.parametrize(
    ("module", "check", "named"),
    [
        ("curl_cffi", "impersonation", "curl_cffi"),
        ("yt_dlp_ejs", "challenge solver", "yt-dlp-ejs"),
    ],
)
def test_a_python_without_a_yt_dlp_dependency_names_it(tmp_path, module, check, named):
    code, rows, out = doctor(tmp_path, block=(module,))
    assert code == 1, out
    assert status(rows, check) == "missing" and named in rows[check], out
    others = [n for n in rows if n != check and status(rows, n) == "missing"]
    assert not others, out


def test_missing_cloud_extras_are_named_for_the_profile_and_output_that_use_them(tmp_path):
    block = ("gcsfs", "google.cloud.dataflow", "s3fs")
    code, rows, out = doctor(tmp_path, block=block)
    assert code == 0, "a local run to a local folder needs neither extra: " + out
    assert status(rows, "gs://") == "optional" and status(rows, "s3://") == "optional"
    code, rows, out = doctor(
        tmp_path, "--profile", "dataflow", "--output", "gs://bucket/shards", block=block
    )
    assert code == 1, out
    assert status(rows, "gs://") == "missing" and "montage[gcp]" in rows["gs://"]
    assert status(rows, "runner") == "missing" and "montage[gcp]" in rows["runner"]
    code, rows, out = doctor(tmp_path, "--output", "s3://bucket/shards", block=block)
    assert code == 1 and status(rows, "s3://") == "missing" and "montage[aws]" in rows["s3://"]


def test_a_cookies_file_that_cannot_be_read_is_named(tmp_path):
    absent = tmp_path / "cookies.txt"
    code, rows, out = doctor(tmp_path, "--set", f"ingest.download.cookies_file={absent}")
    assert code == 1, out
    assert status(rows, "cookies") == "missing" and str(absent) in rows["cookies"]


def test_flags_doctor_does_not_know_are_a_usage_error(tmp_path):
    code, _, out = doctor(tmp_path, "--runner=DataflowRunner")
    assert code == 2 and "unrecognized arguments" in out
    code, _, out = doctor(tmp_path, "--set", "ingest.download.ytdlp.outtmpl=x")
    assert code == 2 and "ytdlp.outtmpl: refused" in out


PROVIDER = """
from yt_dlp.extractor.youtube.pot.provider import (
    PoTokenProvider,
    PoTokenProviderRejectedRequest,
    register_provider,
)


@register_provider
class MontageProbePTP(PoTokenProvider):
    PROVIDER_VERSION = "0.1.0"
    BUG_REPORT_LOCATION = "tests/ingest/test_doctor.py"
    _SUPPORTED_CONTEXTS = None
    _SUPPORTED_CLIENTS = None

    def is_available(self):
        return True

    def _real_request_pot(self, request):
        raise PoTokenProviderRejectedRequest("a provider that only shows it was loaded")
"""


def test_a_po_token_provider_plugin_in_a_plugin_folder_is_listed(tmp_path):
    """The README's set-up: a provider package in a folder named in ytdlp.plugin_dirs."""
    package = tmp_path / "plugins" / "montage-probe" / "yt_dlp_plugins" / "extractor"
    package.mkdir(parents=True)
    (package / "getpot_montage_probe.py").write_text(PROVIDER)
    code, rows, out = doctor(tmp_path)
    assert status(rows, "po token") == "optional" and "README" in rows["po token"], out
    plugins = f"ingest.download.ytdlp.plugin_dirs=[{tmp_path / 'plugins'}]"
    code, rows, out = doctor(tmp_path, "--set", plugins)
    assert code == 0, out
    assert status(rows, "plugin dirs") == "ok"
    assert status(rows, "po token") == "ok" and "provider MontageProbe" in rows["po token"], out
    code, rows, out = doctor(tmp_path, "--set", plugins.replace("plugins]", "absent]"))
    assert code == 1 and status(rows, "plugin dirs") == "missing", out
