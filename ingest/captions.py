"""Caption files (WebVTT, SRT, YouTube json3) to timed words.

YouTube ASR captions ("auto") carry one time tag per word,
``so<00:00:01.920><c> today</c><00:00:02.240><c> we</c>``, in a rolling layout:
each cue repeats the line before it as plain text and 10 ms cues only repeat
text. A word starts at its tag (the first word of a line at the cue start) and
ends where the next word of its cue starts, or at the cue end; a tag outside its
cue, going back in time or never closed is an error. Manual captions
have cue times only; a cue's words are spread over the cue in proportion to
their length. Rolling captions without word tags (YouTube ASR as SRT, or as VTT
after a conversion: most cues begin with the last line of the cue before) are
taken once per word too: a cue's repeated leading lines are dropped and only its
new part is spread over the cue. YouTube's json3 is parsed by
``ingest.caption_forms``. Bracketed tags (``[Music]``, ``[Applause]``, ``[ __ ]``) are kept
apart as non-speech. '<' and '>' left in the text (escaped, or stray) only separate
words. All times are integer milliseconds. Parsing takes time linear in the file.

``python -m ingest.captions FILE`` prints one JSON object per word.
"""

from __future__ import annotations

import argparse
import codecs
import html
import io
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Word:
    """A spoken word (or a non-speech tag) with its time span in ms."""

    text: str
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError(f"word {self.text!r} ends before it starts: {self}")


@dataclass(frozen=True, slots=True)
class Captions:
    """The words of one caption file."""

    words: tuple[Word, ...]  # spoken words, time-ordered, each once
    kind: Literal["auto", "manual"]  # auto = YouTube ASR with word time tags
    non_speech: tuple[Word, ...]  # bracketed tags such as [Music], not counted as words


class CaptionError(ValueError):
    """A caption file cannot be read; the message names the file, the line and the problem,
    and quotes no text of the file (it goes into the manifest)."""


# A cue timing line as webvtt-py reads it (fields may be short, as in 0:01.5).
_VTT_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})\.(\d{1,3})"
_VTT_TIMING = re.compile(rf"\s*{_VTT_TIME}\s*-->\s*{_VTT_TIME}(?=\s|$)")
_SRT_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_SRT_TIMING = re.compile(rf"\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?=\s|$)")
_TAG_TIME = re.compile(r"(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})")
_TAG = re.compile(r"<([^<>]*)>")  # any cue tag: <c>, </c>, <i>, <v Name>, <00:00:01.000>
_TIME_TAG = re.compile(r"<\d[^<>]*>")
_OPEN_TIME_TAG = re.compile(r"<\s*\d")  # what is left of a time tag that never closes
_MAX_HOUR_DIGITS = 10  # webvtt-py reads at most 10; longer hours are no real time
_ANGLES = str.maketrans("<>", "  ")  # '<' and '>' in text (&lt; &gt; or stray) split words
_ASS_TAG = re.compile(r"\{\\[^{}]*\}")  # {\an8} positioning codes found in SRT files
_TOKEN = re.compile(r"\[[^\[\]]*\]|[^\s\[\]]+")  # a bracketed tag or a run of non-space
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class _Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]  # raw lines, tags kept
    where: str  # "line N" of the timing line, for messages


def _fail(name: str, problem: str) -> CaptionError:
    return CaptionError(f"{name}: {problem}")


def _ms(hours: str | None, minutes: str, seconds: str, frac: str, name: str, where: str) -> int:
    """Milliseconds of a parsed timestamp; a fraction '.5' is 500 ms."""
    if hours is not None and len(hours) > _MAX_HOUR_DIGITS:  # int() of 5000 digits raises
        raise _fail(
            name, f"{where}: timestamp could not be read (hours of {len(hours)} digits, at most 10)"
        )
    m, s = int(minutes), int(seconds)
    if m > 59 or s > 59:
        raise _fail(name, f"{where}: minutes or seconds over 59")
    return ((int(hours or 0) * 60 + m) * 60 + s) * 1000 + int(frac.ljust(3, "0"))


def _check_text(text: str, name: str) -> list[str]:
    """Reject empty and binary input; return the lines without a BOM."""
    if "\x00" in text:
        raise _fail(name, "binary data (NUL bytes), not a caption file")
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _fail(name, "empty file")
    return _NEWLINE.split(text)


def _timing(line: str, pattern: re.Pattern[str], name: str, where: str) -> tuple[int, int]:
    match = pattern.match(line)
    if match is None:
        raise _fail(name, f"{where}: bad cue timing")
    g = match.groups()
    start = _ms(*g[:4], name=name, where=where)
    end = _ms(*g[4:], name=name, where=where)
    if end < start:
        raise _fail(name, f"{where}: cue ends before it starts")
    return start, end


