"""A tiny model trained for two steps by `train.py fit` on synthetic shards: the checkpoint
and shards the inference and command tests read (import the fixture into a conftest)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import tiny_config, write_shards


@dataclass
class TrainedRun:
    root: Path
    train: Path
    val: Path
    checkpoint: Path

    def last_validation(self) -> dict[str, float]:
        """The metrics of the run's last validation, from its CSV log."""
        (path,) = (self.root / "runs" / "csv").glob("version_*/metrics.csv")
        rows = [r for r in csv.DictReader(path.open()) if r.get("val/n")]
        return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    import torch

    from model.train.cli import main

    root = tmp_path_factory.mktemp("trained")
    write_shards(root / "train", 2, "train")
    write_shards(root / "val", 2, "val")
    config = tiny_config(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(
            ["fit", "--config", str(config), "--data.train_shards", str(root / "train"),
             "--data.val_shards", str(root / "val"), "--data.steps_per_epoch", "2",
             "--trainer.max_steps", "2"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    ckpt = root / "runs" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return TrainedRun(root, root / "train", root / "val", ckpt)
