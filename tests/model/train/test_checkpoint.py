"""model/train/checkpoint.py, as train.py wires it: checkpoints load with weights_only=True
from a path or URL, are read afresh each time, and are saved whole or not at all.

Every test goes through the checkpoint plugin of a trainer that train.py's CLI built, so it
tests the wiring as well as the plugin."""

from __future__ import annotations

import errno
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from devtools.localserve import LocalServer
from model.cli.main import main as model_main
from model.train.checkpoint import TMP_MARK, CheckpointError, SafeCheckpointIO
from model.train.cli import MontageCLI, main
from tests.helpers import ROOT, recorder, steps_of, tiny_config, write_shards

TRAIN = ROOT / "train.py"


pytestmark = pytest.mark.usefixtures("cli_in_process")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    write_shards(root / "train", 2, prefix="train")
    write_shards(root / "val", 1, prefix="val")
    return {"train": root / "train", "val": root / "val"}


@pytest.fixture(scope="module")
def strategy(shards, tmp_path_factory):
    """The strategy of the trainer `train.py validate` builds from configs/tiny.yaml."""
    config = tiny_config(tmp_path_factory.mktemp("cli"))
    args = ["--config", str(config), "--data.val_shards", str(shards["val"])]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["train.py"])
        return MontageCLI(args=args, run=False).trainer.strategy


@pytest.fixture
def other_tmpdir(tmp_path: Path):
    """A $TMPDIR on another filesystem than tmp_path (a tmpfs), empty."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test folder")
    path = shm / f"montage-tmpdir-{uuid.uuid4().hex}"
    path.mkdir()
    yield path
    for p in sorted(path.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    path.rmdir()


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def causes(exc: BaseException | None) -> list[int | None]:
    """The errno of `exc` and of each exception it was raised from or during."""
    out = []
    while exc is not None:
        out.append(getattr(exc, "errno", None))
        exc = exc.__cause__ or exc.__context__
    return out


def checkpoint(step: int, n: int = 1000) -> dict:
    """A checkpoint-shaped dict whose weights say which one it is."""
    return {"global_step": step, "state_dict": {"w": torch.full((n,), float(step))}}


# ----------------------------------------------------------------------------- loading


OPEN = f"{open.__module__}.{open.__qualname__}"  # how pickle names the builtin open (io.open)


class Payload:
    """Unpickling this runs `open(marker, "w")`: the marker file is the proof it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_payload(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**checkpoint(1), "payload": Payload(marker)}, path)
    return path


def test_the_payload_runs_when_unpickled_without_weights_only(tmp_path):
    """What the refusals below prevent: unpickled as Lightning unpickles URLs, it runs."""
    marker = tmp_path / "ran"
    state = torch.load(write_payload(tmp_path / "x.ckpt", marker), weights_only=False)
    state["payload"].close()
    assert marker.exists()


@pytest.mark.parametrize("where", ["http", "local"])
def test_validate_refuses_a_checkpoint_that_would_run_code_in_one_line_and_runs_none(
    where, shards, tmp_path
):
    """`train.py validate --ckpt_path` a pickle that would create a file when unpickled: from
    a URL on 127.0.0.1 and from a local path, the command fails on one line naming it."""
    marker = tmp_path / "ran"
    site = tmp_path / "site"
    write_payload(site / "run1" / "x.ckpt", marker)
    config = tiny_config(tmp_path / "out")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TORCH_HOME=str(tmp_path / "torch-home"))
    with LocalServer(site) as server:
        url = server.url("run1/x.ckpt") if where == "http" else str(site / "run1" / "x.ckpt")
        cmd = [sys.executable, str(TRAIN), "validate", "--config", str(config)]
        cmd += ["--data.val_shards", str(shards["val"]), "--ckpt_path", url]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert not marker.exists(), "the checkpoint's code ran"
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"train.py: {url}: refused: it names {OPEN}, which a checkpoint may not hold "
        "(loaded with weights_only=True; nothing in it was run)"
    )


