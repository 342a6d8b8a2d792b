"""Shared pytest configuration."""

import logging
import sys

import pytest

logging.getLogger("numba").setLevel(logging.WARNING)


@pytest.fixture
def cli_in_process(monkeypatch):
    """For tests that run `train.py`'s CLI in this process on its `args`: pytest's own
    argv would only make it warn, and tiny tensors run several times faster on one
    intra-op thread than on two on a busy 2-core machine."""
    import torch  # here, not at the top: the ingest and shards tests never load it

    monkeypatch.setattr(sys, "argv", ["train.py"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
