"""train.py: shipped configs, links, logging, checkpoints and exact resume, bad samples,
validation on its own, and two DDP nodes on loopback."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from model.config import ModelConfig
from model.train.callbacks import weights_digest
from model.train.cli import SHAPES, MontageCLI, main
from tests.helpers import (
    ROOT,
    recorder,
    run_two_nodes,
    steps_of,
    tiny_config,
    write_corrupt_shard,
    write_shards,
)

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
PRESET_CONFIGS = [p for p in CONFIGS if p.stem in ("tiny", "base", "large")]
VAL_WINDOWS = 2 * 2 * 3  # val shards x videos per shard x windows per video (helpers)
DIRECTION_METRICS = ("r1", "r5", "r10", "medr")


pytestmark = pytest.mark.usefixtures("cli_in_process")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    write_shards(root / "train", 4, prefix="train")
    write_shards(root / "val", 2, prefix="val")
    return {"train": root / "train", "val": root / "val"}


def keys_of(out: Path, rank: int = 0) -> list[list[str]]:
    return [row["keys"] for row in steps_of(out, rank)]


def end_of(out: Path, rank: int = 0) -> dict:
    return json.loads((out / f"end-rank{rank}.json").read_text())


def logged(runs: Path) -> list[dict[str, str]]:
    """Rows of the CSV logger's metrics of the last run under `runs`."""
    versions = (runs / "csv").glob("version_*/metrics.csv")
    path = max(versions, key=lambda p: int(p.parent.name.removeprefix("version_")))
    with path.open() as f:
        return list(csv.DictReader(f))


def last_value(rows: list[dict[str, str]], key: str) -> float:
    return float([r[key] for r in rows if r.get(key)][-1])


# ----------------------------------------------------------------------------- configs


class ParseOnly(MontageCLI):
    """Parses (and links) a config without building model, data or trainer."""

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def parse(*args: str):
    return ParseOnly(args=["--data.train_shards", "unused/", *args], run=False).config


def _layers(path: Path) -> list[str]:
    """The --config arguments that make ``path`` whole: a preset config stands alone; the
    others hold only their changes to one (demo.yaml to tiny.yaml, demo-base.yaml to
    base.yaml)."""
    if path in PRESET_CONFIGS:
        return ["--config", str(path)]
    _, _, preset = path.stem.partition("-")
    return ["--config", str(ROOT / "configs" / f"{preset or 'tiny'}.yaml"), "--config", str(path)]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_links_model_shapes_to_the_loader(path):
    cfg = parse(*_layers(path))
    preset = path in PRESET_CONFIGS
    assert cfg.model.size == (path.stem if preset else path.stem.partition("-")[2] or "tiny")
    model = ModelConfig.from_name(cfg.model.size, **(cfg.model.config or {}))
    for name in SHAPES:  # the loader produces what the model takes
        value = cfg.data[name]
        assert (tuple(value) if isinstance(value, list) else value) == getattr(model, name)
    opt = cfg.model
    assert (opt.weight_decay, tuple(opt.betas), opt.eps) == (0.1, (0.9, 0.98), 1e-6)  # Reserve's
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.model.max_steps == cfg.trainer.max_steps, "the schedule spans the run"
    if cfg.model.size in ("base", "large"):
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
        assert cfg.trainer.strategy == ("ddp" if preset else "auto")  # demo-base: one GPU


