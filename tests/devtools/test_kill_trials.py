"""devtools/kill_trials.py: runs killed at random moments resume with nothing left over,
doubled or lost."""

from __future__ import annotations

import pytest

from devtools import kill_trials


@pytest.mark.slow
def test_killed_and_resumed_runs_leave_nothing_and_lose_nothing(tmp_path, capsys):
    rc = kill_trials.main(
        ["--trials", "2", "--videos", "4", "--seed", "3", "--work", str(tmp_path)]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, "\n".join(lines)
    assert '"trials": 2' in lines[-1] and '"resume_failed": 0' in lines[-1]
