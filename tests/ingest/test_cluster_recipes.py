"""The README's cluster recipes.

Dataflow, run as printed (placeholders filled) plus
`--template_location`: the Dataflow runner builds the job it would submit, stages the
pipeline to gs:// (a GCS emulator on loopback) and writes the job file instead of
submitting it. The job must carry the worker image, the dataflow profile's options and
the same graph as the local runner's.

Flink and Spark (their job servers come from Maven Central, out of reach here): each
command, as printed, parses into the options its runner reads, the profile's included."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator

import apache_beam as beam
import fsspec
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from devtools.objectstores import LoopbackGCS
from ingest import config
from ingest.pipeline import build_pipeline
from tests.helpers import ROOT

FILLED = {
    "BUCKET": "montage-test",
    "PROJECT": "montage-project",
    "REGION": "europe-west4",
    "REPO": "montage",
    "TAG": "ci",
    "HOST": "cluster.internal",
    "REGISTRY": "registry.internal/team",
}
IMAGE = "europe-west4-docker.pkg.dev/montage-project/montage/montage-worker:ci"
SLOW = pytest.mark.slow  # the Dataflow runner's job build: 30 to 60 s on 2 busy cores


def readme_recipe(profile: str) -> list[str]:
    """The README's command for ``profile``: its continuation lines joined, split as a shell
    would, placeholders filled and `.venv/bin/python` this interpreter."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f".venv/bin/python -m ingest run --profile {profile} ")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.strip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    command = " ".join(lines)
    for word, value in FILLED.items():
        command = re.sub(rf"\b{word}\b", value, command)
    argv = shlex.split(command)
    assert argv[0] == ".venv/bin/python"
    return [sys.executable, *argv[1:]]


@pytest.fixture(scope="module")
def gcs() -> Iterator[LoopbackGCS]:
    with LoopbackGCS(bucket=FILLED["BUCKET"]) as server:
        yield server


