"""``sample``: a few samples' transcripts in the terminal, each word with its time.

One block per sample; inside it one line per audio sub-segment, led by its
segment's start time, so both the words' times and their assignment to
segments and sub-segments read at a glance::

    vidA_w0001  How to make bread
      vidA · window 1 · 0:10.0–0:20.0 · 2 segments · 18 words (auto) · real-000.tar
      0:10.0 │a  0:09.9 start  0:10.3 something  0:11.1 because
             │b  0:11.8 so  0:12.2 three
             │c  0:13.4 can  0:14.4 water
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from shards import reader, schema
from shards.cli.locate import Target
from shards.decode import parse_meta
from shards.layout import shard_name


@dataclass(slots=True)
class Found:
    shard: str
    key: str
    meta: schema.SampleMeta | None
    error: str = ""  # why the json could not be read


def iter_json(target: Target) -> Iterator[Found]:
    """Every sample's metadata, in shard order (reads the ``.json`` members only)."""
    for url in target.urls:
        name = shard_name(url)
        key: str | None = None
        data: bytes | None = None
        for entry in reader.TarScan(url, want=reader.json_only):  # ShardError goes to the caller
            if entry.key != key:
                if key is not None:
                    yield _found(name, key, data)
                key, data = entry.key, None
            if entry.data is not None:
                data = entry.data
        if key is not None:
            yield _found(name, key, data)


def _found(shard: str, key: str, data: bytes | None) -> Found:
    if data is None:
        return Found(shard, key, None, "no .json member")
    try:
        return Found(shard, key, parse_meta(data, where=".json"))
    except schema.SampleError as exc:
        return Found(shard, key, None, str(exc))


def pick(target: Target, n: int, start: int = 0, seed: int | None = None) -> list[Found]:
    """``n`` samples from position ``start`` on, or ``n`` at random (reservoir) with ``seed``."""
    if seed is None:
        out = []
        for i, found in enumerate(iter_json(target)):
            if i >= start:
                out.append(found)
            if len(out) >= n:
                break
        return out
    rng = random.Random(seed)
    chosen: list[tuple[int, Found]] = []
    for i, found in enumerate(iter_json(target)):
        if len(chosen) < n:
            chosen.append((i, found))
        elif (j := rng.randrange(i + 1)) < n:
            chosen[j] = (i, found)
    return [f for _, f in sorted(chosen, key=lambda t: t[0])]


def clock(ms: int) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` past an hour)."""
    tenths = round(ms / 100)
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = rest / 10
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def _pack(items: list[str], width: int) -> list[str]:
    """Items joined by two spaces into lines of at most ``width`` (an item is never split)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append(item)
    return lines


def format_sample(found: Found, width: int = 100) -> str:
    """One sample's block of text (see the module docstring)."""
    if found.meta is None:
        return f"{found.key}  ({found.shard})\n  cannot read: {found.error}\n"
    m = found.meta
    lines = [f"{m.key}  {m.title}".rstrip()]
    facts = [
        m.video_id,
        f"window {m.window}",
        f"{clock(m.start_ms)}–{clock(m.end_ms)}",
        f"{m.n_segments} segments",
        f"{len(m.words)} words ({m.caption_kind})",
        found.shard,
    ]
    if m.non_speech:
        facts.insert(-1, " ".join(m.non_speech))
    lines.append("  " + " · ".join(facts))
    by_sub: dict[tuple[int, int], list[str]] = {}
    for w in m.words:
        by_sub.setdefault((w.segment, w.subsegment), []).append(f"{clock(w.start_ms)} {w.text}")
    lead = max(len(clock(m.end_ms)), 6)
    for seg, (seg_start, _) in enumerate(m.segments):
        for sub in range(m.params.subsegments):
            label = clock(seg_start) if sub == 0 else ""
            mark = chr(ord("a") + sub) if sub < 26 else "?"
            prefix = f"  {label:>{lead}} │{mark}  "
            body = _pack(by_sub.get((seg, sub), ["·"]), max(width - len(prefix), 20))
            cont = f"  {'':>{lead}} │   "
            lines += [(prefix if i == 0 else cont) + part for i, part in enumerate(body)]
    return "\n".join(lines) + "\n"
