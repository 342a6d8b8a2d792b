"""Pacing: a job-wide request budget turned into a pause between one worker's attempts.

The budget is stated the way yt-dlp's own guidance for YouTube states it: videos per
hour per IP address (about 300 for a guest session, about 2000 signed in). Workers of a
Beam job run in separate processes, often on separate machines, and share no memory, so
no worker can see another's requests. Each worker paces itself instead, with the same
share of the budget:

    interval = 3600 s * workers / videos_per_hour_per_ip

between two attempts it starts through the same IP (the same proxy, or none), where
``workers`` is how many download at once job-wide: set in ``ingest.download.pacing`` or,
when ``auto``, read from the runner's options (`workers_from_options`). A worker bound to
several proxies keeps one clock per proxy, so each IP stays within its budget whichever
workers use it. Every attempt counts, retries included: each one asks the site again.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from ingest.config import ConfigError, DownloadConfig, PacingConfig

# Runner options that say how many workers download at once, in the order they are read.
_WORKER_OPTIONS = ("direct_num_workers", "max_num_workers", "num_workers", "parallelism")


def interval_s(videos_per_hour_per_ip: float | None, workers: int) -> float:
    """Seconds between two attempts of one worker through one IP (0: no pacing)."""
    if videos_per_hour_per_ip is None:
        return 0.0
    return 3600.0 * max(1, workers) / videos_per_hour_per_ip


def _option(pipeline_args: list[str], name: str) -> str | None:
    """The last value given for ``--name`` (later flags win, as in Beam)."""
    value = None
    for i, arg in enumerate(pipeline_args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(pipeline_args):
            value = pipeline_args[i + 1]
    return value


def workers_from_options(pipeline_args: list[str]) -> int:
    """How many workers download at once, from the runner's flags (1 when none says).

    ``--direct_num_workers`` (0: one per core) for the local runners, then
    ``--max_num_workers`` (Dataflow's ceiling), ``--num_workers``, ``--parallelism``
    (Flink, Spark; -1: unknown). A worker machine that runs several threads of the
    download step counts each of them: set ``pacing.workers`` for such runners.
    """
    for name in _WORKER_OPTIONS:
        text = _option(pipeline_args, name)
        if text is None:
            continue
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"--{name}={text}: expected an integer") from None
        if name == "direct_num_workers" and n == 0:
            return os.cpu_count() or 1
        if n >= 1:
            return n
    return 1


def for_run(cfg: DownloadConfig, pipeline_args: list[str]) -> DownloadConfig:
    """``cfg`` with ``pacing.workers`` decided (``auto`` read from the runner's flags)."""
    if cfg.pacing.workers != "auto":
        return cfg
    pacing = PacingConfig(cfg.pacing.videos_per_hour_per_ip, workers_from_options(pipeline_args))
    return dataclasses.replace(cfg, pacing=pacing)


class Pacer:
    """Spaces one worker's attempt starts at least ``interval_s`` apart per IP key."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str | None = None) -> float:
        """Sleep until an attempt through ``key`` may start; the seconds slept.

        The next attempt is spaced from when this one really starts: a sleep that
        overruns delays the next one too, so the budget is never exceeded."""
        with self._lock:
            now = time.monotonic()
            last = self._last.get(key)
            start = now if last is None else max(now, last + self.interval)
            self._last[key] = start
        if start > now:
            time.sleep(start - now)
        woke = time.monotonic()
        with self._lock:
            self._last[key] = max(self._last[key], woke)
        return woke - now if start > now else 0.0

    def last_start(self, key: str | None = None) -> float | None:
        """When (time.monotonic) the latest attempt through ``key`` was let start."""
        with self._lock:
            return self._last.get(key)
