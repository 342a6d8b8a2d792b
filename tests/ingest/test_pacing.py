"""ingest.pacing: the job-wide budget as a per-worker interval, workers from runner flags."""

from __future__ import annotations

import itertools
import os
import time

import pytest

from ingest import pacing
from ingest.config import ConfigError, DownloadConfig, PacingConfig


def test_the_interval_shares_the_budget_per_ip_among_the_workers():
    assert pacing.interval_s(None, 8) == 0.0
    assert pacing.interval_s(300.0, 1) == 12.0  # yt-dlp's guest guidance, one worker
    assert pacing.interval_s(300.0, 10) == 120.0  # ten workers: each asks a tenth as often
    assert pacing.interval_s(3600.0, 4) == 4.0


@pytest.mark.parametrize(
    "flags, workers",
    [
        (["--direct_num_workers=3"], 3),
        (["--direct_num_workers", "5"], 5),
        (["--direct_num_workers=0"], os.cpu_count() or 1),
        (["--max_num_workers=100", "--runner=DataflowRunner"], 100),
        (["--num_workers=7"], 7),
        (["--parallelism=-1"], 1),  # unknown
        (["--parallelism=12"], 12),
        (["--direct_num_workers=2", "--direct_num_workers=6"], 6),  # the later flag wins
        ([], 1),
    ],
)
def test_workers_are_read_from_the_runner_flags(flags, workers):
    assert pacing.workers_from_options(flags) == workers


def test_a_bad_worker_flag_is_a_one_line_error():
    with pytest.raises(ConfigError, match="--max_num_workers=lots: expected an integer"):
        pacing.workers_from_options(["--max_num_workers=lots"])


def test_auto_workers_are_decided_for_the_run_and_a_set_number_is_kept():
    auto = DownloadConfig(pacing=PacingConfig(videos_per_hour_per_ip=300.0))
    got = pacing.for_run(auto, ["--direct_num_workers=4"])
    assert got.pacing == PacingConfig(300.0, 4)
    fixed = DownloadConfig(pacing=PacingConfig(300.0, workers=9))
    assert pacing.for_run(fixed, ["--direct_num_workers=4"]) is fixed


def test_the_pacer_spaces_attempts_per_ip_and_lets_other_ips_go_at_once():
    pacer = pacing.Pacer(0.2)
    starts = {}
    for key in ("a", "a", "b", "a", "b"):
        before = time.monotonic()
        pacer.wait(key)
        assert before <= pacer.last_start(key) <= time.monotonic()
        starts.setdefault(key, []).append(pacer.last_start(key))
    for key, times in starts.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) >= 1 and all(g >= 0.2 for g in gaps), (key, gaps)
    # b's first attempt did not wait for a's clock
    assert pacing.Pacer(0.5).wait("b") == 0.0


@pytest.mark.parametrize(
    "pacing_cfg, key",
    [
        ({"videos_per_hour_per_ip": 0}, "videos_per_hour_per_ip must be > 0 or null"),
        ({"workers": 0}, "workers must be auto or an integer >= 1"),
        ({"workers": "many"}, "workers must be auto or an integer >= 1"),
    ],
)
def test_bad_pacing_values_are_refused_with_their_key(pacing_cfg, key):
    with pytest.raises(ValueError, match=key):
        PacingConfig(**pacing_cfg)