def test_a_remote_checkpoint_is_read_from_its_url_each_time_never_from_a_cache(
    strategy, tmp_path, monkeypatch
):
    """run1/last.ckpt then run2/last.ckpt (same file name) give each its own weights; and
    run1/last.ckpt rewritten on the server gives the new weights the next time."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    site = tmp_path / "site"
    for run, step in (("run1", 1), ("run2", 2)):
        (site / run).mkdir(parents=True)
        torch.save(checkpoint(step), site / run / "last.ckpt")
    with LocalServer(site) as server:
        for run, step in (("run1", 1), ("run2", 2)):
            state = strategy.load_checkpoint(server.url(f"{run}/last.ckpt"))
            assert state["global_step"] == step, f"{run} gave run{state['global_step']}'s file"
            assert torch.equal(state["state_dict"]["w"], checkpoint(step)["state_dict"]["w"])
        torch.save(checkpoint(3), site / "run1" / "last.ckpt")  # the run went on
        assert strategy.load_checkpoint(server.url("run1/last.ckpt"))["global_step"] == 3
        assert server.requests("run1/last.ckpt") >= 2 and server.requests("run2/last.ckpt") >= 1
        with pytest.raises(CheckpointError, match=r"run3/last\.ckpt: no such checkpoint$"):
            strategy.load_checkpoint(server.url("run3/last.ckpt"))


def test_a_truncated_checkpoint_and_weights_only_false_are_one_line_errors(strategy, tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save(checkpoint(1), good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: not a readable checkpoint") as err:
        strategy.load_checkpoint(str(cut))
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"weights_only=False is not allowed"):
        strategy.load_checkpoint(str(good), weights_only=False)
    assert strategy.load_checkpoint(str(good))["global_step"] == 1


def test_every_preset_config_names_the_plugin_and_the_cli_installs_it_when_one_does_not(
    shards, tmp_path
):
    for name in ("tiny", "base", "large"):  # demo*.yaml are read after one of these
        cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
        paths = [p["class_path"] for p in cfg["trainer"]["plugins"]]
        assert paths == ["model.train.checkpoint.SafeCheckpointIO"], name
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    del cfg["trainer"]["plugins"]
    path.write_text(yaml.safe_dump(cfg))
    cli = MontageCLI(
        args=["--config", str(path), "--data.val_shards", str(shards["val"])], run=False
    )
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)


# ----------------------------------------------------------------------------- saving


class LimitWritesFrom(Callback):
    """From step `step` on, this process may write no file past `limit` bytes: the kernel
    kills it (SIGXFSZ) in the middle of the next write that goes further."""

    def __init__(self, step: int, limit: int) -> None:
        self.step, self.limit = step, limit

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, hard))


LIMIT = 2 << 20  # the tiny model's checkpoint is about 5.7 MB


def test_a_fit_killed_while_saving_last_ckpt_keeps_the_previous_one_and_resumes_from_it(
    shards, tmp_path, other_tmpdir
):
    """`train.py fit` saving last.ckpt every 2 steps, $TMPDIR on a tmpfs; killed by the
    kernel in the middle of writing the step-4 checkpoint. last.ckpt is still step 2's, whole;
    nothing went through $TMPDIR; `fit --ckpt_path last` resumes from step 2."""
    out = tmp_path / "out"
    kill = {"class_path": f"{__name__}.LimitWritesFrom", "init_args": {"step": 3, "limit": LIMIT}}
    config = tiny_config(out, every=2, callbacks=[kill])
    cfg = yaml.safe_load(config.read_text())
    (ckpt,) = [c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("Checkpoint")]
    ckpt["init_args"]["save_top_k"] = 0  # last.ckpt only, as base.yaml's resume point
    config.write_text(yaml.safe_dump(cfg))
    args = ["--data.train_shards", str(shards["train"]), "--trainer.max_steps", "4"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(other_tmpdir))
    cmd = [sys.executable, str(TRAIN), "fit", "--config", str(config), *args]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)

    assert done.returncode == -signal.SIGXFSZ, done.stderr[-3000:]
    assert files_under(other_tmpdir) == [], "a checkpoint went through $TMPDIR"
    names = sorted(p.name for p in (out / "runs" / "checkpoints").iterdir())
    assert names[0] == "last.ckpt" and len(names) == 2 and TMP_MARK in names[1], names
    assert (out / "runs" / "checkpoints" / names[1]).stat().st_size == LIMIT, (
        "killed in the middle of the write"
    )
    assert (
        torch.load(out / "runs" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == 2
    )

    resumed = tiny_config(out, every=2, callbacks=[recorder(out / "keys")])
    cli = main(["fit", "--config", str(resumed), *args, "--ckpt_path", "last"])
    assert [row["step"] for row in steps_of(out / "keys")] == [3, 4], "resumed after step 2"
    assert cli.trainer.global_step == 4
    left = sorted(p.name for p in (out / "runs" / "checkpoints").iterdir())
    assert not [n for n in left if TMP_MARK in n], f"the killed save's temporary is left: {left}"


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_save_that_fails_mid_write_keeps_the_previous_checkpoint_and_leaves_no_temp(
    scheme, strategy, tmp_path, other_tmpdir, monkeypatch
):
    """A save that the OS stops part way (file size limit: EFBIG) to a path and to a file://
    URL: the previous checkpoint is untouched, the temp is removed, $TMPDIR stays empty."""
    monkeypatch.setenv("TMPDIR", str(other_tmpdir))
    monkeypatch.setattr("tempfile.tempdir", None)  # read $TMPDIR again
    folder = tmp_path / "ckpt"
    dest = f"{scheme}{folder / 'last.ckpt'}"
    strategy.save_checkpoint(checkpoint(1), dest)
    assert files_under(other_tmpdir) == [], "a checkpoint went through $TMPDIR"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises((OSError, RuntimeError)) as err:  # torch wraps the OSError
            strategy.save_checkpoint(checkpoint(2, n=1 << 20), dest)  # 4 MiB of weights
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert errno.EFBIG in causes(err.value), "stopped by the file size limit"
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
    assert files_under(other_tmpdir) == []
    assert strategy.load_checkpoint(dest)["global_step"] == 1
    strategy.save_checkpoint(checkpoint(2, n=1 << 20), dest)
    assert strategy.load_checkpoint(dest)["global_step"] == 2


def test_an_fsspec_destination_is_written_under_a_temp_name_and_moved_into_place(strategy):
    """memory://: a save replaces the checkpoint; one that fails leaves it and no temp."""
    fs = fsspec.filesystem("memory")
    root = f"memory://ckpt-{uuid.uuid4().hex}"
    dest = f"{root}/last.ckpt"
    strategy.save_checkpoint(checkpoint(1), dest)
    bad = {**checkpoint(2), "hook": lambda: None}  # torch.save fails on it
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        strategy.save_checkpoint(bad, dest)
    assert [p.rsplit("/", 1)[1] for p in fs.ls(root, detail=False)] == ["last.ckpt"]
    assert strategy.load_checkpoint(dest)["global_step"] == 1
    strategy.save_checkpoint(checkpoint(2), dest)
    assert [p.rsplit("/", 1)[1] for p in fs.ls(root, detail=False)] == ["last.ckpt"]
    assert strategy.load_checkpoint(dest)["global_step"] == 2
    fs.rm(root, recursive=True)


