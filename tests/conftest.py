"""Shared pytest configuration."""

import logging

logging.getLogger("numba").setLevel(logging.WARNING)
