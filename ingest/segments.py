"""A video's timeline: segments, word alignment, training windows and filters.

A segment is ``cfg.segment_ms`` of video (one frame, one mel block and the words
spoken in it); a word belongs to the segment that holds its centre and to the
audio sub-segment whose centre is nearest its own. A window is the run of
consecutive segments that makes one training sample. Times are integer ms, and
Fractions where a half or a third appears: never summed floats.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

from ingest.captions import Word
from ingest.config import FilterConfig, SegmentConfig
from shards.schema import SUBSEGMENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Segment:
    """The half-open interval [start_ms, end_ms) of a video."""

    index: int  # index in the video
    start_ms: int
    end_ms: int

    @property
    def mid_ms(self) -> int:
        """Integer midpoint (floor), where the segment's frame is taken."""
        return (self.start_ms + self.end_ms) // 2


@dataclass(frozen=True, slots=True)
class AlignedWord:
    """A word with the segment and audio sub-segment it belongs to."""

    text: str
    start_ms: int
    end_ms: int
    segment: int  # index of the Segment in the video
    subsegment: int  # 0 .. SUBSEGMENTS - 1


@dataclass(frozen=True, slots=True)
class Window:
    """Consecutive segments that make one training sample."""

    index: int  # window number within the video
    segments: tuple[Segment, ...]
    words: tuple[AlignedWord, ...]  # the words whose segment is in this window


def make_segments(duration_ms: int, cfg: SegmentConfig) -> list[Segment]:
    """Full segments [k*L, (k+1)*L) for k < duration_ms // L.

    The trailing partial segment is dropped, so every mel block has one shape.
    """
    if duration_ms < 0:
        raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
    size = cfg.segment_ms
    return [Segment(k, k * size, (k + 1) * size) for k in range(duration_ms // size)]


def _nearest_subsegment(centre: Fraction, seg: Segment, parts: int) -> int:
    """The sub-segment whose centre is nearest `centre`; a tie goes to the earlier one."""
    length = seg.end_ms - seg.start_ms

    def distance(j: int) -> Fraction:
        return abs(centre - seg.start_ms - Fraction((2 * j + 1) * length, 2 * parts))

    return min(range(parts), key=distance)


def assign_words(
    words: Sequence[Word], segments: Sequence[Segment], cfg: SegmentConfig
) -> list[AlignedWord]:
    """Put each word in the segment that holds its centre (half-open intervals).

    Words whose centre is in no segment are dropped. Within a segment the
    sub-segment is the nearest by centre, then raised where needed so it never
    decreases over the word order (a word never precedes its predecessor's audio).
    """
    for a, b in pairwise(segments):
        if b.start_ms < a.end_ms:
            raise ValueError(f"segments must be sorted and disjoint: {a} then {b}")
    starts = [s.start_ms for s in segments]
    latest: dict[int, int] = {}  # segment position -> last sub-segment given
    aligned: list[AlignedWord] = []
    for w in words:
        centre = Fraction(w.start_ms + w.end_ms, 2)
        pos = bisect.bisect_right(starts, centre) - 1
        if pos < 0 or centre >= segments[pos].end_ms:
            continue
        seg = segments[pos]
        sub = max(_nearest_subsegment(centre, seg, SUBSEGMENTS), latest.get(pos, 0))
        latest[pos] = sub
        aligned.append(AlignedWord(w.text, w.start_ms, w.end_ms, seg.index, sub))
    if len(aligned) < len(words):
        log.debug("dropped %d words outside the segments", len(words) - len(aligned))
    return aligned


def make_windows(
    segments: Sequence[Segment], aligned: Sequence[AlignedWord], cfg: SegmentConfig
) -> list[Window]:
    """Windows of cfg.window_segments consecutive segments, one every cfg.window_stride.

    The first window that would run past the last segment is cut there and kept
    if it still has cfg.min_segments segments; later ones would be subsets of it.
    A window's words are ordered by segment, then by their order in `aligned`.
    """
    by_segment: dict[int, list[AlignedWord]] = defaultdict(list)
    for w in aligned:
        by_segment[w.segment].append(w)
    size, count = cfg.window_segments, len(segments)
    windows: list[Window] = []
    for first in range(0, count, cfg.window_stride):
        chosen = tuple(segments[first : first + size])
        if len(chosen) < size and len(chosen) < cfg.min_segments:
            break
        words = tuple(w for s in chosen for w in by_segment.get(s.index, ()))
        windows.append(Window(len(windows), chosen, words))
        if first + size >= count:
            break
    return windows


def _exact(value: float) -> Fraction:
    """A config number as the decimal it was written as (0.1 -> 1/10), exactly."""
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _most_words_in(starts: Sequence[int], length: Fraction) -> int:
    """Most word starts in any half-open interval [t, t + length)."""
    best, j = 0, 0
    for i, start in enumerate(starts):
        while j < len(starts) and starts[j] < start + length:
            j += 1
        best = max(best, j - i)
    return best


def filter_reason(duration_ms: int, words: Sequence[Word], cfg: FilterConfig) -> str | None:
    """Why a video is skipped ("too_long", "no_captions", "too_few_words"), or None.

    "too_few_words": no `words_window_s` window holds `min_words_per_window`
    word starts; a video no longer than the window counts all its words.
    """
    if duration_ms < 0:
        raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
    if cfg.max_duration_s is not None and duration_ms > _exact(cfg.max_duration_s) * 1000:
        return "too_long"
    if cfg.require_captions and not words:
        return "no_captions"
    if cfg.min_words_per_window is not None:
        length = _exact(cfg.words_window_s) * 1000
        if duration_ms <= length:
            most = len(words)
        else:
            most = _most_words_in(sorted(w.start_ms for w in words), length)
        if most < cfg.min_words_per_window:
            return "too_few_words"
    return None
