from pathlib import Path

import pytest

from ingest import profiles
from ingest.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(REPO.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_pipelines_yaml_loads(path):
    settings = profiles.load(path)
    assert {"local", "portable", "dataflow", "flink", "spark"} <= set(settings.profiles)
    assert (
        settings.ingest.core.audio.frames_per_segment(settings.ingest.core.segments.segment_ms)
        == 188
    )


def test_local_profile_args_and_user_flags_come_last():
    local = profiles.load().profile("local")
    args = local.pipeline_args(["--direct_num_workers=2"])
    assert args[0] == "--runner=FnApiRunner"
    assert "--direct_running_mode=multi_processing" in args
    assert args[-1] == "--direct_num_workers=2"


def test_dataflow_names_what_is_missing():
    dataflow = profiles.load().profile("dataflow")
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
    s = profiles.load(
        overrides=["ingest.filters.max_duration_s=null", "ingest.segments.segment_ms=4000"]
    )
    assert s.ingest.core.filters.max_duration_s is None
    assert s.ingest.core.segments.segment_ms == 4000
    with pytest.raises(ConfigError, match="expected an integer"):
        profiles.load(overrides=["ingest.segments.segment_ms=five"])
    with pytest.raises(ConfigError, match="no key 'bogus'"):
        profiles.load(overrides=["ingest.segments.bogus=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        profiles.load(overrides=["ingest.segments.segment_ms"])


@pytest.mark.parametrize(
    "text, match",
    [
        ("ingest: {audio: {n_mels: 0}}\n", "n_mels must be > 0"),
        ("ingest: {frames: {typo: 1}}\n", "unknown keys \\['typo'\\]"),
        ("ingest: {download: {max_height: -1}}\n", "max_height"),
        ("profiles: {x: {runner: NoSuchRunner}}\n", "NoSuchRunner"),
        ("other: 1\n", "unknown top-level keys"),
        ("ingest: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_key(tmp_path, text, match):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        profiles.load(p)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: \\['dataflow'"):
        profiles.load().profile("nope")


def test_shard_limits_are_shards_own_with_their_one_minimum():
    from shards.writer import MIN_SHARD_BYTES, ShardLimits

    assert profiles.ShardConfig().limits == ShardLimits()
    assert profiles.ShardConfig(max_bytes=MIN_SHARD_BYTES).limits.max_bytes == MIN_SHARD_BYTES
    with pytest.raises(ConfigError, match=f"ingest.shards: max_bytes must be >= {MIN_SHARD_BYTES}"):
        profiles.load(overrides=[f"ingest.shards.max_bytes={MIN_SHARD_BYTES - 1}"])
    with pytest.raises(ConfigError, match="max_samples must be >= 1"):
        profiles.ShardConfig(max_samples=0)
