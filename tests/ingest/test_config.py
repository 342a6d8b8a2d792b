"""ingest.config: pipelines.yaml into typed settings, its defaults, profiles and errors."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ingest import config
from ingest.config import ConfigError
from shards.writer import ShardLimits

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in REPO.glob("*.yaml") if not p.name.startswith(".")),  # not .hadolint.yaml
    ids=lambda p: p.name,
)
def test_every_shipped_pipelines_yaml_loads(path):
    settings = config.load(path)
    assert {"local", "portable", "dataflow", "flink", "spark"} <= set(settings.profiles)
    assert (
        settings.ingest.core.audio.frames_per_segment(settings.ingest.core.segments.segment_ms)
        == 188
    )


def test_local_profile_args_and_user_flags_come_last():
    local = config.load().profile("local")
    args = local.pipeline_args(["--direct_num_workers=2"])
    assert args[0] == "--runner=FnApiRunner"
    assert "--direct_running_mode=multi_processing" in args
    assert args[-1] == "--direct_num_workers=2"


def test_dataflow_names_what_is_missing():
    dataflow = config.load().profile("dataflow")
    with pytest.raises(
        ConfigError, match="needs project, region, temp_location, sdk_container_image"
    ):
        dataflow.pipeline_args([])
    with pytest.raises(ConfigError, match="needs sdk_container_image"):
        dataflow.pipeline_args(["--project=p", "--region=r", "--temp_location=gs://b/t"])
    args = dataflow.pipeline_args(
        ["--project=p", "--region=r", "--temp_location=gs://b/t", "--sdk_container_image=img"]
    )
    assert "--experiments=use_runner_v2" in args


def test_overrides_are_typed_and_checked():
    s = config.load(
        overrides=["ingest.filters.max_duration_s=null", "ingest.segments.segment_ms=4000"]
    )
    assert s.ingest.core.filters.max_duration_s is None
    assert s.ingest.core.segments.segment_ms == 4000
    with pytest.raises(ConfigError, match="expected an integer"):
        config.load(overrides=["ingest.segments.segment_ms=five"])
    with pytest.raises(ConfigError, match="no key 'bogus'"):
        config.load(overrides=["ingest.segments.bogus=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.load(overrides=["ingest.segments.segment_ms"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("ingest: {audio: {n_mels: 0}}\n", "n_mels must be > 0"),
        ("ingest: {frames: {typo: 1}}\n", "unknown keys \\['typo'\\]"),
        ("ingest: {download: {max_height: -1}}\n", "max_height"),
        ("ingest: {limits: {process_deadline_s: 0}}\n", "process_deadline_s must be > 0 or null"),
        ("ingest: {download: {captions_root: ' '}}\n", "captions_root must be a folder or null"),
        ("profiles: {x: {runner: NoSuchRunner}}\n", "NoSuchRunner"),
        ("other: 1\n", "unknown top-level keys"),
        ("ingest: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_key(tmp_path, text, match):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        config.load(p)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: \\['dataflow'"):
        config.load().profile("nope")


# -- one source of defaults, shipped with the package ---------------------------------------


def _fields(obj, prefix: str) -> dict[str, object]:
    """Dotted key -> value for every leaf field of a nested settings dataclass."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out |= _fields(value, f"{prefix}.{f.name}")
        else:
            out[f"{prefix}.{f.name}"] = value
    return out


def _yaml_leaves(node: dict, prefix: str) -> dict[str, object]:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and f"{prefix}.{key}" not in config.OPEN_SECTIONS:
            out |= _yaml_leaves(value, f"{prefix}.{key}")
        else:
            out[f"{prefix}.{key}"] = value
    return out


def test_every_dataclass_default_equals_the_shipped_pipelines_yaml():
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    defaults = _fields(config.IngestConfig(), "ingest")
    # CoreConfig's sections sit directly under ingest: in the file
    defaults = {k.replace("ingest.core.", "ingest."): v for k, v in defaults.items()}
    written = _yaml_leaves(raw["ingest"], "ingest")
    assert sorted(written) == sorted(defaults), "the file and the dataclasses name different keys"
    for key, value in written.items():
        expected = defaults[key]
        got = tuple(value) if isinstance(expected, tuple) else value
        assert got == expected and type(got) is type(expected), (key, value, expected)
    assert config.load().ingest == config.IngestConfig()


def test_the_package_default_is_the_top_level_file():
    shipped = config.default_config()
    assert shipped.read_bytes() == (REPO / "pipelines.yaml").read_bytes()
    assert config.load().ingest == config.load(REPO / "pipelines.yaml").ingest


