"""LocalServer: a real HTTP server on loopback, exercised with real HTTP clients."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.localserve import BOT_CHECK, LocalServer

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "sub dir").mkdir(parents=True)
    (site / "clip.mp4").write_bytes(PAYLOAD)
    (site / "clip.en.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhi\n")
    (site / "page.html").write_text("<html></html>")
    (site / "info.json").write_text("{}")
    (site / "sub dir" / "a b.vtt").write_text("WEBVTT\n")
    (tmp_path / "secret.txt").write_text("outside root")
    return site


@pytest.fixture
def server(root: Path):
    with LocalServer(root) as srv:
        yield srv


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw_get(server: LocalServer, path: str) -> int:
    """Send a request line exactly as given (clients would normalize `..` away)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def test_binds_to_a_free_loopback_port(server: LocalServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert int(server.base_url.rsplit(":", 1)[1]) > 0
    assert server.url("clip.mp4") == server.base_url + "/clip.mp4"
    assert server.url("sub dir/a b.vtt").endswith("/sub%20dir/a%20b.vtt")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_refuses_non_loopback_hosts(root: Path, host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LocalServer(root, host=host)


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("clip.mp4", "video/mp4"),
        ("clip.en.vtt", "text/vtt; charset=utf-8"),
        ("page.html", "text/html; charset=utf-8"),
        ("info.json", "application/json"),
    ],
)
def test_serves_files_with_their_content_type(server: LocalServer, root: Path, name, ctype) -> None:
    status, headers, body = get(server.url(name))
    assert status == 200
    assert headers["Content-Type"] == ctype
    assert body == (root / name).read_bytes()
    assert headers["Content-Length"] == str(len(body))
    assert headers["Accept-Ranges"] == "bytes"


def test_quoted_names_with_spaces_are_served(server: LocalServer) -> None:
    status, _, body = get(server.url("sub dir/a b.vtt"))
    assert (status, body) == (200, b"WEBVTT\n")


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=10-19", 10, 19), ("bytes=10240-", None, None), ("bytes=10000-", 10000, 10239),
     ("bytes=-16", 10224, 10239), ("bytes=100-999999", 100, 10239)],
)  # fmt: skip
def test_range_requests_return_exactly_the_asked_bytes(server: LocalServer, header, first, last):
    status, headers, body = get(server.url("clip.mp4"), {"Range": header})
    if first is None:  # starts at the end of the file: unsatisfiable
        assert status == 416
        assert headers["Content-Range"] == f"bytes */{len(PAYLOAD)}"
        return
    assert status == 206
    assert body == PAYLOAD[first : last + 1]
    assert headers["Content-Range"] == f"bytes {first}-{last}/{len(PAYLOAD)}"


def test_malformed_or_multi_ranges_get_the_whole_file(server: LocalServer) -> None:
    for header in ("bytes=0-1,5-6", "items=0-3", "bytes=-"):
        status, _, body = get(server.url("clip.mp4"), {"Range": header})
        assert (status, body) == (200, PAYLOAD), header


def test_head_sends_headers_without_a_body(server: LocalServer) -> None:
    req = urllib.request.Request(server.url("clip.mp4"), method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(PAYLOAD))
        assert resp.read() == b""


def test_fail_answers_the_next_n_requests_then_recovers(server: LocalServer) -> None:
    server.fail("/clip.mp4", 429, times=2, retry_after=7)
    answers = [get(server.url("clip.mp4")) for _ in range(3)]
    assert [a[0] for a in answers] == [429, 429, 200]
    assert answers[0][1]["Retry-After"] == "7"
    assert answers[2][2] == PAYLOAD
    assert server.requests("clip.mp4") == 3
    assert server.requests("clip.en.vtt") == 0


def test_push_back_answers_any_page_in_the_order_armed_then_recovers(server: LocalServer) -> None:
    server.push_back(429, times=2)
    server.push_back(401, times=1, reason=BOT_CHECK)
    assert get(server.url("clip.mp4"))[0] == 200  # not a page: not pushed back
    seen = []
    for _ in range(4):
        try:
            with urllib.request.urlopen(server.url("page.html"), timeout=5) as resp:
                seen.append((resp.status, resp.reason))
        except urllib.error.HTTPError as exc:
            seen.append((exc.code, exc.reason))
    assert seen == [
        (429, "Too Many Requests"),
        (429, "Too Many Requests"),
        (401, BOT_CHECK),
        (200, "OK"),
    ]


def test_request_times_and_headers_are_recorded_per_path(server: LocalServer) -> None:
    get(server.url("clip.mp4"), {"Cookie": "SID=a"})
    get(server.url("page.html"))
    get(server.url("clip.mp4"))
    assert server.headers("clip.mp4", "cookie") == ["SID=a", None]
    times = server.times("clip.mp4")
    assert len(times) == 2 and times == sorted(times)
    assert server.times() == sorted([*times, *server.times("page.html")])


@pytest.mark.parametrize("status", [404, 503])
def test_fail_works_for_other_statuses_and_is_per_path(server: LocalServer, status: int) -> None:
    server.fail("clip.mp4", status)
    assert get(server.url("clip.en.vtt"))[0] == 200
    assert get(server.url("clip.mp4"))[0] == status
    assert get(server.url("clip.mp4"))[0] == 200


def test_missing_files_are_404_and_counted(server: LocalServer) -> None:
    assert get(server.url("nope.mp4"))[0] == 404
    assert get(server.base_url + "/nope.mp4?x=1")[0] == 404
    assert server.requests("nope.mp4") == 2


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/sub%20dir/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"],
)
def test_paths_escaping_root_are_refused(server: LocalServer, path: str) -> None:
    assert raw_get(server, path) == 403


def test_symlinks_pointing_outside_root_are_refused(server: LocalServer, root: Path) -> None:
    os.symlink(root.parent / "secret.txt", root / "link.txt")
    assert get(server.url("link.txt"))[0] == 403


def test_logs_through_logging_not_stderr(server: LocalServer, caplog, capfd) -> None:
    with caplog.at_level(logging.DEBUG, logger="devtools.localserve"):
        get(server.url("clip.en.vtt"))
    assert any("clip.en.vtt" in r.getMessage() for r in caplog.records)
    assert capfd.readouterr().err == ""


def test_stop_closes_the_port(root: Path) -> None:
    srv = LocalServer(root).start()
    host, port = srv.base_url.removeprefix("http://").split(":")
    srv.stop()
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
        pass
    srv.stop()  # idempotent
