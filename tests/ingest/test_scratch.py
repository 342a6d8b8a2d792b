"""ingest.scratch: scratch folders of workers that are gone are found and removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ingest import scratch


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_folders_of_gone_or_day_old_workers_are_stale(tmp_path):
    dead = tmp_path / f"{scratch.PREFIX}{dead_pid()}-a"
    mine = tmp_path / f"{scratch.PREFIX}{os.getpid()}-b"
    old = tmp_path / f"{scratch.PREFIX}{os.getpid()}-c"  # a live pid, but untouched for 2 days
    other = tmp_path / f"{scratch.PREFIX}abc"  # not a name this module gives
    a_file = tmp_path / f"{scratch.PREFIX}{dead_pid()}-d"
    for folder in (dead, mine, old, other):
        folder.mkdir()
    a_file.write_text("not a folder")
    (dead / "vid.1").mkdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    assert scratch.stale(tmp_path) == sorted([dead, old])
    assert scratch.reap(tmp_path) == sorted([dead, old])
    assert not dead.exists() and not old.exists()
    assert mine.is_dir() and other.is_dir() and a_file.is_file()


def test_a_new_workdir_carries_this_pid_and_reaps_first(tmp_path):
    dead = tmp_path / f"{scratch.PREFIX}{dead_pid()}-a"
    dead.mkdir()
    work = scratch.make_workdir(tmp_path)
    assert work.parent == tmp_path and work.name.startswith(f"{scratch.PREFIX}{os.getpid()}-")
    assert not dead.exists() and work.is_dir()
    assert scratch.stale(tmp_path) == []  # this process's own folder is not stale


def test_a_killed_worker_not_yet_reaped_counts_as_gone(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    folder = tmp_path / f"{scratch.PREFIX}{proc.pid}-z"
    folder.mkdir()
    try:
        assert scratch.stale(tmp_path) == []  # running
        proc.kill()
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # a zombie until waited for, as killed workers are for a moment
        assert scratch.stale(tmp_path) == [folder]
    finally:
        proc.kill()
        proc.wait()
