"""A circuit breaker on the site's push-back, one per worker.

YouTube under pressure answers HTTP 429 and then, for a while, "Sign in to confirm
you're not a bot" for every video. A worker that goes on through its list then turns
every remaining video into a failure, and keeps the block going. The breaker watches
the outcome of the worker's recent attempts (`record`): when more than ``max_share``
of the last ``window`` (at least ``min_attempts`` of them) were pushed back
(``rate_limited`` or ``sign_in``), it trips. `admit`, called before each attempt,
then pauses the worker: ``backoff_s`` at the first trip, doubled at each trip in a
row, at most ``backoff_max_s``. The attempt after a pause is a probe: when it goes
through, the breaker closes and forgets; when it is pushed back, the breaker trips
again. After ``max_trips`` trips in a row `admit` raises `Skip` for the rest of the
group, so the worker records those videos as ``rate_limited`` (``--retry-failed``
takes them later) instead of asking again; the next group starts with a probe.
"""

from __future__ import annotations

import time
from collections import deque

from ingest.config import BreakerConfig

PUSHBACK = frozenset({"rate_limited", "sign_in"})


class Skip(Exception):
    """The breaker has given up on this group: the video is not tried."""


class Breaker:
    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.trips = 0  # all trips, for the counters
        self.in_a_row = 0  # trips since the breaker last closed
        self.waited_s = 0.0
        self._recent: deque[bool] = deque(maxlen=cfg.window)  # True: pushed back
        self._open_until: float | None = None
        self._given_up = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def new_group(self) -> None:
        """A new group of videos: a breaker that gave up probes once more."""
        self._given_up = False

    def admit(self) -> float:
        """Before an attempt: pause while open (the seconds paused), or raise `Skip`."""
        if self._given_up:
            raise Skip(f"the breaker is open: the site pushed back {self.in_a_row} times in a row")
        if self._open_until is None:
            return 0.0
        pause = max(0.0, self._open_until - time.monotonic())
        if pause:
            time.sleep(pause)
        self.waited_s += pause
        return pause

    def record(self, category: str | None) -> None:
        """After an attempt: its failure category, or None when it went through."""
        pushed = category in PUSHBACK
        if self._open_until is not None:  # this attempt was the probe
            if pushed:
                self._trip()
            else:
                self._close()
            return
        self._recent.append(pushed)
        share = sum(self._recent) / len(self._recent)
        if len(self._recent) >= self.cfg.min_attempts and share > self.cfg.max_share:
            self._trip()

    def _trip(self) -> None:
        self.trips += 1
        self.in_a_row += 1
        if self.in_a_row >= self.cfg.max_trips:
            self._given_up = True
        pause = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** (self.in_a_row - 1))
        self._open_until = time.monotonic() + pause

    def _close(self) -> None:
        self._open_until = None
        self.in_a_row = 0
        self._recent.clear()