def test_demo_config_changes_tiny_and_keeps_its_own_outputs():
    demo = parse(*_layers(ROOT / "configs" / "demo.yaml"))
    tiny = parse(*_layers(ROOT / "configs" / "tiny.yaml"))
    assert demo.model.objectives.combinatorial.weight == 1.0
    assert demo.model.objectives.span.weight == 0.0
    assert (demo.data.max_segments, demo.data.batch_size) == (4, 16)
    for cfg, name in ((demo, "demo"), (tiny, "tiny")):  # lists are replaced, not appended to
        (ckpt,) = [c for c in cfg.trainer.callbacks if c.class_path.endswith("ModelCheckpoint")]
        assert cfg.trainer.default_root_dir == f"runs/{name}"
        assert ckpt.init_args.dirpath == f"runs/{name}/checkpoints", "placed under the root"
        assert cfg.trainer.logger is True  # TensorBoard + CSV under default_root_dir


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_shipped_config_names_an_output_path_that_default_root_dir_would_not_move(path):
    def keys(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield key
                yield from keys(value)
        elif isinstance(node, list):
            for value in node:
                yield from keys(value)

    named = {"dirpath", "save_dir", "log_dir"} & set(keys(yaml.safe_load(path.read_text())))
    assert not named, f"{path.name} names {named}"


def test_all_three_configs_ship():
    assert {p.stem for p in CONFIGS} >= {"tiny", "base", "large"}


def test_a_misspelled_config_key_fails_to_parse(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["model"]["learning_rate"] = cfg["model"].pop("lr")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit):
        parse("--config", str(bad))
    cfg["model"]["lr"] = cfg["model"].pop("learning_rate")
    cfg["model"]["config"] = {"frame_sise": [64, 96]}  # a ModelConfig field, checked by the link
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises((SystemExit, TypeError)):
        parse("--config", str(bad))


# ----------------------------------------------------------------------------- fit and validate


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> tuple[Path, MontageCLI]:
    """4 steps of tiny through `train.py fit`, validating after each epoch of 2 steps."""
    out = tmp_path_factory.mktemp("fit")
    config = tiny_config(out)
    cli = main(
        [
            "fit",
            "--config",
            str(config),
            "--data.train_shards",
            str(shards["train"]),
            "--data.val_shards",
            str(shards["val"]),
            "--data.steps_per_epoch",
            "2",
            "--trainer.max_steps",
            "4",
        ]
    )
    return out, cli


def test_fit_links_vocabulary_shapes_and_schedule_between_data_model_and_trainer(trained):
    _, cli = trained
    model, data = cli.model, cli.datamodule
    assert model.model_config.vocab_size == data.vocab_size == 258, "the tokenizer decides"
    assert model.model_config.max_segments == data.decode.max_segments == 4
    assert model.model_config.frame_size == data.decode.frame_size == (64, 96)
    assert model.hparams.max_steps == 4, "the schedule ends with the run"
    assert cli.trainer.global_step == 4


def test_fit_logs_terms_scales_lr_throughput_skips_and_retrieval_to_csv_and_tensorboard(trained):
    out, cli = trained
    assert {"perf/samples_per_s", "perf/data_wait_s"} <= set(cli.trainer.progress_bar_metrics)
    rows = logged(out / "runs")
    train = ["train/loss", "train/span/frame", "train/span/audio", "train/span/text"]
    perf = ["perf/samples_per_s", "perf/data_wait_s", "perf/step_s", "data/skipped"]
    scales = ["scale/span/frame", "scale/span/audio", "scale/span/text"]
    lrs = ["lr-AdamW/decay", "lr-AdamW/no_decay"]
    retrieval = [f"val/{d}_{m}" for d in ("t2v", "v2t", "a2v", "v2a") for m in DIRECTION_METRICS]
    for key in train + perf + scales + lrs + retrieval + ["val/loss", "val/n"]:
        assert any(r.get(key) for r in rows), f"{key} not logged"
    assert last_value(rows, "perf/samples_per_s") > 0
    assert last_value(rows, "data/skipped") == 0
    assert last_value(rows, "scale/span/frame") == pytest.approx(2.718, abs=0.1)
    assert last_value(rows, "val/n") == VAL_WINDOWS, "retrieval covers every validation window"
    assert len([r for r in rows if r.get("val/n")]) == 2, "retrieval is logged each validation"
    assert list((out / "runs" / "tensorboard").glob("version_*/events.out.tfevents.*"))
    assert {p.name for p in (out / "runs" / "checkpoints").glob("*.ckpt")} >= {
        "last.ckpt",
        "step-0000002.ckpt",
    }


def test_fit_with_configs_merlot_yaml_trains_its_three_terms_and_retrieves_text_video(
    shards, tmp_path
):
    cli = main(
        [
            *("fit", "--config", str(tiny_config(tmp_path)), "--config"),
            str(ROOT / "configs" / "merlot.yaml"),
            *("--data.train_shards", str(shards["train"]), "--data.val_shards", str(shards["val"])),
            *("--data.steps_per_epoch", "2", "--trainer.max_steps", "2"),
        ]
    )
    assert list(cli.model.model.objectives) == ["merlot"]
    head = cli.model.model.objectives["merlot"].mlm_bias
    assert head.shape == (cli.datamodule.vocab_size,), (
        "the vocabulary head has the tokenizer's size"
    )
    rows = logged(tmp_path / "runs")
    terms = ("match", "mlm", "mlm_acc", "order", "order_acc")
    for key in [f"{split}/merlot/{t}" for split in ("train", "val") for t in terms]:
        assert any(r.get(key) for r in rows), f"{key} not logged"
    assert any(r.get("val/t2v_r1") and r.get("val/v2t_r1") for r in rows)
    assert not any(r.get("val/a2v_r1") for r in rows), "no audio: no audio directions"


def test_validate_runs_on_its_own_from_a_checkpoint_and_repeats_the_last_validation(
    trained, shards
):
    out, _ = trained
    fitted = logged(out / "runs")
    cli = main(
        [
            "validate",
            "--config",
            str(out / "tiny.yaml"),
            "--data.val_shards",
            str(shards["val"]),  # no train_shards: validation needs none
            "--ckpt_path",
            str(out / "runs" / "checkpoints" / "last.ckpt"),
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert float(metrics["val/n"]) == VAL_WINDOWS
    for key in ["val/loss", "val/t2v_r1", "val/t2v_medr", "val/a2v_r10", "val/v2a_medr"]:
        assert float(metrics[key]) == pytest.approx(last_value(fitted, key), rel=1e-5), key


# ----------------------------------------------------------------------------- resume


class Interrupted(RuntimeError):
    pass


class InterruptAt(Callback):
    """Fails the run as it starts step `step` + 1: after step `step` and its checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Interrupted(f"stopped at step {self.step}")


def test_resume_from_last_checkpoint_sees_exactly_the_samples_the_interrupted_run_missed(
    shards, tmp_path
):
    """10 steps, 4 per epoch: an uninterrupted run against one killed after step 6 (in the
    middle of epoch 1) and resumed with --ckpt_path last."""
    args = ["--data.train_shards", str(shards["train"]), "--trainer.max_steps", "10"]
    whole = tiny_config(tmp_path / "whole", every=3, callbacks=[recorder(tmp_path / "whole")])
    main(["fit", "--config", str(whole), *args])

    interrupt = {"class_path": f"{__name__}.InterruptAt", "init_args": {"step": 6}}
    cut = tmp_path / "cut"
    first = tiny_config(cut, every=3, callbacks=[recorder(cut / "before"), interrupt])
    with pytest.raises(Interrupted):
        main(["fit", "--config", str(first), *args])
    state = torch.load(cut / "runs" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 6 and state["ShardDataModule"]["consumed"] == 2
    second = tiny_config(cut, every=3, callbacks=[recorder(cut / "after")])
    cli = main(["fit", "--config", str(second), *args, "--ckpt_path", "last"])

    before, after, full = (
        keys_of(cut / "before"),
        keys_of(cut / "after"),
        keys_of(tmp_path / "whole"),
    )
    assert len(full) == 10 and len(before) == 6 and len(after) == 4
    assert before + after == full, "no sample repeated or skipped, in the same order"
    assert cli.trainer.global_step == end_of(cut / "after")["step"] == 10
    # same data, masks, optimizer and schedule state: the same weights, bit for bit
    assert end_of(cut / "after")["weights"] == end_of(tmp_path / "whole")["weights"]


def test_default_root_dir_alone_moves_checkpoints_and_logs_and_ckpt_path_last_finds_them(
    shards, tmp_path, monkeypatch
):
    """The shipped tiny.yaml, run from another working directory with a relative
    --trainer.default_root_dir: every output lands under it, and a second run resumes
    from it with --ckpt_path last."""
    monkeypatch.chdir(tmp_path)
    small = ["--model.config", "{max_segments: 4}", "--data.batch_size", "3"]
    small += [
        "--data.num_workers",
        "0",
        "--data.steps_per_epoch",
        "2",
        "--data.shuffle_buffer",
        "4",
    ]
    small += ["--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0"]
    args = ["--config", str(ROOT / "configs" / "tiny.yaml"), *small]
    args += ["--data.train_shards", str(shards["train"]), "--trainer.default_root_dir", "my/run"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *args, "--trainer.max_steps", "2"])
    said = [str(w.message) for w in caught]
    for unwanted in ("LeafSpec", "`IterableDataset` has `__len__`"):
        assert not [m for m in said if unwanted in m], f"{unwanted!r} warned: {said}"
    root = tmp_path / "my" / "run"
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert list((root / "tensorboard").glob("version_0/events.out.tfevents.*"))
    assert (root / "csv" / "version_0" / "hparams.yaml").is_file()
    assert not (tmp_path / "runs").exists(), "nothing is written where the config named"
    cli = main(["fit", *args, "--trainer.max_steps", "4", "--ckpt_path", "last"])
    assert cli.trainer.global_step == 4
    state = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 4, "resumed from step 2, not started again"


def test_train_offers_only_the_subcommands_that_work():
    out = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "fit" in out.stdout and "validate" in out.stdout
    assert "predict" not in out.stdout and "{fit,validate}" in out.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "test"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "test" in bad.stderr


# ----------------------------------------------------------------------------- bad samples


def test_training_goes_on_past_corrupted_samples_and_the_counter_shows_them(shards, tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    good, bad = write_corrupt_shard(train / "mixed-000.tar")
    out = tmp_path / "out"
    config = tiny_config(out, callbacks=[recorder(out / "keys")])
    args = [
        "--data.train_shards",
        str(train),
        "--trainer.max_steps",
        "8",
    ]  # 3 a batch: never all bad
    cli = main(["fit", "--config", str(config), *args])
    assert cli.trainer.global_step == 8, "training went on"
    seen = {k for batch in keys_of(out / "keys") for k in batch}
    assert seen <= set(good) and not seen & set(bad)
    skipped = cli.datamodule.skipped_total
    assert skipped >= len(bad), "each pass over the shard drops both bad samples"
    assert float(cli.trainer.callback_metrics["data/skipped"]) == skipped
    assert last_value(logged(out / "runs"), "data/skipped") == skipped


# ----------------------------------------------------------------------------- two nodes


@pytest.mark.slow  # two interpreters importing torch + Lightning, then gloo on loopback
def test_two_nodes_read_disjoint_shards_run_equal_steps_and_end_with_equal_weights(tmp_path):
    """`train.py fit` twice, as NODE_RANK 0 and 1 of a 2-node DDP job (gloo, loopback)."""
    train = write_shards(tmp_path / "train", 4, prefix="train")  # key -> shard
    val = write_shards(tmp_path / "val", 3, prefix="val")  # 3 shards: uneven validation
    out = tmp_path / "out"
    config = tiny_config(out, every=2, callbacks=[recorder(out / "keys")])
    cmd = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(config)]
    cmd += [
        "--data.train_shards",
        str(tmp_path / "train"),
        "--data.val_shards",
        str(tmp_path / "val"),
    ]
    cmd += ["--data.steps_per_epoch", "2", "--trainer.max_steps", "4"]
    cmd += ["--trainer.strategy", "ddp", "--trainer.devices", "1", "--trainer.num_nodes", "2"]
    run_two_nodes(cmd, tmp_path, timeout=180, OMP_NUM_THREADS="1")

    steps = [steps_of(out / "keys", rank) for rank in (0, 1)]
    assert [len(s) for s in steps] == [4, 4], "both ranks run the same number of steps"
    for epoch in (0, 1):  # the split changes with each epoch's shard order
        shards = [
            {train[k] for row in s if row["epoch"] == epoch for k in row["keys"]} for s in steps
        ]
        assert shards[0] and shards[1] and not shards[0] & shards[1], "disjoint shards"
    ends = [end_of(out / "keys", rank) for rank in (0, 1)]
    assert ends[0]["step"] == ends[1]["step"] == 4
    assert ends[0]["weights"] == ends[1]["weights"], "replicas end with equal weights"
    saved = torch.load(out / "runs" / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4 and weights_digest(saved["state_dict"]) == ends[0]["weights"]
    rows = logged(out / "runs")
    assert last_value(rows, "val/n") == len(val), "retrieval gathers both ranks' windows"


@pytest.mark.parametrize("command", ["fit", "validate"])
def test_a_shard_path_that_names_nothing_stops_train_py_at_once_in_one_line(tmp_path, command):
    option = "train_shards" if command == "fit" else "val_shards"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        command,
        "--config",
        str(ROOT / "configs/tiny.yaml"),
    ]
    cmd += [f"--data.{option}", str(tmp_path / "nothing"), "--trainer.default_root_dir"]
    done = subprocess.run(
        [*cmd, str(tmp_path / "run")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "Tip:" not in done.stdout + done.stderr, "Lightning's advertising is silenced"
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"train.py: data.{option}: {tmp_path / 'nothing'}: no such file or folder"
    assert not (tmp_path / "run" / "checkpoints").exists(), "stopped before training"
