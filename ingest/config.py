"""Typed, validated ingest parameters.

Every number the per-video core uses lives here, with the defaults of MERLOT
Reserve's released pipeline (see DESIGN.md section 2). `pipelines.yaml` is
loaded into these dataclasses once (``ingest.profiles``); nothing else reads
raw YAML or dicts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    """How a video's timeline is cut into segments, sub-segments and windows."""

    segment_ms: int = 5000  # one segment = one frame + one mel block + its words
    window_segments: int = 16  # consecutive segments per training sample (80 s)
    window_stride: int = 16  # segments between window starts (== size: no overlap)
    subsegments: int = 3  # audio sub-segments per segment (Reserve: 3 x 60 mel frames)
    min_segments: int = 1  # a trailing partial window is kept if it has at least this many

    def __post_init__(self) -> None:
        _check(self.segment_ms > 0, f"segment_ms must be > 0, got {self.segment_ms}")
        _check(self.window_segments > 0, f"window_segments must be > 0, got {self.window_segments}")
        _check(self.window_stride > 0, f"window_stride must be > 0, got {self.window_stride}")
        _check(self.subsegments > 0, f"subsegments must be > 0, got {self.subsegments}")
        _check(
            1 <= self.min_segments <= self.window_segments,
            f"min_segments must be in [1, window_segments], got {self.min_segments}",
        )


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Log-mel parameters (Reserve: 22,050 Hz mono, 64 mels, 188 frames per 5 s)."""

    sample_rate: int = 22050
    n_fft: int = 1536
    hop_length: int = 588
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 11025.0
    log_offset: float = 0.1  # value = ln(mel + offset) - ln(offset)
    quantile: float = 0.99  # uint8 scale = 255 / max(quantile(mel), 1)

    def __post_init__(self) -> None:
        _check(self.sample_rate > 0, "sample_rate must be > 0")
        _check(self.n_fft > 0 and self.hop_length > 0, "n_fft and hop_length must be > 0")
        _check(self.n_mels > 0, "n_mels must be > 0")
        _check(0 <= self.fmin < self.fmax <= self.sample_rate / 2, "need 0 <= fmin < fmax <= sr/2")
        _check(self.log_offset > 0, "log_offset must be > 0")
        _check(0 < self.quantile <= 1, "quantile must be in (0, 1]")

    def frames_per_segment(self, segment_ms: int) -> int:
        """Mel frames of one segment: centred STFT gives 1 + samples // hop."""
        samples = self.sample_rate * segment_ms // 1000
        return 1 + samples // self.hop_length


@dataclass(frozen=True, slots=True)
class FrameConfig:
    """One JPEG per segment, taken at the segment's midpoint."""

    short_side: int = 288
    max_long_side: int = 512
    jpeg_quality: int = 90  # PIL scale 1..95
    trim_black_bars: bool = True
    black_threshold: int = 24  # luma at or below this counts as black (0..255)

    def __post_init__(self) -> None:
        _check(self.short_side > 0, "short_side must be > 0")
        _check(self.max_long_side >= self.short_side, "max_long_side must be >= short_side")
        _check(1 <= self.jpeg_quality <= 95, "jpeg_quality must be in 1..95")
        _check(0 <= self.black_threshold < 255, "black_threshold must be in 0..254")


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Reserve's video filters; each can be switched off with None."""

    max_duration_s: float | None = 20 * 60
    min_words_per_window: int | None = 50  # some window of `words_window_s` must hold this many
    words_window_s: float = 30.0
    require_captions: bool = True

    def __post_init__(self) -> None:
        _check(self.max_duration_s is None or self.max_duration_s > 0, "max_duration_s must be > 0")
        _check(
            self.min_words_per_window is None or self.min_words_per_window >= 0,
            "min_words_per_window must be >= 0",
        )
        _check(self.words_window_s > 0, "words_window_s must be > 0")


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Everything the per-video core needs."""

    segments: SegmentConfig = field(default_factory=SegmentConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CoreConfig:
        """Build from a plain mapping (one YAML section), rejecting unknown keys."""
        data = dict(data or {})
        parts: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            sub_cls = f.default_factory  # type: ignore[misc]
            parts[f.name] = build_dataclass(sub_cls, data.pop(f.name, None), where=f.name)
        _check(not data, f"unknown core config keys: {sorted(data)}")
        return cls(**parts)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check one YAML value against a field's type; tuples accept YAML lists."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[]") for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def build_dataclass(cls: Any, data: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a flat dataclass from a mapping, with messages naming the key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    _check(not unknown, f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # ConfigError, or a plain ValueError from another module's check
        raise ConfigError(f"{where}: {exc}") from None
