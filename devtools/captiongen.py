"""Caption files and a reference parser piece for the caption benchmark and fuzz test.

``quadratic_repeated`` is the rolling-caption dedupe as it was before it became linear:
kept here, outside the production package, as the reference the linear one must agree
with and the baseline the benchmark measures it against.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ingest import captions

_WORDS = ("so", "today", "we", "are", "going", "to", "make", "bread", "at", "home", "it", "is")


def quadratic_repeated(lines: Sequence[str], plains: Sequence[str], previous: Sequence[str]) -> int:
    """The dedupe as it was: try every overlap length k, longest first, comparing k lines."""
    for k in range(min(len(lines), len(previous)), 0, -1):
        repeats = not any(captions._TIME_TAG.search(line) for line in lines[:k])
        if repeats and list(plains[:k]) == list(previous[-k:]):
            return k
    return 0


@contextmanager
def dedupe(fn: Callable[[Sequence[str], Sequence[str], Sequence[str]], int]) -> Iterator[None]:
    """Parse with `fn` as the rolling-caption dedupe inside the block."""
    kept = captions._repeated
    captions._repeated = fn
    try:
        yield
    finally:
        captions._repeated = kept


def long_cue_vtt(lines: int, cues: int = 2, seed: int = 0) -> str:
    """An auto-caption file whose `lines` one-word lines come in `cues` long plain cues."""
    rng = random.Random(seed)
    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    out += ["00:00:00.000 --> 00:00:01.000 align:start position:0%", "so<00:00:00.500><c> today</c>", ""]  # fmt: skip
    per_cue = max(1, lines // cues)
    for c in range(cues):
        out.append(f"00:00:{c + 1:02d}.000 --> 00:00:{c + 2:02d}.000 align:start position:0%")
        out += [rng.choice(_WORDS) for _ in range(per_cue)]
        out.append("")
    return "\n".join(out) + "\n"
