"""Ingest settings: `pipelines.yaml` loaded once into typed, validated dataclasses.

The file has two sections. ``ingest`` holds every number of the per-video core
(``segments``, ``audio``, ``frames``, ``filters``, with the defaults of MERLOT
Reserve's released pipeline, docs/DESIGN.md section 2), the downloader
(``download``) and the shard writer (``shards``). ``profiles`` holds one entry per
Beam runner: its ``runner``, pipeline ``options`` and the options it ``requires``.

The dataclass defaults are the values of the shipped `pipelines.yaml` (a test
checks it). That file is package data (``ingest/pipelines.yaml`` links to the
top-level file users edit), so an installed ``ingest`` finds it without a checkout.
Every value a user gives is checked here; a bad one raises :class:`ConfigError`
(a ``ValueError``) whose message starts with the key's dotted name.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ingest import ytdlp_options

# Shard limits (and their minimums) are defined once, by the shard writer.
from shards.writer import ShardLimits

RUNNERS = (
    "DirectRunner",
    "FnApiRunner",
    "PortableRunner",
    "DataflowRunner",
    "FlinkRunner",
    "SparkRunner",
)
# Keys that older pipelines.yaml files have and this one does not: what to do instead.
RETIRED_KEYS = {
    "ingest.segments.subsegments": "sub-segments per segment are fixed at 3 by the sample "
    "format (shards.schema.SUBSEGMENTS, which the model is built for); delete the key",
    "ingest.download.max_duration_s": "the one duration limit is ingest.filters.max_duration_s "
    "(checked from the info JSON before any media is fetched, and again after probing); "
    "set that one and delete this key",
}


# Mappings whose keys are not Montage's (yt-dlp's option names): `--set` may add keys there.
OPEN_SECTIONS = ("ingest.download.ytdlp",)


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _require(settings: object, name: str, ok: bool, rule: str) -> None:
    """Raise "NAME RULE, got VALUE" unless ok (the caller prefixes the section)."""
    _check(ok, f"{name} {rule}, got {getattr(settings, name)!r}")


# --- the per-video core -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    """How a video's timeline is cut into segments and windows."""

    segment_ms: int = 5000  # one segment = one frame + one mel block + its words
    window_segments: int = 16  # consecutive segments per training sample (80 s)
    window_stride: int = 16  # segments between window starts (== size: no overlap)
    min_segments: int = 4  # a trailing partial window is kept if it has at least this many

    def __post_init__(self) -> None:
        _require(self, "segment_ms", self.segment_ms > 0, "must be > 0")
        _require(self, "window_segments", self.window_segments > 0, "must be > 0")
        _require(self, "window_stride", self.window_stride > 0, "must be > 0")
        within = 1 <= self.min_segments <= self.window_segments
        _require(self, "min_segments", within, f"must be in [1, {self.window_segments}]")


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
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "log_offset"):
            _require(self, name, getattr(self, name) > 0, "must be > 0")
        _require(self, "fmin", 0 <= self.fmin < self.fmax, "must be in [0, fmax)")
        _require(self, "fmax", self.fmax <= self.sample_rate / 2, "must be <= sample_rate / 2")
        _require(self, "quantile", 0 < self.quantile <= 1, "must be in (0, 1]")

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
        _require(self, "short_side", self.short_side > 0, "must be > 0")
        long_ok = self.max_long_side >= self.short_side
        _require(self, "max_long_side", long_ok, "must be >= short_side")
        _require(self, "jpeg_quality", 1 <= self.jpeg_quality <= 95, "must be in 1..95")
        _require(self, "black_threshold", 0 <= self.black_threshold < 255, "must be in 0..254")


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Reserve's video filters; each can be switched off with None (null in YAML)."""

    max_duration_s: float | None = 1200.0  # also decides "too long" before the download
    min_words_per_window: int | None = 50  # some window of `words_window_s` must hold this many
    words_window_s: float = 30.0
    require_captions: bool = True

    def __post_init__(self) -> None:
        limit, words = self.max_duration_s, self.min_words_per_window
        _require(self, "max_duration_s", limit is None or limit > 0, "must be > 0 or null")
        _require(self, "min_words_per_window", words is None or words >= 0, "must be >= 0 or null")
        _require(self, "words_window_s", self.words_window_s > 0, "must be > 0")


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """How long one video's processing (probe to samples, after its download) may take."""

    process_deadline_s: float | None = 600.0  # then the video is a `timeout` row; null = none

    def __post_init__(self) -> None:
        limit = self.process_deadline_s
        _require(self, "process_deadline_s", limit is None or limit > 0, "must be > 0 or null")


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Everything the per-video core needs."""

    segments: SegmentConfig = field(default_factory=SegmentConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    limits: LimitConfig = field(default_factory=LimitConfig)


# --- the downloader and the shard writer ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """A job-wide request budget, turned into a pause between one worker's attempts
    (``ingest.pacing``; workers cannot share memory, so each paces itself)."""

    videos_per_hour_per_ip: float | None = None  # null: no pacing
    workers: int | str = "auto"  # downloading at once, job-wide; auto: from the runner options

    def __post_init__(self) -> None:
        rate = self.videos_per_hour_per_ip
        _require(self, "videos_per_hour_per_ip", rate is None or rate > 0, "must be > 0 or null")
        ok = self.workers == "auto" or (isinstance(self.workers, int) and self.workers >= 1)
        _require(self, "workers", ok, "must be auto or an integer >= 1")


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When the site pushes back (``rate_limited``, ``sign_in``), a worker stops asking for
    a while instead of burning through its list (``ingest.breaker``)."""

    window: int = 20  # the recent attempts the share is taken over
    min_attempts: int = 5  # the breaker never trips on fewer attempts than this
    max_share: float = 0.5  # trips when pushed-back attempts are more than this share
    backoff_s: float = 60.0  # the first pause; doubled at each trip in a row
    backoff_max_s: float = 1800.0
    max_trips: int = 4  # trips in a row, then the rest of the group is skipped (rate_limited)

    def __post_init__(self) -> None:
        _require(self, "window", self.window >= 1, "must be >= 1")
        within = 1 <= self.min_attempts <= self.window
        _require(self, "min_attempts", within, f"must be in [1, {self.window}]")
        _require(self, "max_share", 0 <= self.max_share < 1, "must be in [0, 1)")
        _require(self, "backoff_s", self.backoff_s >= 0, "must be >= 0")
        ok = self.backoff_max_s >= self.backoff_s
        _require(self, "backoff_max_s", ok, "must be >= backoff_s")
        _require(self, "max_trips", self.max_trips >= 1, "must be >= 1")


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """yt-dlp options (the duration limit is `FilterConfig.max_duration_s`)."""

    max_height: int = 360
    prefer_manual_captions: bool = False
    caption_langs: tuple[str, ...] = ("en",)  # each also matches <lang>-orig and <lang>-<REGION>
    retries: int = 4  # retries after the first attempt, transient failures only
    backoff_s: float = 2.0  # wait before retry k: backoff_s * 2**k, jittered, capped
    backoff_max_s: float = 60.0
    socket_timeout_s: float = 30.0  # the longest gap between two reads
    download_deadline_s: float | None = 1800.0  # wall clock for one attempt, all of it
    min_rate_kb_s: float = 10.0  # a file under this (kB/s, average) after the grace is stopped
    min_rate_grace_s: float = 60.0
    sleep_interval_s: float = 0.0  # yt-dlp's pause before each media download
    cookies_file: str | None = None
    proxy: str | None = None  # one proxy (a pool of one); or a pool:
    proxies: tuple[str, ...] = ()  # each group of videos bound to one of them by hash
    proxies_file: str | None = None  # ... or read from this file, one proxy URL a line
    proxy_fail_after: int = 3  # transient failures in a row that rotate a proxy out
    proxy_cooldown_s: float = 600.0  # ... for this long
    captions_root: str | None = None  # the folder local `captions` paths must lie in; null: none
    ytdlp: dict[str, Any] = field(default_factory=dict)  # more yt-dlp options: ingest.ytdlp_options
    pacing: PacingConfig = field(default_factory=PacingConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    def __post_init__(self) -> None:
        langs_ok = bool(self.caption_langs) and all(
            re.fullmatch(r"[A-Za-z]{2,3}", x) for x in self.caption_langs
        )
        _require(self, "max_height", self.max_height > 0, "must be > 0")
        _require(self, "caption_langs", langs_ok, "must be language codes such as en")
        for name in ("retries", "backoff_s", "backoff_max_s", "sleep_interval_s"):
            _require(self, name, getattr(self, name) >= 0, "must be >= 0")
        _require(self, "socket_timeout_s", self.socket_timeout_s > 0, "must be > 0")
        deadline = self.download_deadline_s
        _require(
            self, "download_deadline_s", deadline is None or deadline > 0, "must be > 0 or null"
        )
        for name in ("min_rate_kb_s", "min_rate_grace_s"):
            _require(self, name, getattr(self, name) >= 0, "must be >= 0")
        root = self.captions_root
        _require(
            self, "captions_root", root is None or bool(root.strip()), "must be a folder or null"
        )
        object.__setattr__(self, "ytdlp", ytdlp_options.check(self.ytdlp))
        most = self.ytdlp.get("max_sleep_interval")
        if most is not None and not 0 < self.sleep_interval_s <= most:
            raise ConfigError(
                f"ytdlp.max_sleep_interval must be >= sleep_interval_s (> 0), got {most!r}"
            )
        one = sum(bool(x) for x in (self.proxy, self.proxies, self.proxies_file)) <= 1
        _require(self, "proxies", one, "cannot be set with proxy or proxies_file: use one of them")
        _require(self, "proxy_fail_after", self.proxy_fail_after >= 1, "must be >= 1")
        _require(self, "proxy_cooldown_s", self.proxy_cooldown_s >= 0, "must be >= 0")


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """Shard sizes (checked by the writer's own `ShardLimits`) and how videos are grouped."""

    max_bytes: int = 1 << 30  # roll over before a shard passes this size
    max_samples: int = 2000  # ... or this many samples (windows)
    videos_per_group: int = 16  # videos one worker downloads and writes in sequence
    min_groups: int = 8  # at least this many groups (parallelism) when there are videos enough

    def __post_init__(self) -> None:
        for name in ("videos_per_group", "min_groups"):
            _require(self, name, getattr(self, name) >= 1, "must be >= 1")
        _ = self.limits  # the writer's own check of max_bytes and max_samples

    @property
    def limits(self) -> ShardLimits:
        try:
            return ShardLimits(max_bytes=self.max_bytes, max_samples=self.max_samples)
        except ValueError as exc:
            raise ConfigError(f"max_bytes / max_samples: {exc}") from None


@dataclass(frozen=True, slots=True)
class IngestConfig:
    core: CoreConfig = field(default_factory=CoreConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)


# --- runner profiles ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    runner: str
    options: dict[str, Any]
    requires: tuple[str, ...] = ()
    description: str = ""

    def pipeline_args(self, extra: list[str]) -> list[str]:
        """Beam command-line flags: the profile's options, then the user's (later wins)."""
        args = [f"--runner={self.runner}"]
        for key, value in self.options.items():
            if value is None:
                continue
            if isinstance(value, bool):
                if value:
                    args.append(f"--{key}")
            elif isinstance(value, list):
                args.extend(f"--{key}={v}" for v in value)
            else:
                args.append(f"--{key}={value}")
        args.extend(extra)
        given = {a.split("=", 1)[0].lstrip("-") for a in args if a.startswith("--")}
        missing = [r for r in self.requires if r not in given]
        if missing:
            flags = " ".join(f"--{m}=..." for m in missing)
            raise ConfigError(
                f"profile {self.name!r} ({self.runner}) needs {', '.join(missing)}: "
                f"pass {flags} or set them under profiles.{self.name}.options in pipelines.yaml"
            )
        return args


@dataclass(frozen=True, slots=True)
class Settings:
    ingest: IngestConfig
    profiles: dict[str, Profile]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError(f"no profile {name!r}; known: {sorted(self.profiles)}")
        return self.profiles[name]


# --- reading YAML into the dataclasses ---------------------------------------------------


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check one YAML value against a field's type; tuples accept YAML lists."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):  # a nested section, e.g. ingest.download.pacing
        return build_dataclass(hint, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], where)
        for option in inner:  # the first type the value fits
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in inner)
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
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
    elif origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _retired(key: str) -> None:
    if key in RETIRED_KEYS:
        raise ConfigError(f"{key}: no longer a setting: {RETIRED_KEYS[key]}")


