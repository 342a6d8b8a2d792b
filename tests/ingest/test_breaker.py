"""ingest.breaker: pushed-back attempts trip it; it pauses, probes, and gives a group up."""

from __future__ import annotations

import time

import pytest

from ingest.breaker import Breaker, Skip
from ingest.config import BreakerConfig

CFG = BreakerConfig(
    window=4, min_attempts=2, max_share=0.5, backoff_s=0.05, backoff_max_s=0.12, max_trips=3
)


def test_failures_that_are_not_push_back_never_trip_it():
    b = Breaker(CFG)
    for category in ("unavailable", "network", "private", None, "no_captions", "other"):
        b.record(category)
    assert not b.is_open and b.trips == 0 and b.admit() == 0.0


def test_it_trips_only_past_the_share_of_the_recent_attempts():
    b = Breaker(CFG)
    b.record("rate_limited")  # one attempt: fewer than min_attempts
    assert not b.is_open
    b.record(None)  # 1 of 2 = 0.5, not more than the share
    assert not b.is_open
    b.record("sign_in")  # 2 of 3
    assert b.is_open and b.trips == 1


def test_an_open_breaker_pauses_the_worker_with_doubling_capped_pauses():
    b = Breaker(CFG)
    b.record("sign_in")
    b.record("sign_in")
    pauses = []
    for _ in range(2):  # each probe pushed back: trips in a row
        start = time.monotonic()
        b.admit()
        pauses.append(time.monotonic() - start)
        b.record("rate_limited")
    assert pauses[0] >= 0.05 - 1e-3 and pauses[1] >= 0.10 - 1e-3
    assert b.in_a_row == 3 and b.waited_s >= 0.15 - 1e-3


def test_a_probe_that_goes_through_closes_it_and_forgets():
    b = Breaker(CFG)
    b.record("sign_in")
    b.record("sign_in")
    b.admit()
    b.record(None)  # the probe went through
    assert not b.is_open and b.in_a_row == 0
    b.record("sign_in")  # one pushed back after closing is not enough to trip
    assert not b.is_open


def test_after_max_trips_in_a_row_the_group_is_skipped_and_the_next_group_probes_again():
    b = Breaker(CFG)
    b.record("sign_in")
    b.record("sign_in")  # trip 1
    for _ in range(2):  # trips 2 and 3
        b.admit()
        b.record("sign_in")
    with pytest.raises(Skip, match="pushed back 3 times in a row"):
        b.admit()
    with pytest.raises(Skip):
        b.admit()  # every video left in the group
    b.new_group()
    b.admit()  # what is left of the pause, then one probe
    b.record(None)
    assert not b.is_open and b.admit() == 0.0


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"window": 0}, "window"),
        ({"min_attempts": 30}, "min_attempts"),
        ({"max_share": 1.0}, "max_share"),
        ({"backoff_s": 10.0, "backoff_max_s": 1.0}, "backoff_max_s"),
        ({"max_trips": 0}, "max_trips"),
    ],
)
def test_bad_breaker_values_are_refused_with_their_key(bad, key):
    with pytest.raises(ValueError, match=key):
        BreakerConfig(**bad)