@pytest.fixture(scope="module")
def job(gcs, tmp_path_factory) -> tuple[dict, beam_runner_api_pb2.Pipeline, list[str]]:
    """(the job file, the pipeline staged for the workers, the command run)."""
    tmp = tmp_path_factory.mktemp("dataflow")
    env = dict(os.environ, **gcs.env)
    cmd = readme_recipe("dataflow")
    inputs = cmd[cmd.index("--input") + 1]
    upload = (
        "import fsspec, sys\n"
        "with fsspec.open(sys.argv[1], 'w') as f: f.write('dQw4w9WgXcQ\\nhttps://youtu.be/xyz\\n')"
    )
    subprocess.run([sys.executable, "-c", upload, inputs], env=env, check=True, timeout=120)
    cmd += ["--template_location", str(tmp / "job.json")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = json.loads((tmp / "job.json").read_text())
    staged = spec["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"]
    os.environ.update(gcs.env)  # for this process's gcsfs, only while reading
    try:
        import gcsfs

        gcsfs.GCSFileSystem.clear_instance_cache()
        with fsspec.open(staged, "rb") as f:
            pipeline = beam_runner_api_pb2.Pipeline.FromString(f.read())
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST")
        gcsfs.GCSFileSystem.clear_instance_cache()
    return spec, pipeline, cmd


def stage_names(pipeline: beam_runner_api_pb2.Pipeline) -> set[str]:
    """The labelled steps of the ingest pipeline (its composites and their parts), less the
    inside of `beam.Create`, which each runner expands its own way (Dataflow has no
    reshuffle after its impulse)."""
    return {
        t.unique_name
        for t in pipeline.components.transforms.values()
        if t.unique_name
        and not t.unique_name.startswith("ref_")
        and not t.unique_name.endswith("/MaybeReshuffle")
    }


def top_level_edges(pipeline: beam_runner_api_pb2.Pipeline) -> set[tuple[str, str]]:
    """(producer, consumer) for the pipeline's top-level steps: its shape, runner aside."""
    transforms = pipeline.components.transforms
    top = [transforms[t] for t in pipeline.root_transform_ids]
    while len(top) == 1 and top[0].subtransforms and "/" not in top[0].unique_name:
        top = [transforms[t] for t in top[0].subtransforms]  # the unnamed root composite
    made_by = {pc: t.unique_name for t in top for pc in t.outputs.values()}
    return {(made_by[pc], t.unique_name) for t in top for pc in t.inputs.values() if pc in made_by}


def local_graph(inputs: str, output: str) -> beam_runner_api_pb2.Pipeline:
    settings = config.load()
    args = settings.profile("local").pipeline_args([])
    p = beam.Pipeline(options=PipelineOptions(args))
    build_pipeline(p, inputs, output, settings.ingest, "run")
    return p.to_runner_api()


@SLOW
def test_the_readme_recipe_builds_a_dataflow_job_that_runs_the_worker_image(job):
    spec, _, _ = job
    (pool,) = spec["environment"]["workerPools"]
    images = {c["containerImage"] for c in pool["sdkHarnessContainerImages"]}
    assert images == {IMAGE}
    assert pool["workerHarnessContainerImage"] == IMAGE


@SLOW
def test_the_job_carries_the_dataflow_profile_options_and_the_recipe_flags(job):
    spec, _, cmd = job
    options = spec["environment"]["sdkPipelineOptions"]["options"]
    profile = config.load().profile("dataflow")
    for key, value in profile.options.items():
        if value is None:
            continue
        if isinstance(value, list):
            assert set(value) <= set(options[key]), key
        else:
            assert options[key] == value, key
    assert options["project"] == FILLED["PROJECT"] and options["region"] == FILLED["REGION"]
    assert options["temp_location"].startswith(f"gs://{FILLED['BUCKET']}/tmp/")
    assert spec["environment"]["workerPools"][0]["machineType"] == profile.options["machine_type"]
    assert "use_runner_v2" in spec["environment"]["experiments"]
    assert "--template_location" in cmd and spec["environment"]["version"]["job_type"].endswith(
        "BATCH"
    )


@SLOW
def test_the_staged_graph_has_every_step_of_the_local_pipeline(job):
    _, pipeline, cmd = job
    inputs, output = (cmd[cmd.index(flag) + 1] for flag in ("--input", "--output"))
    local = stage_names(local_graph(inputs, output))
    remote = stage_names(pipeline)
    assert {"ReadInputs", "SkipDone", "ProcessAndWrite", "WriteRows", "Finalize"} <= local
    assert local <= remote, sorted(local - remote)
    edges = top_level_edges(pipeline)
    assert ("ProcessAndWrite", "AllRows") in edges and ("CountRows", "Consolidate") in edges
    assert edges == top_level_edges(local_graph(inputs, output))
    # every environment the workers start is the image
    envs = pipeline.components.environments.values()
    payloads = [beam_runner_api_pb2.DockerPayload.FromString(e.payload) for e in envs]
    assert {p.container_image for p in payloads} == {IMAGE}


@pytest.mark.parametrize(
    ("profile", "runner", "master"),
    [("flink", "FlinkRunner", "flink_master"), ("spark", "SparkRunner", "spark_master_url")],
)
def test_the_flink_and_spark_recipes_give_their_runner_the_cluster_and_the_image(
    profile, runner, master
):
    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions

    from ingest.__main__ import parse_args

    args, beam_args = parse_args(readme_recipe(profile)[3:])  # after `python -m ingest`
    assert args.profile == profile and args.output.startswith("gs://")
    options = PipelineOptions(config.load().profile(profile).pipeline_args(beam_args))
    assert options.view_as(StandardOptions).runner == runner
    portable = options.view_as(PortableOptions)
    assert portable.environment_type == "DOCKER"
    assert portable.environment_config == f"registry.internal/team/montage-worker:{FILLED['TAG']}"
    everything = options.get_all_options()
    assert everything[master] in ("cluster.internal:8081", "spark://cluster.internal:7077")
    if profile == "flink":  # one the job server is published for
        assert everything["flink_version"] == "1.20"
