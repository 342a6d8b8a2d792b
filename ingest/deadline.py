"""Wall-clock deadlines for one video's work, and the subprocesses that must keep them.

A :class:`Deadline` is an instant on the monotonic clock (or none). The core checks
it between its steps; an ffmpeg or ffprobe process started under it is killed when
the deadline comes, so a deadline bounds the time a video takes even when a decoder
stalls. Work past its deadline raises :class:`DeadlineExceeded`.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class DeadlineExceeded(TimeoutError):
    """Work ran past its deadline (a subprocess was killed, or a check found it passed)."""


@dataclass(frozen=True, slots=True)
class Deadline:
    at: float | None = None  # a time.monotonic() instant; None: no limit
    seconds: float | None = None  # the length it was given, for messages

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """A deadline ``seconds`` from now (None: never)."""
        return cls() if seconds is None else cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float | None:
        """Seconds left (never below 0); None without a limit."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def message(self) -> str:
        return f"past its {self.seconds:g} s deadline"

    def check(self, what: str) -> None:
        if self.passed():
            raise DeadlineExceeded(f"{what}: {self.message()}")


@contextmanager
def kill_at(proc: subprocess.Popen, deadline: Deadline | None, what: str) -> Iterator[None]:
    """Kill ``proc`` if it still runs when ``deadline`` comes; the body waits for it.

    When the process was killed, :class:`DeadlineExceeded` replaces whatever the body
    raised because of it (a short read, a non-zero exit status).
    """
    if deadline is None or deadline.at is None:
        yield
        return
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        proc.kill()

    timer = threading.Timer(deadline.remaining() or 0.0, kill)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if fired.is_set():
            raise DeadlineExceeded(f"{what}: killed, {deadline.message()}") from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():
        raise DeadlineExceeded(f"{what}: killed, {deadline.message()}")
