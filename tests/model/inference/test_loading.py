"""A model from a checkpoint file alone: the weights, shapes and tokenizer of the run."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

from model.data.tokenizer import ByteTokenizer
from model.inference import CheckpointError, load_checkpoint
from model.inference.loading import objectives_from
from tests.helpers import ROOT


def test_a_checkpoint_alone_rebuilds_the_model_that_trained(trained_run):
    from model.train.module import ReserveModule

    loaded = load_checkpoint(str(trained_run.checkpoint))
    module = ReserveModule.load_from_checkpoint(trained_run.checkpoint, map_location="cpu")
    assert loaded.model.config == module.model_config
    assert loaded.model.objective_config == module.model.objective_config
    mine, theirs = loaded.model.state_dict(), module.model.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not loaded.model.training, "loaded for inference: eval mode"
    assert loaded.decode.max_segments == 4 and loaded.decode.frame_size == (64, 96)
    assert isinstance(loaded.tokenizer, ByteTokenizer), "no montage_tokenizer key: bytes"
    assert len(loaded.digest) == 64


def _save(path, state):
    torch.save(state, path)
    return str(path)


def test_a_checkpoint_that_names_code_is_refused_without_running_it(tmp_path, capfd):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    bad = tmp_path / "bad.ckpt"
    with bad.open("wb") as f:
        pickle.dump({"state_dict": Payload()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint") as err:
        load_checkpoint(str(bad))
    assert "ran" not in capfd.readouterr().out, "nothing in the file was run"
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "state,why",
    [
        ({"state_dict": {}}, "no hyper_parameters"),
        ({"hyper_parameters": {"size": "tiny", "vocab_size": 258}, "state_dict": {}}, "do not fit"),
        ({"hyper_parameters": {"size": "nope"}, "state_dict": {}}, "do not parse"),
        (
            {"hyper_parameters": {"size": "tiny", "objectives": {"nope": {}}}, "state_dict": {}},
            "unknown",
        ),
    ],
)
def test_a_checkpoint_that_does_not_describe_a_model_is_one_line(tmp_path, state, why):
    path = _save(tmp_path / "x.ckpt", state)
    with pytest.raises(CheckpointError, match=why) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and path in str(err.value)


def test_missing_and_garbage_files_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(str(tmp_path / "absent.ckpt"))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(str(tmp_path / "junk.ckpt"))


def test_a_run_with_a_tokenizer_it_does_not_carry_is_refused(tmp_path, trained_run):
    state = torch.load(trained_run.checkpoint, weights_only=True)
    state["datamodule_hyper_parameters"]["tokenizer"] = "/somewhere/tokenizer.json"
    del state["montage_tokenizer"]  # as a run that did not carry it would have saved
    path = _save(tmp_path / "bpe.ckpt", state)
    with pytest.raises(CheckpointError, match="does not carry"):
        load_checkpoint(path)


def test_objectives_come_back_from_their_plain_dict():
    cfg = objectives_from({"span": {"weight": 0.0}, "milnce": {"weight": 2.0}}, "x")
    assert cfg.enabled() == ["milnce"] and cfg.milnce.weight == 2.0


def test_inference_and_the_commands_help_never_import_lightning_or_training():
    code = (
        "import sys, contextlib, io\n"
        "import model.inference, model.inference.index, model.inference.search\n"
        "import model.inference.benchmark\n"
        "from model.cli.main import main\n"
        "for cmd in ('embed', 'search', 'evaluate'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main([cmd, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')\n"
        "             or m.startswith('model.train'))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
