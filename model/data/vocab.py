"""Transcripts read from shards, and how many of their sub-segments a tokenizer cuts.

The words of a sub-segment (one cell of the batch's ``text``, model/data/collate.py) are
encoded one by one with :meth:`Tokenizer.encode_word` and laid end to end; the loader
keeps the first ``max_text_len`` tokens, so a sub-segment whose words need more is cut.
:func:`cell_lengths` gives those needs, :func:`truncated_share` the share cut at a length,
and :func:`length_keeping` the shortest length that keeps a share of them whole.

Shards are read with ``shards.reader.stream_raw`` and ``shards.decode``, as the loader
reads them; a sample or shard that does not read is counted and skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from model.data.tokenizer import Tokenizer
from shards import reader as shard_reader
from shards import schema
from shards.decode import decode_sample


@dataclass
class ReadCount:
    """What reading transcripts met: windows read, and samples or shards that did not read."""

    windows: int = 0
    bad: int = 0
    last_error: str = ""

    def __call__(self, exc: Exception) -> bool:
        self.bad += 1
        self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return True


def window_cells(
    urls: Iterable[str], count: ReadCount, progress: Callable[[], None] = lambda: None
) -> Iterator[list[list[str]]]:
    """For each window of the shards, its sub-segments with words, each as its words."""
    for raw in shard_reader.stream_raw(urls, on_error=count):
        try:
            meta = decode_sample(raw.key, raw.members).meta
        except schema.SampleError as exc:
            count(exc)
            continue
        count.windows += 1
        cells: dict[tuple[int, int], list[str]] = {}
        for w in meta.words:
            if w.text.strip():
                cells.setdefault((w.segment, w.subsegment), []).append(w.text.strip())
        progress()
        yield list(cells.values())


def cell_lengths(cells: Iterable[list[str]], tokenizer: Tokenizer) -> list[int]:
    """Tokens each sub-segment needs: its words' ``encode_word`` lengths summed."""
    return [sum(len(tokenizer.encode_word(w)) for w in words) for words in cells]


def truncated_share(lengths: list[int], max_len: int) -> float:
    """The share of sub-segments that need more than ``max_len`` tokens (0 when none)."""
    return sum(n > max_len for n in lengths) / len(lengths) if lengths else 0.0


def length_keeping(lengths: list[int], keep: float) -> int:
    """The shortest ``max_text_len`` that keeps at least ``keep`` of the sub-segments whole."""
    assert 0 < keep <= 1, f"keep must be in (0, 1], got {keep}"
    if not lengths:
        return 1
    ordered = sorted(lengths)
    return max(1, ordered[math.ceil(keep * len(ordered)) - 1])
