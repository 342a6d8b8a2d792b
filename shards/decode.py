"""Members' bytes -> a checked :class:`shards.schema.Sample`, trusting nothing they say.

:func:`decode_sample` is the one way from a sample's members to a ``Sample`` (the
training loader, ``show``, the tests and ``verify`` use it or its parts). A shard
comes from anywhere, so every value is checked before it is used:

- the json, field by field (:func:`parse_meta`): types (a word's text is a string,
  a segment index an integer, never ``2.5`` or ``"3"``), ranges (times in ms >= 0
  and ordered, mel scales finite and > 0, extraction parameters within bounds), no
  field the format does not have; the first bad one is a :class:`FieldError` naming
  its path (``words[3].text``);
- the mel's ``.npy`` (:func:`read_npy`): its header is parsed on its own, without
  pickle, and the array is built only when the bytes that follow hold exactly what
  the header declares, so a header declaring 10**12 bytes costs nothing;
- each frame (:func:`open_frame`): PIL's JPEG parser reads the header and stops, and
  the declared size is held against :data:`MAX_FRAME_PIXELS` before a pixel is
  decoded (PIL's own global limit is left as it is).

Then :func:`shards.schema.check` checks the invariants between fields and members.
Every refusal is a :class:`shards.schema.SampleError` of one line.
"""

from __future__ import annotations

import io
import json
import math
import reprlib
from dataclasses import fields
from typing import Any

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image, JpegImagePlugin

from shards.schema import (
    JSON_MEMBER,
    MEL_MEMBER,
    SCHEMA_VERSION,
    ExtractionParams,
    Sample,
    SampleError,
    SampleMeta,
    WordRecord,
    check,
    frame_member,
)

# Frames are at most 512 x 288 (docs/DESIGN.md section 2); this leaves room for any other
# extraction size while one decoded RGB frame stays under 50 MB.
MAX_FRAME_PIXELS = 4096 * 4096


class FieldError(SampleError):
    """One field of a sample's json has the wrong type or an impossible value.

    ``field`` is its path in the json (``words[3].text``, ``params.n_mels``); the
    message reads ``<where>: <field> <what is wrong>``.
    """

    def __init__(self, where: str, field: str, what: str) -> None:
        super().__init__(where, field, what)  # all in args: it pickles across processes
        self.where, self.field, self.what = where, field, what

    def __str__(self) -> str:
        return f"{self.where}: {self.field} {self.what}"


class MemberError(SampleError):
    """A binary member is not what its kind needs; the message completes "the member ..."."""


def decode_sample(key: str, members: dict[str, bytes]) -> Sample:
    """A sample from its members' bytes by suffix; raises :class:`SampleError`.

    What a member declares never costs more than the member's own size, except a frame,
    whose decoded pixels :data:`MAX_FRAME_PIXELS` bounds (the frames stay undecoded here).
    """
    if JSON_MEMBER not in members:
        raise SampleError(f"{key}: no .json member")
    meta = parse_meta(members[JSON_MEMBER], where=f"{key}.json")
    if meta.key != key:
        raise SampleError(f"{key}: json names key {meta.key!r}")
    frames = []
    for i in range(meta.n_segments):
        name = frame_member(i)
        if name not in members:
            raise SampleError(f"{key}: frame member .{name} missing")
        if why := frame_problem(members[name]):
            raise SampleError(f"{key}: frame member .{name} {why}")
        frames.append(members[name])
    mel = None
    if MEL_MEMBER in members:
        try:
            mel = read_npy(members[MEL_MEMBER])
        except MemberError as exc:
            raise SampleError(f"{key}: .{MEL_MEMBER} does not load: {exc}") from None
    sample = Sample(meta=meta, frames=frames, mel=mel)
    check(sample)
    return sample