def parse_vtt(text: str, name: str = "<string>") -> Captions:
    """Parse WebVTT text (YouTube auto captions or manual ones) with webvtt-py."""
    lines = _check_text(text, name)
    first = lines[0]
    if not (first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise _fail(name, "line 1: missing WEBVTT header")
    # webvtt-py drops a cue with a bad timestamp silently: check every timing line first.
    timings = [
        _timing(line, _VTT_TIMING, name, f"line {n}")
        for n, line in enumerate(lines, start=1)
        if "-->" in line
    ]
    try:
        vtt = webvtt.from_buffer(io.StringIO("\n".join(lines)))
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise _fail(name, f"malformed WebVTT: {exc}") from exc
    if len(vtt.captions) != len(timings):
        raise _fail(name, f"{len(timings) - len(vtt.captions)} cue block(s) could not be read")
    cues = [
        _Cue(
            c.start_time.in_milliseconds(),
            c.end_time.in_milliseconds(),
            tuple(c.raw_text.split("\n")),
            f"cue {i} ({c.start} --> {c.end})",
        )
        for i, c in enumerate(vtt.captions, start=1)
    ]
    return _words_from_cues(cues, name)


def parse_srt(text: str, name: str = "<string>") -> Captions:
    """Parse SubRip text: cues of a number line, a timing line and text lines.

    As in most players, a cue starts at its timing line (the number line before it
    is dropped) and text after an empty line stays in the cue before it.
    """
    lines = _check_text(text, name)
    cues: list[tuple[int, int, list[str], str]] = []
    after_number = False  # the last text line read was a bare number
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if "-->" in line:
            if after_number and cues:
                cues[-1][2].pop()  # the number of this cue, not text of the last one
            start, end = _timing(line, _SRT_TIMING, name, f"line {n}")
            cues.append((start, end, [], f"line {n}"))
            after_number = False
            continue
        after_number = line.strip().isdigit()
        if cues:
            cues[-1][2].append(line)
        elif not after_number:
            raise _fail(name, f"line {n}: expected a cue number and timing line")
    return _words_from_cues([_Cue(s, e, tuple(t), w) for s, e, t, w in cues], name)


def _looks_like_srt(lines: Sequence[str]) -> bool:
    content = [line for line in lines if line.strip()][:2]
    return len(content) == 2 and content[0].strip().isdigit() and "-->" in content[1]


def _decode(data: bytes, name: str) -> str:
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if b"\x00" in data and not utf16:
        raise _fail(name, "binary data (NUL bytes), not a caption file")
    encoding = "utf-16" if utf16 else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _fail(name, f"not {encoding} text (bad byte at offset {exc.start})") from exc


def parse_captions(path: str | os.PathLike[str]) -> Captions:
    """Read a caption file; VTT, json3 or SRT is told by content, then by extension.

    Raises CaptionError for malformed content and OSError if the file cannot be read.
    """
    name = str(path)
    text = _decode(Path(path).read_bytes(), name)
    lines = _check_text(text, name)
    if lines[0].startswith("WEBVTT"):
        return parse_vtt(text, name)
    if lines[0].lstrip().startswith("{") or Path(path).suffix.lower() == ".json3":
        from ingest.caption_forms import parse_json3  # it imports this module

        return parse_json3(text, name)
    if _looks_like_srt(lines) or Path(path).suffix.lower() == ".srt":
        return parse_srt(text, name)
    return parse_vtt(text, name)  # fails, naming the missing header


def _plain(line: str) -> str:
    """A line's text without tags, whitespace collapsed: what a repeat looks like."""
    return " ".join(_TAG.sub("", line).split())


def _repeated(lines: Sequence[str], plains: Sequence[str], previous: Sequence[str]) -> int:
    """How many leading lines repeat the end of the previous cue (rolling layout).

    The most leading lines, none with a time tag (YouTube repeats old lines as plain
    text), whose plain text equals the last lines of the previous cue. Linear in the
    lines: the longest prefix of ``head`` that is a suffix of ``tail`` is the prefix
    function (Knuth-Morris-Pratt) at the end of ``head + [separator] + tail``, over
    line numbers that stand for the texts.
    """
    tagged = next((i for i, line in enumerate(lines) if _TIME_TAG.search(line)), len(lines))
    n = min(tagged, len(previous))  # the most lines that can be a repeat
    if n == 0:
        return 0
    ids: dict[str, int] = {}
    head = [ids.setdefault(text, len(ids)) for text in plains[:n]]
    tail = [ids.setdefault(text, len(ids)) for text in previous[len(previous) - n :]]
    seq = [*head, -1, *tail]
    prefix = [0] * len(seq)  # prefix[i]: longest proper prefix of seq[: i + 1] ending at i
    for i in range(1, len(seq)):
        k = prefix[i - 1]
        while k and seq[i] != seq[k]:
            k = prefix[k - 1]
        prefix[i] = k + (seq[i] == seq[k])
    return prefix[-1]


def _chunks(text: str, cue: _Cue, name: str) -> list[tuple[int, int, str]]:
    """Split cue text at its time tags into (start, end, text) pieces; other tags vanish.

    A time tag must lie within the cue and not go back in time; one that never
    closes (``word<00:00:01.0``) is an error, not text.
    """
    starts, pieces = [cue.start_ms], [[]]  # pieces[i]: the text of chunk i, in parts
    pos = 0
    for match in _TAG.finditer(text):
        pieces[-1].append(text[pos : match.start()])
        pos = match.end()
        tag = match.group(1).strip()
        if not tag[:1].isdigit():
            continue
        time = _TAG_TIME.fullmatch(tag)
        if time is None:
            raise _fail(name, f"{cue.where}: bad word time tag")
        ms = _ms(*time.groups(), name=name, where=cue.where)
        if ms < starts[-1]:
            raise _fail(name, f"{cue.where}: word time tag <{tag}> goes back in time")
        if ms > cue.end_ms:
            raise _fail(name, f"{cue.where}: word time tag <{tag}> after the cue end")
        starts.append(ms)
        pieces.append([])
    pieces[-1].append(text[pos:])
    texts = ["".join(parts) for parts in pieces]
    for part in texts:
        if _OPEN_TIME_TAG.search(part):  # named, never quoted: errors echo no file content
            raise _fail(name, f"{cue.where}: a word time tag is not closed")
    ends = [*starts[1:], cue.end_ms]
    return list(zip(starts, ends, texts, strict=True))


def tokens_of(text: str) -> list[str]:
    """Words and bracketed tags of tag-free text; markup, entities, '<' and '>' removed."""
    text = html.unescape(_ASS_TAG.sub(" ", text)).translate(_ANGLES)  # '>>': speaker change
    tokens = []
    for token in _TOKEN.findall(text):
        if token.startswith("["):
            tokens.append("[" + " ".join(token[1:-1].split()) + "]")
        elif any(ch.isalnum() for ch in token):
            tokens.append(token)  # a token of punctuation only (-, ♪, ...) is no word
    return tokens


def spread(tokens: Sequence[str], start_ms: int, end_ms: int) -> list[Word]:
    """Split [start_ms, end_ms] among tokens by character count, in integer ms.

    Contiguous and exact: the first starts at start_ms, each ends where the next
    starts, the last ends at end_ms.
    """
    total = sum(len(t) for t in tokens)
    words, done, prev = [], 0, start_ms
    for token in tokens:
        done += len(token)
        nxt = start_ms + (end_ms - start_ms) * done // total
        words.append(Word(token, prev, nxt))
        prev = nxt
    return words


def _rolls(cues: Sequence[_Cue]) -> bool:
    """Whether cues roll: most begin with the last line of the cue before (at least two)."""
    shown = [[_plain(x) for x in c.lines if x.strip()] for c in cues]
    shown = [lines for lines in shown if lines]
    repeats = sum(now[0] == before[-1] for before, now in pairwise(shown))
    return repeats >= 2 and 2 * repeats >= len(shown) - 1


def _words_from_cues(cues: Sequence[_Cue], name: str) -> Captions:
    auto = any(_TIME_TAG.search(line) for cue in cues for line in cue.lines)
    rolling = auto or _rolls(cues)
    timed: list[Word] = []
    previous: list[str] = []
    for cue in cues:
        lines = [line for line in cue.lines if line.strip()]
        if rolling:
            plains = [_plain(line) for line in lines]
            new = lines[_repeated(lines, plains, previous) :]
            previous = plains
        else:
            new = lines
        for start, end, text in _chunks(" ".join(new), cue, name):
            tokens = tokens_of(text)
            if tokens:
                timed.extend(spread(tokens, start, end))
    timed.sort(key=lambda w: w.start_ms)  # stable: cue order kept for equal starts
    words = tuple(w for w in timed if not w.text.startswith("["))
    non_speech = tuple(w for w in timed if w.text.startswith("["))
    kind: Literal["auto", "manual"] = "auto" if auto else "manual"
    log.debug("%s: %s captions, %d words, %d non-speech", name, kind, len(words), len(non_speech))
    return Captions(words=words, kind=kind, non_speech=non_speech)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the words of a caption file as JSON lines; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m ingest.captions", description=__doc__)
    parser.add_argument("file", help="a .vtt, .srt or .json3 caption file")
    args = parser.parse_args(argv)
    try:
        captions = parse_captions(args.file)
    except (CaptionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    for w in captions.words:
        print(json.dumps({"text": w.text, "start_ms": w.start_ms, "end_ms": w.end_ms}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
