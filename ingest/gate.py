"""What stands before each download attempt of one worker: breaker, proxy, pace, cookies.

A `Gate` belongs to one `Downloader` (one worker). Before an attempt, `enter` lets the
circuit breaker pause the worker or skip the video (`ingest.breaker`), picks the group's
proxy (`ingest.proxies`) and waits for that IP's turn (`ingest.pacing`); after it,
`leave` tells the breaker and the pool how it went. `stats` counts what happened, for
the pipeline's Beam counters and the run's summary (`COUNTERS`).

Cookies: yt-dlp writes its cookie jar back to the cookie file when a client closes.
Workers sharing one file would overwrite one another's jars, or read a half-written
one; so each client gets its own copy (`copy_cookies`), made before its first use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from ingest.breaker import Breaker, Skip
from ingest.config import DownloadConfig
from ingest.pacing import Pacer, interval_s
from ingest.proxies import ProxyPool, proxy_list

__all__ = ["COUNTERS", "Gate", "Skip", "copy_cookies"]

# Counter -> what it counts (the Beam counters of the download step, same names).
COUNTERS = {
    "download_attempts": "attempts to download a video, retries included",
    "pushed_back": "attempts the site answered with rate_limited or sign_in",
    "pacing_wait_ms": "time workers waited for their turn under the request budget",
    "breaker_trips": "times a worker's breaker tripped",
    "breaker_wait_ms": "time workers paused with their breaker open",
    "breaker_skipped": "videos not tried because the breaker gave up (rate_limited rows)",
    "proxy_rotations": "times a proxy was rotated out of a worker's pool",
}
TRANSIENT = frozenset({"network", "rate_limited"})


def copy_cookies(source: str, folder: Path) -> Path:
    """A private copy of the cookie file ``source`` in ``folder`` (mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="cookies.", suffix=".txt", dir=folder)
    with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
        shutil.copyfileobj(src, dst)
    return Path(name)


class Gate:
    def __init__(self, cfg: DownloadConfig) -> None:
        urls = proxy_list(cfg)
        self.pool = ProxyPool(urls, cfg.proxy_fail_after, cfg.proxy_cooldown_s) if urls else None
        # `ingest.pacing.for_run` decides `auto` when a run starts; undecided, it is one
        workers = cfg.pacing.workers if isinstance(cfg.pacing.workers, int) else 1
        self.pacer = Pacer(interval_s(cfg.pacing.videos_per_hour_per_ip, workers))
        self.breaker = Breaker(cfg.breaker)
        self.stats: Counter[str] = Counter()
        self.group = ""

    def start_group(self, key: str) -> None:
        """The videos from now on belong to group ``key`` (which binds their proxy)."""
        self.group = key
        self.breaker.new_group()

    def enter(self) -> str | None:
        """Before an attempt: the proxy it goes through (None: none). Raises `Skip`."""
        try:
            paused = self.breaker.admit()
        except Skip:
            self.stats["breaker_skipped"] += 1
            raise
        proxy = self.pool.choose(self.group) if self.pool else None
        waited = self.pacer.wait(proxy)
        self.stats["download_attempts"] += 1
        self.stats["breaker_wait_ms"] += round(paused * 1000)
        self.stats["pacing_wait_ms"] += round(waited * 1000)
        return proxy

    def leave(self, proxy: str | None, category: str | None) -> None:
        """After an attempt: its failure category, or None when it went through."""
        trips = self.breaker.trips
        self.breaker.record(category)
        self.stats["breaker_trips"] += self.breaker.trips - trips
        self.stats["pushed_back"] += category in ("rate_limited", "sign_in")
        if self.pool is not None and proxy is not None:
            self.stats["proxy_rotations"] += self.pool.record(proxy, category in TRANSIENT)

    def take_stats(self) -> Counter[str]:
        """The counts since the last call (and start counting afresh)."""
        stats, self.stats = self.stats, Counter()
        return stats