def build_dataclass(cls: Any, data: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a flat dataclass from a mapping, with messages naming the key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        _retired(f"{where}.{key}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    _check(not unknown, f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the dataclass's own check, which names the field
        raise ConfigError(f"{where}: {exc}") from None


def parse_ingest(data: dict[str, Any] | None) -> IngestConfig:
    """The ``ingest`` section; a section left out takes its defaults."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"ingest: expected a mapping, got {type(data).__name__}")
    sections = {f.name: f.default_factory for f in dataclasses.fields(CoreConfig)}  # type: ignore[misc]
    sections |= {"download": DownloadConfig, "shards": ShardConfig}
    unknown = sorted(set(data) - set(sections))
    _check(not unknown, f"ingest: unknown keys {unknown}; known: {sorted(sections)}")
    built = {
        name: build_dataclass(cls, data.get(name), f"ingest.{name}")
        for name, cls in sections.items()
    }
    download, shards = built.pop("download"), built.pop("shards")
    return IngestConfig(core=CoreConfig(**built), download=download, shards=shards)


def parse_profile(name: str, data: Any) -> Profile:
    where = f"profiles.{name}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(set(data) - {"runner", "options", "requires", "description"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    runner = data.get("runner")
    if runner not in RUNNERS:
        raise ConfigError(f"{where}.runner: {runner!r} is not one of {RUNNERS}")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options: expected a mapping")
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ConfigError(f"{where}.requires: expected a list of option names")
    return Profile(name, runner, dict(options), tuple(requires), str(data.get("description", "")))


def _is_open(path: list[str]) -> bool:
    """Whether ``path`` lies in a mapping of free keys, where --set may add keys."""
    dotted = ".".join(path)
    return any(dotted == s or dotted.startswith(s + ".") for s in OPEN_SECTIONS)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """``a.b.c=VALUE`` (VALUE read as YAML) set in place; the path must already exist,
    except inside `OPEN_SECTIONS` (``ingest.download.ytdlp.impersonate=chrome``)."""
    key, eq, text = assignment.partition("=")
    if not eq or not key:
        raise ConfigError(
            f"--set {assignment!r}: expected KEY=VALUE, e.g. ingest.filters.max_duration_s=600"
        )
    _retired(key)
    *parents, leaf = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parents):
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: no section {part!r}")
        if node.get(part) is None and _is_open(parents[: depth + 1]):
            node[part] = {}  # a free mapping (yt-dlp options) may gain a section
        if part not in node:
            raise ConfigError(f"--set {assignment!r}: no section {part!r}")
        node = node[part]
    if not isinstance(node, dict) or (leaf not in node and not _is_open([*parents, leaf])):
        ytdlp = leaf in ytdlp_options.ALLOWED or leaf in ytdlp_options.REFUSED
        hint = f" (yt-dlp options go under ingest.download.ytdlp.{leaf})" if ytdlp else ""
        raise ConfigError(f"--set {assignment!r}: no key {leaf!r} there{hint}")
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {exc}") from None


def default_config() -> Traversable:
    """The shipped pipelines.yaml, inside the installed ``ingest`` package."""
    return resources.files("ingest").joinpath("pipelines.yaml")


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read and validate a pipelines.yaml (default: the shipped one) plus ``--set`` overrides."""
    source = default_config() if path is None else Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top")
    for assignment in overrides:
        apply_override(raw, assignment)
    unknown = sorted(set(raw) - {"ingest", "profiles"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {unknown}")
    try:
        ingest = parse_ingest(raw.get("ingest"))
        profiles = {name: parse_profile(name, p) for name, p in (raw.get("profiles") or {}).items()}
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return Settings(ingest=ingest, profiles=profiles)
