"""ingest.deadline: a deadline kills the subprocess that runs past it, and only that one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest.deadline import Deadline, DeadlineExceeded, kill_at


def test_no_deadline_never_passes():
    d = Deadline.after(None)
    assert d.remaining() is None and not d.passed()
    d.check("anything")


def test_a_deadline_passes_and_says_so():
    d = Deadline.after(0.0)
    assert d.passed() and d.remaining() == 0.0
    with pytest.raises(DeadlineExceeded, match="frames: past its 0 s deadline"):
        d.check("frames")
    assert not Deadline.after(3600).passed()


def test_a_process_running_past_the_deadline_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with (
        pytest.raises(DeadlineExceeded, match="sleeper: killed"),
        kill_at(proc, Deadline.after(0.5), "sleeper"),
    ):
        proc.wait()
    assert proc.returncode == -9


def test_what_the_kill_causes_is_reported_as_the_deadline():
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.PIPE
    )
    with pytest.raises(DeadlineExceeded), kill_at(proc, Deadline.after(0.5), "reader"):
        data = proc.stdout.read()  # ends when the process is killed
        if proc.wait() != 0:
            raise RuntimeError(f"short read: {data!r}")  # what a caller would raise


def test_a_process_that_ends_in_time_is_left_alone():
    proc = subprocess.Popen([sys.executable, "-c", "print('done')"], stdout=subprocess.PIPE)
    with kill_at(proc, Deadline.after(300), "quick"):
        out, _ = proc.communicate()
    assert out.strip() == b"done" and proc.returncode == 0
