"""Montage's training entry point: LightningCLI over ReserveModule and ShardDataModule.

    python train.py fit --config configs/tiny.yaml --data.train_shards 'DIR/shard-{000000..000003}.tar'
    python train.py fit --config configs/tiny.yaml --data.train_shards ... --ckpt_path last
    python train.py validate --config configs/tiny.yaml --data.val_shards VAL/ --ckpt_path CKPT

The CLI itself (links, outputs under --trainer.default_root_dir, safe checkpoints) is
model/train/cli.py. A checkpoint that cannot be loaded ends the command with one line
(exit status 1); a shard path that names nothing, likewise (exit status 2).
"""

import sys

from model.train.cli import run

if __name__ == "__main__":
    sys.exit(run())