def parse_meta(data: bytes | str, where: str = "<json>") -> SampleMeta:
    """A ``.json`` member -> :class:`SampleMeta`, every field checked; ``where`` leads the
    message of a :class:`SampleError` (a :class:`FieldError` for one field)."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SampleError(f"{where}: json does not parse: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise SampleError(f"{where}: json is not an object")
    if raw.get("schema") != SCHEMA_VERSION:
        raise SampleError(
            f"{where}: schema version {_brief(raw.get('schema'))}, "
            f"this reader knows {SCHEMA_VERSION}"
        )
    return _parse_meta(_Json(where), raw)


# --- Binary members ---


def read_npy(data: bytes) -> np.ndarray:
    """The array of a ``.npy`` member: a writable copy, no bigger than ``data``.

    Refuses what is not ``.npy`` (1.0 or 2.0), an object dtype, and a header whose shape
    and dtype declare other than the bytes that follow it. Shape and dtype are for the
    caller to judge (:func:`shards.schema.check`).
    """
    f = io.BytesIO(data)
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise MemberError(f"is .npy version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    except MemberError:
        raise
    except (ValueError, TypeError, EOFError, OSError) as exc:
        raise MemberError(f"is not .npy ({_one_line(exc)})") from None
    if dtype.hasobject or dtype.itemsize == 0:
        raise MemberError(f"has dtype {dtype}, not one of fixed-size numbers")
    if any(d < 0 for d in shape):
        raise MemberError(f"header declares the shape {tuple(shape)}")
    count = math.prod(shape)  # Python ints: a declared 10**12 stays a number
    declared, held = count * dtype.itemsize, len(data) - f.tell()
    if declared != held:
        raise MemberError(
            f"header declares {dtype}{tuple(shape)}, {declared} bytes; the member holds {held}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def open_frame(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> Image.Image:
    """A JPEG opened from its header only, within ``max_pixels``; raises MemberError.

    Only PIL's JPEG parser reads the bytes (not every format ``Image.open`` tries), and
    PIL's global pixel limit is neither consulted nor changed. Nothing is decoded yet:
    the caller decodes (``draft``, ``load``, ``convert``) and closes the image.
    """
    try:
        img = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    except (SyntaxError, OSError, ValueError) as exc:
        raise MemberError(f"does not decode as a JPEG ({_one_line(exc)})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise MemberError(
            f"declares {width}x{height} pixels, more than the {max_pixels} a frame may have"
        )
    return img


def frame_problem(data: bytes) -> str:
    """Why a frame member is not a JPEG of a sane size ("" when it is), from its header."""
    try:
        open_frame(data).close()
    except MemberError as exc:
        return str(exc)
    return ""


# --- The json, field by field ---

# Ranges of the extraction parameters: wide enough for any extraction, narrow enough that
# nothing sized by them (loops over sub-segments, frame sizes) runs away.
_PARAM_RANGES: dict[str, tuple[int, int]] = {
    "segment_ms": (1, 3_600_000),
    "subsegments": (1, 64),
    "sample_rate": (1, 1_000_000),
    "n_fft": (1, 1 << 20),
    "hop_length": (1, 1 << 20),
    "n_mels": (1, 4096),
    "mel_frames": (1, 1 << 20),
    "frame_short_side": (1, 1 << 16),
    "frame_max_long_side": (1, 1 << 16),
}
# Integers the json may hold: exact as a float too (JSON's own number), so times in ms can be
# divided and printed without overflow.
_MAX_INT = 2**53
_MISSING = object()


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlist = _REPR.maxdict = 4


def _brief(value: object) -> str:
    """A short repr, whatever the size of ``value``."""
    return _REPR.repr(value)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _join(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


class _Json:
    """Checks for the values of one json document; each failure is a :class:`FieldError`."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, name: str, expected: str, got: object = _MISSING) -> FieldError:
        what = "is missing" if got is _MISSING else f"must be {expected}, got {_brief(got)}"
        return FieldError(self.where, name, what)

    def obj(self, name: str, value: object, names: set[str]) -> dict:
        """An object with no field outside ``names`` (a missing one fails when read)."""
        if not isinstance(value, dict):
            raise self.fail(name, "an object", value)
        if extra := sorted(set(value) - names):
            raise FieldError(self.where, _join(name, extra[0]), "is not a field of the format")
        return value

    def get(self, name: str, obj: dict, key: str, default: object = _MISSING) -> object:
        if key in obj:
            return obj[key]
        if default is _MISSING:
            raise self.fail(_join(name, key), "")
        return default

    def integer(self, name: str, value: object, lo: int = 0, hi: int = _MAX_INT) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "an integer", value)
        if not lo <= value <= hi:
            span = f">= {lo}" if hi == _MAX_INT else f"in {lo}..{hi}"
            raise self.fail(name, f"an integer {span}", value)
        return value

    def number(self, name: str, value: object, above: float | None = None) -> float:
        """A finite number (an int or a float), greater than ``above`` when given."""
        expected = "a finite number" + (f" > {above:g}" if above is not None else "")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, expected, value)
        try:
            x = float(value)  # an int past the float range overflows
        except OverflowError:
            raise self.fail(name, expected, value) from None
        if not math.isfinite(x) or (above is not None and x <= above):
            raise self.fail(name, expected, value)
        return x

    def string(self, name: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(name, "a string", value)
        return value

    def flag(self, name: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(name, "true or false", value)
        return value

    def items(self, name: str, value: object, length: int | None = None) -> list:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise self.fail(name, "a list" + (f" of {length}" if length is not None else ""), value)
        return value


def _parse_meta(j: _Json, raw: dict) -> SampleMeta:
    j.obj("", raw, {f.name for f in fields(SampleMeta)})

    def get(key: str, default: object = _MISSING) -> object:
        return j.get("", raw, key, default)

    j.integer("schema", get("schema"), SCHEMA_VERSION, SCHEMA_VERSION)  # 1, not true or 1.0
    segments = []
    for i, pair in enumerate(j.items("segments", get("segments"))):
        name = f"segments[{i}]"
        s, e = j.items(name, pair, length=2)
        start = j.integer(f"{name}[0]", s)
        segments.append((start, j.integer(f"{name}[1]", e, lo=start + 1)))
    mel_shape = get("mel_shape")
    if mel_shape is not None:
        dims = j.items("mel_shape", mel_shape, length=3)
        mel_shape = tuple(j.integer(f"mel_shape[{i}]", d) for i, d in enumerate(dims))
    mel_scale = get("mel_scale")
    if mel_scale is not None:
        scales = j.items("mel_scale", mel_scale)
        mel_scale = [j.number(f"mel_scale[{i}]", v, above=0) for i, v in enumerate(scales)]
    words = j.items("words", get("words"))
    non_speech = j.items("non_speech", get("non_speech", []))
    start_ms = j.integer("start_ms", get("start_ms"))
    return SampleMeta(
        video_id=j.string("video_id", get("video_id")),
        url=j.string("url", get("url")),
        title=j.string("title", get("title")),
        window=j.integer("window", get("window")),
        start_ms=start_ms,
        end_ms=j.integer("end_ms", get("end_ms"), lo=start_ms),
        segments=segments,
        words=[_parse_word(j, f"words[{i}]", w) for i, w in enumerate(words)],
        caption_kind=j.string("caption_kind", get("caption_kind")),
        has_audio=j.flag("has_audio", get("has_audio")),
        params=_parse_params(j, get("params")),
        mel_shape=mel_shape,
        mel_scale=mel_scale,
        non_speech=[j.string(f"non_speech[{i}]", t) for i, t in enumerate(non_speech)],
    )


def _parse_word(j: _Json, name: str, raw: object) -> WordRecord:
    w = j.obj(name, raw, {f.name for f in fields(WordRecord)})
    start = j.integer(f"{name}.start_ms", j.get(name, w, "start_ms"))
    return WordRecord(
        text=j.string(f"{name}.text", j.get(name, w, "text")),
        start_ms=start,
        end_ms=j.integer(f"{name}.end_ms", j.get(name, w, "end_ms"), lo=start),
        segment=j.integer(f"{name}.segment", j.get(name, w, "segment")),
        subsegment=j.integer(f"{name}.subsegment", j.get(name, w, "subsegment")),
    )


def _parse_params(j: _Json, raw: object) -> ExtractionParams:
    p = j.obj("params", raw, {f.name for f in fields(ExtractionParams)})
    values: dict[str, Any] = {
        key: j.integer(f"params.{key}", j.get("params", p, key), lo, hi)
        for key, (lo, hi) in _PARAM_RANGES.items()
    }
    fmin = j.number("params.fmin", j.get("params", p, "fmin"))
    if fmin < 0:
        raise j.fail("params.fmin", "a finite number >= 0", fmin)
    values["fmin"] = fmin
    values["fmax"] = j.number("params.fmax", j.get("params", p, "fmax"), above=fmin)
    values["log_offset"] = j.number("params.log_offset", j.get("params", p, "log_offset"), above=0)
    return ExtractionParams(**values)
