"""Per-worker scratch folders for downloads, named so that a later start can reap them.

A worker downloads into ``<temp dir>/montage-dl-<pid>-<random>``. Its teardown removes
the folder, but a worker killed by SIGKILL or SIGTERM never tears down; so each new
worker first removes the folders of processes that no longer run (and any not touched
for a day, in case a pid was reused), then makes its own.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "montage-dl-"
MAX_AGE_S = 24 * 3600
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-")
_PROC = Path("/proc/self/stat")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (killed, not yet reaped) does not."""
    if _PROC.exists():  # Linux: the state is the field after the command's ")"
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def stale(base: Path, now: float | None = None) -> list[Path]:
    """This user's scratch folders under ``base`` whose process is gone, or a day old."""
    now = time.time() if now is None else now
    found = []
    for path in sorted(base.glob(PREFIX + "*")):
        m = _NAME.match(path.name)
        try:
            st = path.lstat()
        except FileNotFoundError:  # another worker reaped it first
            continue
        if not m or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        if not _alive(int(m.group(1))) or now - st.st_mtime > MAX_AGE_S:
            found.append(path)
    return found


def reap(base: Path | None = None) -> list[Path]:
    """Remove the stale scratch folders under ``base`` (default: the temp dir)."""
    gone = stale(Path(tempfile.gettempdir()) if base is None else base)
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a worker that did not finish", path)
    return gone


def make_workdir(base: Path | None = None) -> Path:
    """Reap stale folders, then make this process's own (the caller removes it)."""
    base = Path(tempfile.gettempdir()) if base is None else base
    reap(base)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
