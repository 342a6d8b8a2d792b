"""Progress of an ingest run on this machine: a bar over videos in the command's terminal.

Beam's local runners process videos in worker processes, out of the command's sight, and
report counters only when a stage ends. So each worker marks every video it finishes in
a folder the command gave it (one small file per video, named by the video id, written
whole and renamed: marking a video twice overwrites the same file), and the command
reads the folder twice a second into the bar: videos done, how they ended (ok, skipped,
failed, done before), hours of video per second, and the time left.

Only runners on this machine get a folder; on Dataflow and other clusters the marks are
off and the cluster's own monitoring shows progress.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from typing import TextIO

from tqdm import tqdm

# Runners whose workers run on this machine and can write to its temp folder.
LOCAL_RUNNERS = {"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}
STATUSES = ("ok", "skipped", "failed", "done")  # done: finished by an earlier run


def mark(folder: str | None, video_id: str, status: str, duration_ms: int = 0) -> None:
    """Record that ``video_id`` ended with ``status`` (no-op when ``folder`` is None)."""
    if not folder:
        return
    name = hashlib.sha1(video_id.encode()).hexdigest()[:24]
    path = os.path.join(folder, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{status} {int(duration_ms)}")
        os.replace(tmp, path)
    except OSError:  # progress is a courtesy: never fail a video over it
        pass


class ProgressBar:
    """Reads the marks in ``folder`` into a tqdm bar on ``stream``, from a thread."""

    def __init__(self, folder: str, total: int, stream: TextIO, period_s: float = 0.5) -> None:
        self.folder, self.period_s = folder, period_s
        self.counts: Counter[str] = Counter()
        self.hours = 0.0
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._started = time.monotonic()
        # On a terminal the bar redraws in place; in a log (CI, a file) a line every 30 s.
        interactive = hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(
            total=total,
            unit="video",
            desc="videos",
            file=stream,
            dynamic_ncols=True,
            mininterval=0.5 if interactive else 30.0,
        )
        self._thread = threading.Thread(target=self._run, name="ingest-progress", daemon=True)

    def __enter__(self) -> ProgressBar:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        self.bar.close()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.poll()

    def poll(self) -> None:
        new = 0
        try:
            names = [e.name for e in os.scandir(self.folder) if not e.name.endswith(".tmp")]
        except OSError:
            return
        for name in names:
            if name in self._seen:
                continue
            try:
                with open(os.path.join(self.folder, name)) as f:
                    status, duration_ms = f.read().split()
            except (OSError, ValueError):
                continue  # being replaced; read it next time
            self._seen.add(name)
            self.counts[status] += 1
            self.hours += int(duration_ms) / 3.6e6 if status == "ok" else 0.0
            new += 1
        if not new:
            return
        elapsed = max(time.monotonic() - self._started, 1e-9)
        shown = ", ".join(
            f"{s} {self.counts[s]}" for s in STATUSES if self.counts[s] or s != "done"
        )
        self.bar.set_postfix_str(f"{shown}, {self.hours / elapsed:.3g} video-h/s", refresh=False)
        if self.bar.n + new > self.bar.total:
            self.bar.total = self.bar.n + new
        self.bar.update(new)
