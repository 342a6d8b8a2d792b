"""Tests for ingest.segments: segments, word alignment, windows, video filters."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.captions import Word
from ingest.config import FilterConfig, SegmentConfig
from ingest.segments import (
    AlignedWord,
    Segment,
    assign_words,
    filter_reason,
    make_segments,
    make_windows,
)
from shards.schema import SUBSEGMENTS

CFG = SegmentConfig()  # 5000 ms segments, 3 sub-segments, windows of 16


def word(start: int, end: int, text: str = "w") -> Word:
    return Word(text, start, end)


# --- make_segments ------------------------------------------------------------------


def test_make_segments_drops_the_trailing_partial_segment() -> None:
    segs = make_segments(12_345, CFG)
    assert segs == [Segment(0, 0, 5000), Segment(1, 5000, 10000)]


@pytest.mark.parametrize(
    ("duration", "count"), [(0, 0), (4999, 0), (5000, 1), (15_000, 3), (15_001, 3)]
)
def test_make_segments_counts_full_segments(duration: int, count: int) -> None:
    assert len(make_segments(duration, CFG)) == count


def test_segment_mid_is_integer_floor() -> None:
    assert Segment(0, 0, 5001).mid_ms == 2500
    assert make_segments(10_000, CFG)[1].mid_ms == 7500


def test_make_segments_rejects_negative_duration() -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        make_segments(-1, CFG)


# --- assign_words ---------------------------------------------------------------------


def test_word_goes_to_the_segment_holding_its_centre_half_open() -> None:
    segs = make_segments(15_000, CFG)
    aligned = assign_words([word(4000, 6000), word(4000, 5999), word(9000, 14_000)], segs, CFG)
    # centre 5000 is the start of segment 1; 4999.5 is still segment 0; 11500 is segment 2
    assert [a.segment for a in aligned] == [1, 0, 2]


def test_words_with_centre_outside_every_segment_are_dropped() -> None:
    segs = make_segments(10_000, CFG)
    words = [word(9000, 9999, "in"), word(9500, 10_500, "edge"), word(12_000, 12_500, "out")]
    assert [a.text for a in assign_words(words, segs, CFG)] == ["in"]


def test_subsegment_is_the_nearest_centre() -> None:
    segs = make_segments(5000, CFG)  # sub-segment centres at 833.3, 2500, 4166.7
    aligned = assign_words([word(0, 100), word(2400, 2600), word(4900, 5000)], segs, CFG)
    assert [a.subsegment for a in aligned] == [0, 1, 2]


def test_subsegment_tie_goes_to_the_earlier_one() -> None:
    cfg = SegmentConfig(segment_ms=6000)  # 3 sub-segments: centres 1000, 3000, 5000
    aligned = assign_words([word(2000, 2000)], make_segments(6000, cfg), cfg)
    assert aligned[0].subsegment == 0


def test_subsegments_never_decrease_within_a_segment() -> None:
    segs = make_segments(10_000, CFG)
    # a long word centred late, then a short one centred early, then the next segment
    words = [word(0, 9000 - 4500, "long"), word(1000, 1200, "short"), word(5100, 5200, "next")]
    aligned = assign_words(words, segs, CFG)
    assert [(a.segment, a.subsegment) for a in aligned] == [(0, 1), (0, 1), (1, 0)]


def test_aligned_word_keeps_text_and_times() -> None:
    aligned = assign_words([word(100, 300, "hi")], make_segments(5000, CFG), CFG)
    assert aligned == [AlignedWord("hi", 100, 300, 0, 0)]


def test_assign_words_rejects_overlapping_segments() -> None:
    with pytest.raises(ValueError, match="sorted and disjoint"):
        assign_words([], [Segment(0, 0, 5000), Segment(1, 4000, 9000)], CFG)


word_lists = st.lists(
    st.tuples(st.integers(0, 60_000), st.integers(0, 8000)).map(lambda t: word(t[0], t[0] + t[1])),
    max_size=40,
).map(lambda ws: sorted(ws, key=lambda w: w.start_ms))
seg_configs = st.builds(SegmentConfig, segment_ms=st.integers(1, 9000))


@given(words=word_lists, duration=st.integers(0, 70_000), cfg=seg_configs)
def test_assignment_invariants(words: list[Word], duration: int, cfg: SegmentConfig) -> None:
    segs = make_segments(duration, cfg)
    aligned = assign_words(words, segs, cfg)
    covered_end = len(segs) * cfg.segment_ms
    expected = [w for w in words if Fraction(w.start_ms + w.end_ms, 2) < covered_end]
    # every in-range word exactly once, in order, in the segment holding its centre
    assert [(a.text, a.start_ms, a.end_ms) for a in aligned] == [
        (w.text, w.start_ms, w.end_ms) for w in expected
    ]
    last_sub: dict[int, int] = {}
    for a in aligned:
        seg = segs[a.segment]
        assert seg.index == a.segment
        assert seg.start_ms <= Fraction(a.start_ms + a.end_ms, 2) < seg.end_ms
        assert 0 <= a.subsegment < SUBSEGMENTS
        assert a.subsegment >= last_sub.get(a.segment, 0)
        last_sub[a.segment] = a.subsegment


@given(centre2=st.integers(0, 2 * 9000 - 1), cfg=seg_configs)
def test_single_word_subsegment_is_nearest_by_brute_force(centre2: int, cfg: SegmentConfig) -> None:
    segs = make_segments(cfg.segment_ms, cfg)
    start = centre2 // 2
    w = word(start, centre2 - start)  # centre = centre2 / 2
    aligned = assign_words([w], segs, cfg)
    if Fraction(centre2, 2) >= cfg.segment_ms:
        assert aligned == []
        return
    size = Fraction(cfg.segment_ms, SUBSEGMENTS)
    dists = [abs(Fraction(centre2, 2) - (j + Fraction(1, 2)) * size) for j in range(SUBSEGMENTS)]
    assert dists[aligned[0].subsegment] == min(dists)


# --- make_windows ------------------------------------------------------------------------


def win_cfg(size: int, stride: int, min_segments: int = 1) -> SegmentConfig:
    return SegmentConfig(window_segments=size, window_stride=stride, min_segments=min_segments)


def test_windows_keep_a_trailing_window_with_enough_segments() -> None:
    segs = make_segments(20 * 5000, CFG)
    windows = make_windows(segs, [], win_cfg(16, 16, 4))
    assert [[s.index for s in w.segments] for w in windows] == [
        list(range(16)),
        list(range(16, 20)),
    ]
    assert [w.index for w in windows] == [0, 1]


def test_windows_drop_a_trailing_window_with_too_few_segments() -> None:
    segs = make_segments(20 * 5000, CFG)
    assert len(make_windows(segs, [], win_cfg(16, 16, 5))) == 1


def test_overlapping_windows_stop_at_the_first_that_reaches_the_end() -> None:
    segs = make_segments(7 * 5000, CFG)
    windows = make_windows(segs, [], win_cfg(4, 2))
    assert [[s.index for s in w.segments] for w in windows] == [
        [0, 1, 2, 3],
        [2, 3, 4, 5],
        [4, 5, 6],
    ]


def test_no_segments_no_windows() -> None:
    assert make_windows([], [], CFG) == []


def test_window_words_are_those_of_its_segments() -> None:
    segs = make_segments(4 * 5000, CFG)
    aligned = assign_words(
        [word(100, 200, "a"), word(6000, 6100, "b"), word(16_000, 16_100, "c")], segs, CFG
    )
    windows = make_windows(segs, aligned, win_cfg(2, 2))
    assert [[w.text for w in win.words] for win in windows] == [["a", "b"], ["c"]]


@given(
    n=st.integers(0, 60),
    size=st.integers(1, 20),
    data=st.data(),
    words=word_lists,
)
def test_windows_partition_segments_when_stride_equals_size(
    n: int, size: int, data: st.DataObject, words: list[Word]
) -> None:
    min_segments = data.draw(st.integers(1, size))
    cfg = SegmentConfig(window_segments=size, window_stride=size, min_segments=min_segments)
    segs = make_segments(n * cfg.segment_ms, cfg)
    aligned = assign_words(words, segs, cfg)
    windows = make_windows(segs, aligned, cfg)
    flat = [s for w in windows for s in w.segments]
    assert len(flat) == len(set(flat))  # no overlap
    assert flat == segs[: len(flat)]  # consecutive, in order, from the start
    assert len(segs) - len(flat) < min_segments  # only a short tail is left out
    assert all(len(w.segments) == size for w in windows[:-1])
    assert [w.index for w in windows] == list(range(len(windows)))
    in_windows = [a for w in windows for a in w.words]
    for w in windows:
        assert {a.segment for a in w.words} <= {s.index for s in w.segments}
    kept = {s.index for s in flat}
    assert Counter(in_windows) == Counter(a for a in aligned if a.segment in kept)  # each once


@given(n=st.integers(1, 50), size=st.integers(1, 12), stride=st.integers(1, 12))
def test_windows_with_any_stride_are_runs_of_consecutive_segments(
    n: int, size: int, stride: int
) -> None:
    cfg = SegmentConfig(window_segments=size, window_stride=stride, min_segments=1)
    segs = make_segments(n * cfg.segment_ms, cfg)
    windows = make_windows(segs, [], cfg)
    assert windows, "min_segments=1 keeps at least the first window"
    for k, w in enumerate(windows):
        first = w.segments[0].index
        assert first == k * stride
        assert [s.index for s in w.segments] == list(range(first, first + len(w.segments)))
        assert 1 <= len(w.segments) <= size
    assert windows[-1].segments[-1].index == n - 1 or stride > size


# --- filter_reason ----------------------------------------------------------------------


def spaced_words(count: int, gap_ms: int, start: int = 0) -> list[Word]:
    return [word(start + i * gap_ms, start + i * gap_ms + 100) for i in range(count)]


def test_filter_passes_a_dense_video() -> None:
    assert filter_reason(600_000, spaced_words(60, 500), FilterConfig()) is None


def test_filter_rejects_too_long_videos_exactly_at_the_limit() -> None:
    cfg = FilterConfig(max_duration_s=0.1, min_words_per_window=None, require_captions=False)
    assert filter_reason(100, [], cfg) is None
    assert filter_reason(101, [], cfg) == "too_long"
    assert filter_reason(1_200_001, spaced_words(60, 500), FilterConfig()) == "too_long"


def test_filter_rejects_videos_without_words() -> None:
    assert filter_reason(60_000, [], FilterConfig()) == "no_captions"
    off = FilterConfig(require_captions=False, min_words_per_window=None)
    assert filter_reason(60_000, [], off) is None


def test_filter_counts_words_in_a_sliding_half_open_window() -> None:
    cfg = FilterConfig(min_words_per_window=50, words_window_s=30.0)
    # 50 starts spread over 29.4 s fit one window; at 30 s apart the last one falls out
    assert filter_reason(600_000, spaced_words(50, 600, start=100_000), cfg) is None
    assert filter_reason(600_000, spaced_words(50, 30_000 // 49 + 1), cfg) == "too_few_words"
    assert (
        filter_reason(600_000, [*spaced_words(49, 1), word(30_000, 30_001)], cfg) == "too_few_words"
    )


def test_filter_short_video_counts_its_whole_length() -> None:
    cfg = FilterConfig(min_words_per_window=3, words_window_s=30.0)
    assert filter_reason(10_000, spaced_words(3, 3000), cfg) is None
    assert filter_reason(10_000, spaced_words(2, 3000), cfg) == "too_few_words"


def test_filter_short_video_counts_words_timed_past_its_end() -> None:
    cfg = FilterConfig(min_words_per_window=2, words_window_s=30.0)
    # a caption track that runs past a 10 s video: both words count for it
    assert filter_reason(10_000, [word(0, 100), word(40_000, 40_100)], cfg) is None
    assert filter_reason(50_000, [word(0, 100), word(40_000, 40_100)], cfg) == "too_few_words"


def test_filter_checks_run_in_order_too_long_first() -> None:
    assert filter_reason(2_000_000, [], FilterConfig()) == "too_long"


@given(
    starts=st.lists(st.integers(0, 120_000), max_size=30),
    threshold=st.integers(0, 12),
    window_s=st.sampled_from([0.5, 1.0, 7.5, 30.0]),
)
def test_too_few_words_matches_brute_force(
    starts: list[int], threshold: int, window_s: float
) -> None:
    duration = 130_000
    cfg = FilterConfig(
        max_duration_s=None,
        min_words_per_window=threshold,
        words_window_s=window_s,
        require_captions=False,
    )
    length = Fraction(str(window_s)) * 1000
    most = max((sum(t <= s < t + length for s in starts) for t in starts), default=0)
    expected = None if most >= threshold else "too_few_words"
    assert filter_reason(duration, [word(s, s) for s in starts], cfg) == expected