def test_validate_without_training_shards_takes_the_checkpoints_own_bpe_tokenizer(shards, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(shards["train"], train)  # the shared shards stay without a tokenizer
    assert model_main(["tokenizer", str(train), "--vocab-size", "300"]) == 0
    config = tiny_config(tmp_path)
    data = ["--data.val_shards", str(shards["val"]), "--data.steps_per_epoch", "2"]
    fit = main(["fit", "--config", str(config), "--data.train_shards", str(train), *data,
                "--trainer.max_steps", "2"])  # fmt: skip
    learnt = fit.datamodule.tokenizer_state()
    assert learnt["kind"] == "bpe", "auto took the BPE beside the training shards"
    fitted = {k: float(v) for k, v in fit.trainer.callback_metrics.items()}
    ckpt = tmp_path / "runs" / "checkpoints" / "last.ckpt"
    cli = main(["validate", "--config", str(config), *data, "--ckpt_path", str(ckpt)])
    assert cli.datamodule.tokenizer_state()["sha256"] == learnt["sha256"], "not bytes: the run's"
    assert cli.datamodule.vocab_size == fit.datamodule.vocab_size
    metrics = cli.trainer.callback_metrics
    for key in ["val/loss", "val/t2v_r1", "val/t2v_medr"]:
        assert float(metrics[key]) == pytest.approx(fitted[key], rel=1e-5), key
