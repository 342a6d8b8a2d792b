"""`pipelines.yaml`, loaded once into typed, validated settings.

The file has two sections: ``ingest`` (the parameters of the per-video core,
the downloader and the shard writer) and ``profiles`` (one per Beam runner:
``runner``, its pipeline ``options`` and the ones it ``requires``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingest.config import ConfigError, CoreConfig, build_dataclass
from ingest.download import DownloadConfig
from shards.writer import ShardLimits

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "pipelines.yaml"
RUNNERS = (
    "DirectRunner",
    "FnApiRunner",
    "PortableRunner",
    "DataflowRunner",
    "FlinkRunner",
    "SparkRunner",
)


_LIMITS = ShardLimits()  # shard limits, their defaults and their minimum are shards/'s


@dataclass(frozen=True, slots=True)
class ShardConfig:
    max_bytes: int = _LIMITS.max_bytes  # roll over before a shard passes this size
    max_samples: int = _LIMITS.max_samples  # ... or this many samples (windows)
    videos_per_group: int = 16  # videos one worker downloads and writes in sequence
    min_groups: int = 8  # at least this many groups (parallelism) when there are videos enough

    def __post_init__(self) -> None:
        if min(self.videos_per_group, self.min_groups) < 1:
            raise ConfigError(f"videos_per_group and min_groups must be >= 1: {self}")
        try:
            self.limits  # noqa: B018 (ShardLimits checks max_bytes and max_samples)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def limits(self) -> ShardLimits:
        """The writer's limits; raises ValueError when they are out of range."""
        return ShardLimits(self.max_bytes, self.max_samples)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    core: CoreConfig = field(default_factory=CoreConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)


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


def parse_ingest(data: dict[str, Any] | None) -> IngestConfig:
    data = dict(data or {})
    download = build_dataclass(DownloadConfig, data.pop("download", None), "ingest.download")
    shards = build_dataclass(ShardConfig, data.pop("shards", None), "ingest.shards")
    try:
        core = CoreConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"ingest.{exc}") from None
    return IngestConfig(core=core, download=download, shards=shards)


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


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """``a.b.c=VALUE`` (VALUE read as YAML) set in place; the path must already exist."""
    key, eq, text = assignment.partition("=")
    if not eq or not key:
        raise ConfigError(
            f"--set {assignment!r}: expected KEY=VALUE, e.g. ingest.filters.max_duration_s=600"
        )
    *parents, leaf = key.split(".")
    node: Any = raw
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"--set {assignment!r}: no section {part!r}")
        node = node[part]
    if not isinstance(node, dict) or leaf not in node:
        raise ConfigError(f"--set {assignment!r}: no key {leaf!r} there")
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {exc}") from None


def load(path: str | Path = DEFAULT_PATH, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read and validate a pipelines.yaml (plus ``--set`` overrides); errors name the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top")
    for assignment in overrides:
        apply_override(raw, assignment)
    unknown = sorted(set(raw) - {"ingest", "profiles"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}")
    try:
        ingest = parse_ingest(raw.get("ingest"))
        profiles = {name: parse_profile(name, p) for name, p in (raw.get("profiles") or {}).items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Settings(ingest=ingest, profiles=profiles)
