"""Bounds on one download attempt: a wall-clock deadline and a minimum average rate.

yt-dlp's socket timeout bounds the gaps between bytes only: a server that sends one
byte every few seconds holds a worker for as long as it likes. A `Watch` bounds the
whole attempt (the extraction, the captions and the media):

- yt-dlp calls `Watch.progress` (a progress hook) after each block it reads. Past the
  deadline, or under the minimum rate once a file has had its grace period, it raises
  `TooSlow`, which yt-dlp lets through: the download stops there.
- A block can take long to fill, so a timer also fires at the deadline and shuts the
  sockets of the responses this attempt opened (`BoundedYoutubeDL.urlopen` hands
  them to `Watch.opened`): a read blocked on one ends at once, and every request
  after that raises `TooSlow`.

The downloader records `TooSlow` as a transient network failure and retries it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import yt_dlp

log = logging.getLogger(__name__)


class TooSlow(Exception):
    """A download attempt ran past its deadline or under its minimum rate."""


def _socket(response: Any) -> socket.socket | None:
    """The socket under a response of yt-dlp's urllib handler (``.fp.fp.raw._sock``)."""
    obj = response
    for _ in range(5):
        if isinstance(obj, socket.socket):
            return obj
        obj = next(
            (v for k in ("fp", "raw", "_sock") if (v := getattr(obj, k, None)) is not None), None
        )
    return None


def _interrupt(response: Any) -> None:
    """End a read blocked on `response` in another thread: shut its socket for reading.

    urllib3's responses (yt-dlp's requests handler) do that with `shutdown()`; for the
    urllib handler's, the socket under the response is shut. Closing would not do: a
    socket with a file open on it stays open, and the read goes on.
    """
    with contextlib.suppress(ValueError, RuntimeError, OSError):  # released or closed already
        shutdown = getattr(getattr(response, "fp", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
            return
    sock = _socket(response)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)


class Watch:
    """The deadline and the minimum rate of one download attempt (a context manager:
    the deadline's timer runs inside the block)."""

    def __init__(
        self, deadline_s: float | None, min_rate_bytes_s: float = 0.0, grace_s: float = 0.0
    ) -> None:
        self.deadline_s = deadline_s
        self.min_rate_bytes_s = min_rate_bytes_s
        self.grace_s = grace_s
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()  # responses of this attempt
        self._failure: str | None = None
        self._timer: threading.Timer | None = None

    @property
    def failure(self) -> TooSlow | None:
        """Why this attempt was stopped, if it was."""
        return None if self._failure is None else TooSlow(self._failure)

    def __enter__(self) -> Watch:
        if self.deadline_s is not None:
            left = self.deadline_s - (time.monotonic() - self._start)
            self._timer = threading.Timer(max(left, 0.0), self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fail(self, why: str) -> TooSlow:
        with self._lock:
            if self._failure is None:
                self._failure = why
            return TooSlow(self._failure)

    def _expire(self) -> None:
        """The timer's thread, at the deadline: stop every open transfer."""
        self._fail(f"download took longer than its deadline of {self.deadline_s:g} s")
        with self._lock:
            responses = list(self._open)
        log.debug("deadline: interrupting %d open responses", len(responses))
        for response in responses:
            _interrupt(response)

    def check(self) -> None:
        """Raise TooSlow if this attempt is over (before a new request)."""
        if self._failure is not None:
            raise TooSlow(self._failure)
        if self.deadline_s is not None and time.monotonic() - self._start > self.deadline_s:
            raise self._fail(f"download took longer than its deadline of {self.deadline_s:g} s")

    def opened(self, response: Any) -> None:
        """Track a response of this attempt, so the deadline can interrupt its reads."""
        with self._lock:
            if self._failure is None:
                self._open.add(response)
                return
        with contextlib.suppress(OSError, ValueError, AttributeError):
            response.close()
        self.check()

    def progress(self, status: dict[str, Any]) -> None:
        """yt-dlp's progress hook: stop a file past the deadline or under the minimum rate."""
        self.check()
        if status.get("status") != "downloading" or not self.min_rate_bytes_s:
            return
        done, elapsed = status.get("downloaded_bytes"), status.get("elapsed")
        if not isinstance(done, int | float) or not isinstance(elapsed, int | float):
            return
        if elapsed >= self.grace_s and elapsed > 0 and done / elapsed < self.min_rate_bytes_s:
            raise self._fail(
                f"download rate {done / elapsed / 1000:.1f} kB/s after {elapsed:.0f} s is under"
                f" the minimum of {self.min_rate_bytes_s / 1000:g} kB/s"
            )


class BoundedYoutubeDL(yt_dlp.YoutubeDL):
    """A YoutubeDL whose requests and downloads answer to the Watch given by `watched`."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._watch: Watch | None = None
        self.add_progress_hook(self._progress)

    @contextlib.contextmanager
    def watched(self, watch: Watch) -> Iterator[Watch]:
        """Bound everything this client does inside the block by `watch`."""
        self._watch = watch
        try:
            with watch:
                yield watch
        finally:
            self._watch = None

    def _progress(self, status: dict[str, Any]) -> None:
        if self._watch is not None:
            self._watch.progress(status)

    def urlopen(self, req: Any) -> Any:
        """YoutubeDL.urlopen (every request yt-dlp makes), tracked by the current Watch."""
        watch = self._watch
        if watch is not None:
            watch.check()
        response = super().urlopen(req)
        if watch is not None:
            watch.opened(response)
        return response