def test_an_installed_ingest_finds_its_default_config_without_a_checkout(tmp_path):
    """Build the wheel from a copy of the tree, unpack it, and load from elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "pipelines.yaml"):
        shutil.copy(REPO / name, src / name)
    for name in ("ingest", "shards", "model"):
        shutil.copytree(
            REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True
    )
    (wheel,) = (tmp_path / "dist").glob("montage-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "ingest/pipelines.yaml" in names
        assert not any(n.startswith(("devtools/", "tests/", "bench/")) for n in names)
        zf.extractall(site)
    assert (site / "ingest" / "pipelines.yaml").read_bytes() == (
        REPO / "pipelines.yaml"
    ).read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "from ingest import config; s = config.load(); "
        "print(config.default_config()); print(sorted(s.profiles))"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    path, profiles = done.stdout.splitlines()
    assert Path(path) == site / "ingest" / "pipelines.yaml"
    assert "local" in profiles


# -- retired keys and messages that name the key -----------------------------------------------


@pytest.mark.parametrize(
    "text, key, hint",
    [
        ("ingest: {segments: {subsegments: 3}}\n", "ingest.segments.subsegments", "fixed at 3"),
        ("ingest: {download: {max_duration_s: 60}}\n", "ingest.download.max_duration_s", "ingest.filters.max_duration_s"),
    ],
)  # fmt: skip
def test_retired_keys_say_what_to_do_instead(tmp_path, text, key, hint):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(p)
    assert key in str(err.value) and hint in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=re.escape(key)):
        config.load(overrides=[f"{key}=3"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("ingest.segments.min_segments=0", "ingest.segments: min_segments"),
        ("ingest.segments.min_segments=17", "ingest.segments: min_segments"),
        ("ingest.segments.window_stride=0", "ingest.segments: window_stride"),
        ("ingest.audio.fmax=20000.0", "ingest.audio: fmax"),
        ("ingest.audio.quantile=1.5", "ingest.audio: quantile"),
        ("ingest.frames.jpeg_quality=100", "ingest.frames: jpeg_quality"),
        ("ingest.filters.max_duration_s=0", "ingest.filters: max_duration_s"),
        ("ingest.filters.words_window_s=-1", "ingest.filters: words_window_s"),
        ("ingest.download.retries=-1", "ingest.download: retries"),
        ("ingest.download.socket_timeout_s=0", "ingest.download: socket_timeout_s"),
        ("ingest.download.caption_langs=[en.*]", "ingest.download: caption_langs"),
        ("ingest.shards.max_bytes=100", "ingest.shards: max_bytes"),
        ("ingest.shards.max_samples=0", "ingest.shards: max_bytes / max_samples"),
        ("ingest.shards.min_groups=0", "ingest.shards: min_groups"),
        ("ingest.shards.videos_per_group=true", "ingest.shards.videos_per_group: expected an integer"),
    ],
)  # fmt: skip
def test_a_bad_value_is_a_value_error_naming_its_key(override, key):
    with pytest.raises(ValueError, match=re.escape(key)) as err:
        config.load(overrides=[override])
    assert isinstance(err.value, ConfigError) and "\n" not in str(err.value)


def test_shard_limits_are_checked_by_the_shard_writers_own_minimums():
    assert config.ShardConfig(max_bytes=4 * 512).limits == ShardLimits(4 * 512, 2000)
    with pytest.raises(ConfigError, match="max_bytes"):
        config.ShardConfig(max_bytes=4 * 512 - 1)


# -- nested download sections: pacing and breaker ----------------------------------------------


def test_pacing_and_breaker_are_read_as_nested_sections_and_checked_by_key(tmp_path):
    raw = yaml.safe_load((REPO / "pipelines.yaml").read_text())
    raw["ingest"]["download"]["pacing"] = {"videos_per_hour_per_ip": 300, "workers": 8}
    raw["ingest"]["download"]["breaker"]["max_trips"] = 2
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    download = config.load(path).ingest.download
    assert download.pacing == config.PacingConfig(300.0, 8)
    assert download.breaker == config.BreakerConfig(max_trips=2)
    over = config.load(path, ["ingest.download.pacing.workers=auto"]).ingest.download
    assert over.pacing.workers == "auto"
    for assignment, message in [
        (
            "ingest.download.pacing.workers=4.5",
            "ingest.download.pacing.workers: expected int or str",
        ),
        ("ingest.download.pacing.workers=0", "workers must be auto or an integer >= 1"),
        ("ingest.download.breaker.max_share=1.5", "ingest.download.breaker: max_share"),
        ("ingest.download.breaker=3", "ingest.download.breaker: expected a mapping"),
    ]:
        with pytest.raises(config.ConfigError, match=message):
            config.load(path, [assignment])
