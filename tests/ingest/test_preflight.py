"""ingest.preflight: each check on the real thing it checks (files, sockets on loopback,
yt-dlp itself), ok when the piece is there and naming it with a fix when it is not."""

from __future__ import annotations

import datetime
import socket

import pytest

from ingest import config, preflight


def test_a_readable_cookies_file_is_counted_and_a_bad_one_is_named(tmp_path):
    good = tmp_path / "cookies.txt"
    good.write_text(
        "# Netscape HTTP Cookie File\n"
        ".youtube.com\tTRUE\t/\tTRUE\t2000000000\tPREF\tf1=1\n"
        ".youtube.com\tTRUE\t/\tTRUE\t2000000000\tSID\tabc\n"
    )
    check = preflight.check_cookies(str(good))
    assert check.status == "ok" and "2 cookies" in check.detail
    bad = tmp_path / "notes.txt"
    bad.write_text("these are not cookies\n")
    for path in (bad, tmp_path / "absent.txt"):
        check = preflight.check_cookies(str(path))
        assert check.failed and str(path) in check.detail and "cookies_file" in check.fix
    assert preflight.check_cookies(None).status == "ok"


def test_a_proxy_that_listens_on_loopback_is_ok_and_a_closed_port_is_named():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check = preflight.check_proxy(f"socks5://user:secret@127.0.0.1:{port}")
        assert check.status == "ok", check
        assert "secret" not in check.detail, "a proxy's credentials are not shown"
    check = preflight.check_proxy(f"http://127.0.0.1:{port}", timeout_s=2)
    assert check.failed and f"127.0.0.1:{port}" in check.detail and "proxy" in check.fix
    assert preflight.check_proxy("http://").failed


def test_each_proxy_of_a_pool_is_checked_and_a_dead_one_only_warns_while_another_answers(
    tmp_path,
):
    with socket.socket() as server, socket.socket() as closed:
        server.bind(("127.0.0.1", 0))
        server.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        live = f"http://127.0.0.1:{server.getsockname()[1]}"
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        pool = config.DownloadConfig(proxies=(live, dead))
        checks = preflight.proxy_checks(pool)
        assert [c.status for c in checks] == ["ok", "warn"], checks
        assert dead.rsplit(":", 1)[1] in checks[1].detail and "rotates" in checks[1].fix
        listed = tmp_path / "proxies.txt"
        listed.write_text(f"# the pool\n{dead}\n")
        alone = preflight.proxy_checks(config.DownloadConfig(proxies_file=str(listed)))
        assert [c.status for c in alone] == ["missing"], "no proxy of the pool answers"
    absent = preflight.proxy_checks(config.DownloadConfig(proxies_file=str(tmp_path / "no")))
    assert len(absent) == 1 and absent[0].failed and "proxies_file" in absent[0].detail
    assert preflight.proxy_checks(config.DownloadConfig()) == []


def test_the_age_of_yt_dlp_warns_but_does_not_fail():
    from yt_dlp.version import __version__

    released = datetime.date(*(int(x) for x in __version__.split(".")[:3]))
    fresh = preflight.check_ytdlp_version(released + datetime.timedelta(days=10))
    assert fresh.status == "ok" and "10 days old" in fresh.detail
    stale = preflight.check_ytdlp_version(released + datetime.timedelta(days=400))
    assert stale.status == "warn" and not stale.failed and "pyproject.toml" in stale.fix


def test_local_and_installed_filesystems_are_ok_and_an_unused_missing_one_is_optional():
    assert preflight.check_filesystem("file").status == "ok"
    assert preflight.check_filesystem("s3").status == "ok"  # s3fs is in the test environment
    unknown = preflight.check_filesystem("nosuchfs")
    assert unknown.failed and unknown.name == "nosuchfs://"


@pytest.mark.parametrize(
    ("line", "youtube"),
    [
        ("dQw4w9WgXcQ", True),
        ("https://youtu.be/dQw4w9WgXcQ", True),
        ("https://www.youtube.com/shorts/dQw4w9WgXcQ", True),
        ("http://127.0.0.1:8000/a.mp4", False),
        ("not a url at all", False),
        ("", False),
    ],
)
def test_a_youtube_input_line_is_told_from_others(line, youtube):
    assert preflight.is_youtube(line) is youtube


def test_yt_dlp_accepts_this_environment_and_refuses_a_runtime_that_is_not_there(tmp_path):
    full = {c.name: c for c in preflight.check_ytdlp(config.DownloadConfig())}
    assert [c.status for c in full.values()] == ["ok"] * 3 + ["optional"], full
    assert "deno" in full["js runtime"].detail and "yt-dlp-ejs" in full["challenge solver"].detail
    absent = str(tmp_path / "deno")
    cfg = config.DownloadConfig(ytdlp={"js_runtimes": {"deno": {"path": absent}}})
    broken = {c.name: c for c in preflight.check_ytdlp(cfg)}
    assert broken["js runtime"].failed and absent in broken["js runtime"].detail
    assert broken["challenge solver"].failed
    assert broken["impersonation"].status == "ok"


def test_download_checks_ask_yt_dlp_only_for_youtube_inputs(tmp_path):
    cfg = config.DownloadConfig(ytdlp={"js_runtimes": {"deno": {"path": str(tmp_path / "x")}}})
    local = preflight.download_checks(cfg, youtube=False)
    assert [c.name for c in local] == ["ffmpeg", "ffprobe"] and not any(c.failed for c in local)
    youtube = preflight.download_checks(cfg, youtube=True)
    assert [c.name for c in youtube if c.failed] == ["js runtime", "challenge solver"]


def test_a_failed_check_is_one_line_with_its_fix():
    check = preflight.Check("runner DataflowRunner", "missing", "no client", "pip install x")
    assert check.line() == "runner DataflowRunner: no client; fix: pip install x"
    with pytest.raises(AssertionError):
        preflight.Check("x", "broken", "")
