"""Fuzz ingest.captions with seeded mutations of generated YouTube-style caption files.

Each case takes a generated file (YouTube's rolling auto-caption layout, or manual
VTT, or SRT), applies a few random mutations (lines dropped, doubled or merged, digits
changed, numbers of thousands of digits, tags left open, stray angle brackets,
entities, markup, truncation, bad bytes) and parses it. It must either give words
that keep the module's time invariants or raise CaptionError; nothing else may escape.

Work is counted, not timed: the Python and C calls a parse makes (``sys.setprofile``).
A file 8 times larger must cost at most about 8 times the calls, whatever its shape,
and every fuzz case stays under a fixed number of calls per byte.

``MONTAGE_FUZZ_CASES=20000`` runs more cases than the default.
"""

from __future__ import annotations

import os
import random
import re
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from devtools.captiongen import long_cue_vtt, quadratic_repeated
from devtools.mediagen import make_words, write_auto_vtt, write_manual_vtt, write_srt
from ingest import captions
from ingest.captions import CaptionError, Captions, parse_captions

CASES = int(os.environ.get("MONTAGE_FUZZ_CASES", "500"))
CALLS_PER_BYTE = 12  # a bound on the parse's calls per input byte (1.5 on most cases)
CALLS_FIXED = 2_000  # what a file of a few bytes costs
_TIMING = re.compile(r"\s*(?:(\d+):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})")  # fmt: skip
_TAG = re.compile(r"<[^<>]*>")
_JUNK = "<>:.,-&;[] \t0123456789c/i#\\{}\u00a0\u2028é♪"
_ENTITIES = (
    "&lt;",
    "&gt;",
    "&amp;",
    "&#39;",
    "&gt;&gt;",
    "&nbsp;",
    "&#x3c;",
    "&lt;00:00:01.000&gt;",
)
_MARKUP = ("<i>", "</i>", "<c.colorE5E5E5>", "</c>", "<v Bob>", "{\\an8}", "<b>", "<ruby>", "<")


# -- the cases ----------------------------------------------------------------------------


def _bases(tmp: Path) -> list[tuple[str, str]]:
    """(suffix, text) of the generated files every case starts from."""
    out = []
    for seed, (writer, seconds, suffix) in enumerate(
        [
            (write_auto_vtt, 12, ".vtt"),
            (write_auto_vtt, 40, ".vtt"),
            (write_auto_vtt, 150, ".vtt"),
            (write_auto_vtt, 600, ".vtt"),
            (write_manual_vtt, 30, ".vtt"),
            (write_srt, 30, ".srt"),
        ]
    ):
        path = writer(tmp / f"base{seed}{suffix}", make_words(seconds, seed=seed))
        out.append((suffix, path.read_text(encoding="utf-8")))
    return out


def _line(rng: random.Random, lines: list[str], pattern: str = "") -> int | None:
    found = [i for i, line in enumerate(lines) if pattern in line] if pattern else range(len(lines))
    return rng.choice(found) if found else None


def _edit(rng: random.Random, lines: list[str], pattern: str, fn: Callable[[str], str]) -> None:
    i = _line(rng, lines, pattern)
    if i is not None:
        lines[i] = fn(lines[i])


def _at(rng: random.Random, text: str, insert: str) -> str:
    k = rng.randint(0, len(text))
    return text[:k] + insert + text[k:]


def _shift_tag(rng: random.Random, line: str) -> str:
    def shift(match: re.Match[str]) -> str:
        ms = max(0, rng.randint(-3000, 3000) + rng.randint(0, 100_000))
        h, m, sec = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
        return f"<{h:02d}:{m:02d}:{sec:02d}.{ms % 1000:03d}>"

    return re.sub(r"<\d\d:\d\d:\d\d\.\d\d\d>", shift, line, count=1)


