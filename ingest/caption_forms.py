"""YouTube's ``json3`` caption format to timed words.

A json3 file is one JSON object whose ``events`` list holds the caption events:

- window events (no ``segs``) only set up where captions are drawn;
- a line event: ``tStartMs``, ``dDurationMs`` and ``segs``, each seg a piece of text
  (``utf8``); in ASR captions each seg is a word (with its leading space) that starts
  ``tOffsetMs`` after the event (the first seg has none: it starts with the event);
- ``aAppend: 1`` events with a ``"\\n"`` seg only break the line on screen.

Unlike the rolling VTT, json3 states each word once. A word ends where the next word
starts, or at its event's end when nothing follows sooner. Files without ``tOffsetMs``
(manual captions) have their event text spread over the event by length, as manual VTT
cues are. Bracketed tags (``[Music]``) are non-speech, as in VTT.

Anything that is not this structure is a :class:`~ingest.captions.CaptionError` naming
the event, never a crash: the video's row records it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from ingest.captions import CaptionError, Captions, Word, spread, tokens_of

log = logging.getLogger(__name__)

MAX_MS = 2**53  # times past this are no real times (and lose precision as floats)


def _fail(name: str, problem: str) -> CaptionError:
    return CaptionError(f"{name}: {problem}")


def _ms(event: dict[str, Any], key: str, name: str, where: str, default: int | None) -> int:
    value = event.get(key, default)
    if type(value) is not int or not 0 <= value < MAX_MS:  # bool and float are refused too
        raise _fail(name, f"{where}: {key} must be a whole number of ms >= 0")
    return value


def _pieces(event: dict[str, Any], name: str, where: str) -> list[tuple[int | None, str]]:
    """(offset or None, text) of each seg of a line event."""
    segs = event["segs"]
    if not isinstance(segs, list):
        raise _fail(name, f"{where}: segs is not a list")
    out = []
    for seg in segs:
        if not isinstance(seg, dict) or not isinstance(seg.get("utf8", ""), str):
            raise _fail(name, f"{where}: a seg is not an object with utf8 text")
        offset = _ms(seg, "tOffsetMs", name, where, 0) if "tOffsetMs" in seg else None
        out.append((offset, seg.get("utf8", "")))
    return out


def parse_json3(text: str, name: str = "<string>") -> Captions:
    """Parse YouTube json3 captions (ASR with word offsets, or manual lines)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        at = f" at line {line}" if line else ""
        raise _fail(name, f"json3 does not parse{at}") from None
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise _fail(name, "json3 has no events list")
    lines: list[tuple[int, int, list[tuple[int | None, str]]]] = []
    for i, event in enumerate(events, start=1):
        where = f"event {i}"
        if not isinstance(event, dict):
            raise _fail(name, f"{where}: not an object")
        if "segs" not in event:
            continue  # a window definition
        start = _ms(event, "tStartMs", name, where, None)
        end = start + _ms(event, "dDurationMs", name, where, 0)
        pieces = _pieces(event, name, where)
        if any(piece.strip() for _, piece in pieces):
            lines.append((start, end, pieces))
    auto = any(offset is not None for *_, pieces in lines for offset, _ in pieces)
    timed = _auto_words(lines) if auto else _manual_words(lines)
    timed.sort(key=lambda w: w.start_ms)
    words = tuple(w for w in timed if not w.text.startswith("["))
    non_speech = tuple(w for w in timed if w.text.startswith("["))
    kind: Literal["auto", "manual"] = "auto" if auto else "manual"
    log.debug("%s: json3 %s captions, %d words", name, kind, len(words))
    return Captions(words=words, kind=kind, non_speech=non_speech)


def _auto_words(lines: list[tuple[int, int, list[tuple[int | None, str]]]]) -> list[Word]:
    """Each seg from its event's start plus its offset to the next seg's start (any event's),
    at most to its event's end; a seg of several tokens is spread over that span."""
    starts = sorted(
        (start + (offset or 0), start, end, piece)
        for start, end, pieces in lines
        for offset, piece in pieces
        if piece.strip()
    )
    later: list[int | None] = [None] * len(starts)  # the first start after each one's
    for k in range(len(starts) - 2, -1, -1):
        nxt = starts[k + 1][0]
        later[k] = nxt if nxt > starts[k][0] else later[k + 1]
    words: list[Word] = []
    for k, (at, _start, end, piece) in enumerate(starts):
        stop = max(at, end if later[k] is None else min(end, later[k]))
        tokens = tokens_of(piece)
        if tokens:
            words.extend(spread(tokens, at, stop))
    return words


def _manual_words(lines: list[tuple[int, int, list[tuple[int | None, str]]]]) -> list[Word]:
    words: list[Word] = []
    for start, end, pieces in lines:
        tokens = tokens_of("".join(piece for _, piece in pieces))
        if tokens:
            words.extend(spread(tokens, start, end))
    return words
