"""Progress on stderr for long scans: shown on a terminal, silent otherwise or when asked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class _Bar:
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.samples = 0

    def update(self, shards: int, samples: int = 0) -> None:
        self.samples += samples
        self.bar.set_postfix(samples=f"{self.samples:,}", refresh=False)
        self.bar.update(shards)


@contextmanager
def progress_bar(total: int, desc: str, unit: str, quiet: bool) -> Iterator[_Bar]:
    """A tqdm bar over ``total`` items; disabled when ``quiet`` or stderr is not a terminal."""
    disable = quiet or not sys.stderr.isatty()
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable) as bar:
        yield _Bar(bar)