def _untag_block(rng: random.Random, lines: list[str]) -> None:
    """Plain text over a run of lines, in two cues: long untagged cues, one after the other."""
    a = rng.randrange(len(lines) // 3 + 1)
    b = min(len(lines), a + rng.randint(5, len(lines)))
    block = [_TAG.sub("", line) for line in lines[a:b] if line.strip() and "-->" not in line]
    half = len(block) // 2
    lines[a:b] = [*block[:half], "", "00:00:05.000 --> 00:00:06.000", *block[half:]]


def _mutate_lines(rng: random.Random, lines: list[str], op: str) -> None:
    if not lines:
        return
    i = rng.randrange(len(lines))
    if op == "drop_line":
        del lines[i]
    elif op == "dup_line":
        lines[i:i] = [lines[i]] * rng.choice((1, 1, 2, 50))
    elif op == "swap_lines":
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "blank_line":
        lines.insert(i, rng.choice(("", " ", "\t")))
    elif op == "drop_blank":
        blanks = [k for k, line in enumerate(lines) if not line]
        if blanks:
            del lines[rng.choice(blanks)]
    elif op == "digit":
        _edit(rng, lines, ":", lambda s: re.sub(r"\d", lambda _: rng.choice("0123456789x: ."), s, count=rng.randint(1, 3)))  # fmt: skip
    elif op == "huge_number":
        digits = "9" * rng.choice((3, 11, 40, 5000))
        _edit(rng, lines, rng.choice(("-->", "<0")), lambda s: re.sub(r"\d+", digits, s, count=1))
    elif op == "junk":
        junk = "".join(rng.choice(_JUNK) for _ in range(rng.randint(1, 8)))
        lines[i] = _at(rng, lines[i], junk)
    elif op == "unclose_tag":
        _edit(rng, lines, "<0", lambda s: re.sub(r"(<\d[^<>]*)>", r"\1", s, count=1))
    elif op == "double_angle":
        _edit(rng, lines, "<", lambda s: s.replace("<", rng.choice(("<<", "<>", "><")), 1))
    elif op == "entity":
        lines[i] = _at(rng, lines[i], rng.choice(_ENTITIES))
    elif op == "markup":
        lines[i] = _at(rng, lines[i], rng.choice(_MARKUP))
    elif op == "non_speech":
        lines.insert(i, rng.choice(("[Music]", "[ __ ]", "[Applause", "Music]", "[[x]]")))
    elif op == "shift_tag":
        _edit(rng, lines, "<0", lambda s: _shift_tag(rng, s))
    elif op == "swap_timing":
        _edit(rng, lines, "-->", lambda s: "-->".join(reversed(s.split(" align")[0].split("-->"))))
    elif op == "untag":
        _untag_block(rng, lines)
    elif op == "repeat_cue":
        j = _line(rng, lines, "-->")
        if j is not None:
            end = next((k for k in range(j, len(lines)) if not lines[k]), len(lines))
            lines[end:end] = ["", *lines[j:end]] * rng.randint(1, 20)


LINE_OPS = (
    *("drop_line", "dup_line", "swap_lines", "blank_line", "drop_blank", "digit", "huge_number"),
    *("junk", "unclose_tag", "double_angle", "entity", "markup", "non_speech", "shift_tag"),
    *("swap_timing", "untag", "repeat_cue"),
)


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    op = rng.choice(("truncate", "crlf", "bom", "nul", "latin1", "flip", "none", "none"))
    if op == "truncate":
        return data[: rng.randint(0, len(data))]
    if op == "crlf":
        return data.replace(b"\n", rng.choice((b"\r\n", b"\r")))
    if op == "bom":
        return b"\xef\xbb\xbf" + data
    if op == "nul":
        k = rng.randint(0, len(data))
        return data[:k] + b"\x00" + data[k:]
    if op == "latin1":
        return data.replace(b"e", b"\xe9", 1)
    if op == "flip" and data:
        k = rng.randrange(len(data))
        return data[:k] + bytes([rng.randrange(256)]) + data[k + 1 :]
    return data


def make_case(seed: int, bases: list[tuple[str, str]]) -> tuple[str, bytes, list[str]]:
    """(suffix, file bytes, the mutations applied) of fuzz case `seed`."""
    rng = random.Random(seed)
    suffix, text = rng.choice(bases)
    lines = text.split("\n")
    ops = [rng.choice(LINE_OPS) for _ in range(rng.randint(1, 4))]
    for op in ops:
        _mutate_lines(rng, lines, op)
    data = "\n".join(lines).encode("utf-8")
    if rng.random() < 0.3:
        before = data
        data = _mutate_bytes(rng, data)
        ops.append("bytes" if data != before else "bytes(none)")
    return suffix, data, ops


def grown(data: bytes, times: int = 8) -> bytes:
    """Every plain text line (no time tag) `times` times over: long cues `times` times longer."""
    lines = data.split(b"\n")
    body = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    out = lines[:body]
    for line in lines[body:]:
        keep = not line.strip() or b"-->" in line or line.strip().isdigit() or b"<0" in line
        out += [line] if keep else [line] * times
    return b"\n".join(out)


# -- work and invariants ----------------------------------------------------------------


def parse_counting_calls(path: Path) -> tuple[Captions | CaptionError, int]:
    """Parse `path`; return the result (or the CaptionError) and the calls it made."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        result: Captions | CaptionError = parse_captions(path)
    except CaptionError as exc:
        result = exc
    finally:
        sys.setprofile(None)
    return result, calls


def cue_range(text: str) -> tuple[int, int]:
    """The earliest cue start and the latest cue end of a parsed file, in ms."""

    def ms(h: str | None, m: str, s: str, f: str) -> int:
        return ((int(h or 0) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f.ljust(3, "0"))

    spans = [
        (ms(*g.groups()[:4]), ms(*g.groups()[4:]))
        for line in re.split(r"\r\n|\r|\n", text)
        if "-->" in line and (g := _TIMING.match(line))
    ]
    return min(s for s, _ in spans), max(e for _, e in spans)


def check_invariants(caps: Captions, text: str) -> None:
    everything = [*caps.words, *caps.non_speech]
    assert caps.kind in ("auto", "manual")
    assert all(w.start_ms <= w.end_ms for w in everything)
    assert all(a.start_ms <= b.start_ms for a, b in pairwise(caps.words)), "words out of order"
    assert all(a.start_ms <= b.start_ms for a, b in pairwise(caps.non_speech))
    assert all(w.text and not set(w.text) & set("<>") for w in everything), "tag fragment"
    assert all(any(c.isalnum() for c in w.text) for w in caps.words)
    assert all(w.text.startswith("[") and w.text.endswith("]") for w in caps.non_speech)
    if everything:
        first, last = cue_range(text)
        assert all(first <= w.start_ms and w.end_ms <= last for w in everything), (first, last)


# -- tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    return _bases(tmp_path_factory.mktemp("bases"))


def test_generated_files_parse_to_the_generated_words(tmp_path: Path) -> None:
    words = make_words(60, seed=3)
    for writer in (write_auto_vtt, write_manual_vtt, write_srt):
        caps = parse_captions(writer(tmp_path / f"w.{writer.__name__}", words))
        assert [w.text for w in caps.words] == [w.text for w in words]
        if writer is write_auto_vtt:  # word tags: the exact starts
            assert [w.start_ms for w in caps.words] == [w.start_ms for w in words]
        check_invariants(caps, (tmp_path / f"w.{writer.__name__}").read_text())


def test_fuzzed_files_raise_only_caption_errors_and_keep_time_invariants(
    bases: list[tuple[str, str]], tmp_path: Path
) -> None:
    outcomes = {"parsed": 0, "CaptionError": 0}
    for seed in range(CASES):
        suffix, data, ops = make_case(seed, bases)
        path = tmp_path / f"case{suffix}"
        path.write_bytes(data)
        try:
            result, calls = parse_counting_calls(path)
        except Exception as exc:  # the point of the test: name the case that let it out
            pytest.fail(f"case {seed} {ops}: {type(exc).__name__} escaped: {str(exc)[:200]}")
        assert calls <= CALLS_FIXED + CALLS_PER_BYTE * len(data), (seed, ops, calls, len(data))
        if isinstance(result, CaptionError):
            assert str(result).startswith(f"{path}: ") and "\n" not in str(result), (seed, ops)
            outcomes["CaptionError"] += 1
            continue
        try:
            check_invariants(result, data.decode("utf-8-sig", errors="replace"))
        except AssertionError as exc:
            raise AssertionError(f"case {seed} {ops}: {exc}") from exc
        outcomes["parsed"] += 1
    # the mutations neither always break the file nor always leave it readable
    assert min(outcomes.values()) > CASES // 10, outcomes


def test_fuzzed_files_cost_calls_linear_in_their_cue_length(
    bases: list[tuple[str, str]], tmp_path: Path
) -> None:
    grew = 0
    for seed in range(0, CASES, 4):
        suffix, data, ops = make_case(seed, bases)
        small, big = tmp_path / f"small{suffix}", tmp_path / f"big{suffix}"
        small.write_bytes(data)
        big.write_bytes(grown(data))
        result, calls = parse_counting_calls(small)
        if isinstance(result, CaptionError):
            continue
        _, big_calls = parse_counting_calls(big)  # as long or shorter: an error found sooner
        assert big_calls <= 10 * calls + CALLS_FIXED, (seed, ops, calls, big_calls)
        grew += 1
    assert grew > CASES // 20


def test_linear_dedupe_gives_what_the_quadratic_reference_gives(
    bases: list[tuple[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "case.vtt"
    compared = 0
    for seed in range(0, CASES, 5):
        suffix, data, _ = make_case(seed, bases)
        path = path.with_suffix(suffix)
        path.write_bytes(data)
        new, _ = parse_counting_calls(path)
        with monkeypatch.context() as patch:
            patch.setattr(captions, "_repeated", quadratic_repeated)
            old, _ = parse_counting_calls(path)
        assert type(new) is type(old) and str(new) == str(old), seed
        if isinstance(new, Captions):
            assert new == old, seed
            compared += new.kind == "auto"
    assert compared > 0


def _youtube(n: int, tmp: Path) -> str:
    return write_auto_vtt(tmp / "yt.vtt", make_words(n / 10, seed=5)).read_text()


def _one_line_of_tags(n: int, tmp: Path) -> str:
    tags = "".join(f"<00:{k // 6000:02d}:{k // 100 % 60:02d}.{k % 100 * 10:03d}><c> w{k}</c>" for k in range(n))  # fmt: skip
    return f"WEBVTT\n\n00:00:00.000 --> 01:00:00.000\nstart{tags}\n"


def _markup(n: int, tmp: Path) -> str:
    body = "<i>x</i>" * n
    return f"WEBVTT\n\n00:00:00.000 --> 00:00:09.000\na<00:00:01.000><c> {body}</c>\n"


def _manual(n: int, tmp: Path) -> str:
    return write_manual_vtt(tmp / "m.vtt", make_words(n / 10, seed=6)).read_text()


def _srt(n: int, tmp: Path) -> str:
    return write_srt(tmp / "m.srt", make_words(n / 10, seed=7)).read_text()


def _rolling_repeats(n: int, tmp: Path) -> str:
    """Each cue repeats all the lines of the one before, then adds a tagged line."""
    lines = [f"line {k} of words" for k in range(n)]
    old = "\n".join(lines)
    return (
        f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{old}\n\n"
        f"00:00:01.000 --> 00:00:02.000\n{old}\nnew<00:00:01.500><c> words</c>\n"
    )


SHAPES: dict[str, Callable[[int, Path], str]] = {
    "youtube_layout": _youtube,
    "long_untagged_cues": lambda n, tmp: long_cue_vtt(n, cues=2),
    "rolling_repeat_of_a_long_cue": _rolling_repeats,
    "one_line_of_word_tags": _one_line_of_tags,
    "markup_between_tags": _markup,
    "manual_vtt": _manual,
    "srt": _srt,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_parse_work_grows_linearly_with_the_file(shape: str, tmp_path: Path) -> None:
    costs = []
    for n in (300, 2400):
        text = SHAPES[shape](n, tmp_path)
        path = tmp_path / ("c.srt" if shape == "srt" else "c.vtt")
        path.write_text(text, encoding="utf-8")
        result, calls = parse_counting_calls(path)
        assert isinstance(result, Captions) and result.words, shape
        costs.append((len(text.encode()), calls))
    (small_bytes, small), (big_bytes, big) = costs
    assert big_bytes >= 6 * small_bytes  # the file did grow about 8 times
    assert big <= 1.25 * small * big_bytes / small_bytes, costs  # quadratic: ~8x more
