"""A loopback HTTP file server for tests and the offline demo.

It serves the files under one folder on 127.0.0.1 with what yt-dlp needs from a
real host: single-range requests (``Range: bytes=a-b``), HEAD, a Content-Type per
extension, and injected failures (``fail("x.mp4", 429, times=2)``) so tests can
prove that retries happen. Like a video site under pressure, it can also push back on
any page for a while (``push_back(429, times=3)``, then ``push_back(401, times=5,
reason=BOT_CHECK)``: yt-dlp carries the reason phrase into its error, as it carries
YouTube's sentence from the player response), and it records when each request came
and its headers (``times``, ``headers``) so tests can check pacing and cookies. It never binds to a non-loopback address and refuses
any path that resolves outside its root (``..``, absolute paths, symlinks).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".webm": "video/webm",
    ".vtt": "text/vtt; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".json": "application/json",
    ".json3": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
BOT_CHECK = "Sign in to confirm you're not a bot"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


@dataclass(slots=True)
class _Failure:
    status: int
    remaining: int
    retry_after: int | None
    reason: str | None = None
    suffix: str = ""  # push_back: the paths it answers end with this


def _norm(relpath: str) -> str:
    """The key a path is counted and failed under: no query, no leading slash."""
    return unquote(urlsplit(relpath).path).lstrip("/")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(first, last) inclusive for one satisfiable range; None: serve whole; False: 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # multi-range or malformed: RFC 9110 lets us ignore it
    first_s, last_s = m.groups()
    if not first_s:  # suffix range: the last N bytes
        n = int(last_s)
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else False
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    if first >= size or last < first:
        return False
    return first, last


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "MontageLocal/1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner = self.server.owner
        key = _norm(self.path)
        failure = owner._record(key, self.headers)
        if failure is not None:
            self._send_error(failure.status, failure.retry_after, failure.reason)
            return
        path = owner._resolve(key)
        if path is None:
            self._send_error(HTTPStatus.FORBIDDEN)
            return
        if not path.is_file():
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        rng = _parse_range(self.headers.get("Range"), size)
        if rng is False:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = rng if rng else (0, size - 1)
        length = last - first + 1 if size else 0
        self.send_response(HTTPStatus.PARTIAL_CONTENT if rng else HTTPStatus.OK)
        ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if not body or not length:
            return
        with path.open("rb") as fh:
            fh.seek(first)
            try:
                shutil.copyfileobj(_Limited(fh, length), self.wfile, _CHUNK)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("client closed the connection during %s", key)

    def _send_error(
        self, status: int, retry_after: int | None = None, reason: str | None = None
    ) -> None:
        reason = reason or HTTPStatus(status).phrase
        payload = f"{status} {reason}\n".encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class _Limited:
    """A read-only view of at most `n` bytes of a file object."""

    def __init__(self, fh, n: int) -> None:
        self._fh, self._left = fh, n

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = self._fh.read(size)
        self._left -= len(data)
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer


class LocalServer:
    """A threaded HTTP server on loopback serving the files under `root`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"LocalServer binds to loopback only, got {host!r}")
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(self.root)
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._failures: dict[str, _Failure] = {}
        self._pushback: list[_Failure] = []  # armed by push_back, answered in order
        self._times: dict[str, list[float]] = {}
        self._headers: dict[str, list[dict[str, str]]] = {}
        self._counts: Counter[str] = Counter()
        self._logins: dict[str, set[str]] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LocalServer is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, relpath: str) -> str:
        """The URL of a file under root (path segments are percent-quoted)."""
        return f"{self.base_url}/{quote(relpath.lstrip('/'))}"

    def fail(
        self, relpath: str, status: int, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer the next `times` requests of `relpath` with `status`."""
        if times < 1:
            raise ValueError("times must be >= 1")
        HTTPStatus(status)  # ValueError on a status the stdlib does not know
        with self._lock:
            self._failures[_norm(relpath)] = _Failure(status, times, retry_after)

    def push_back(
        self,
        status: int,
        times: int,
        suffix: str = ".html",
        reason: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` requests of any path ending in `suffix` with `status`
        (and `reason` as its phrase), after the push-backs armed before this one."""
        if times < 1:
            raise ValueError("times must be >= 1")
        HTTPStatus(status)
        with self._lock:
            self._pushback.append(_Failure(status, times, retry_after, reason, suffix))

    def times(self, relpath: str | None = None) -> list[float]:
        """When (time.monotonic) each request of `relpath` (None: of any path) came."""
        with self._lock:
            if relpath is not None:
                return list(self._times.get(_norm(relpath), ()))
            return sorted(t for ts in self._times.values() for t in ts)

    def headers(self, relpath: str, name: str) -> list[str | None]:
        """Header `name` of each request of `relpath`, in order (None where absent)."""
        with self._lock:
            return [h.get(name.lower()) for h in self._headers.get(_norm(relpath), ())]

    def requests(self, relpath: str) -> int:
        """How many requests (GET or HEAD, failed or not) `relpath` received."""
        with self._lock:
            return self._counts[_norm(relpath)]

    def logins(self, relpath: str) -> set[str]:
        """The ``user:password`` pairs that requests of `relpath` sent (HTTP Basic)."""
        with self._lock:
            return set(self._logins.get(_norm(relpath), ()))

    def start(self) -> LocalServer:
        if self._httpd is not None:
            return self
        httpd = _Server((self._host, self._port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        log.debug("serving %s at %s", self.root, self.base_url)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- called from handler threads -------------------------------------------------

    def _record(self, key: str, headers: Message | None = None) -> _Failure | None:
        """Count a request; return the failure to answer with, if one is armed."""
        now = time.monotonic()
        fields = {k.lower(): v for k, v in (headers or {}).items()}
        authorization = fields.get("authorization")
        login = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                login = base64.b64decode(authorization[6:].strip()).decode("utf-8", "replace")
            except ValueError:  # not base64: counted, not recorded
                login = None
        with self._lock:
            self._counts[key] += 1
            self._times.setdefault(key, []).append(now)
            self._headers.setdefault(key, []).append(fields)
            if login is not None:
                self._logins.setdefault(key, set()).add(login)
            failure = self._failures.get(key)
            if failure is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[key]
                return failure
            if self._pushback and key.endswith(self._pushback[0].suffix):
                failure = self._pushback[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._pushback.pop(0)
                return failure
            return None

    def _resolve(self, key: str) -> Path | None:
        """The file for a request path, or None when it would leave root."""
        if "\x00" in key or any(part == ".." for part in key.split("/")):
            return None
        path = (self.root / key).resolve()
        return path if path.is_relative_to(self.root) else None
