"""The shard loader: decoding to the batch contract, splitting, determinism, bad samples, resume."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from devtools.localserve import LocalServer
from devtools.samples import PARAMS, make_sample
from model.config import ModelConfig
from model.data import loader as loader_mod
from model.data.batch import Batch
from model.data.collate import DecodeConfig, cut_subsegments, load_frame, to_example
from model.data.datamodule import ShardDataModule
from model.data.tokenizer import ByteTokenizer
from shards import schema
from shards.manifest import ManifestRow
from shards.reader import iter_samples
from shards.writer import ShardWriter
from tests.helpers import (
    ROOT,
    SEGMENTS,
    run_two_nodes,
    write_corrupt_shard,
    write_shards,
)

TINY = ModelConfig.from_name("tiny", max_segments=4)


@pytest.fixture(scope="module")
def shards8(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards8")
    return out, write_shards(out, 8)


def datamodule(path, **kw) -> ShardDataModule:
    args = dict(
        batch_size=3,
        steps_per_epoch=4,
        num_workers=0,
        shuffle_buffer=4,
        frame_size=TINY.frame_size,
        max_segments=TINY.max_segments,
        max_text_len=TINY.max_text_len,
    )
    args.update(kw)
    return ShardDataModule(str(path), **args)


def epoch_keys(dm: ShardDataModule, mark: bool = False) -> list[list[str]]:
    out = []
    for lb in dm.train_dataloader():
        out.append(lb.keys)
        if mark:
            dm.mark_consumed(lb)
    return out


# ----------------------------------------------------------------------------- decoding


def test_collated_batch_meets_the_model_contract(shards8):
    dm = datamodule(shards8[0])
    lb = next(iter(dm.train_dataloader()))
    b = lb.batch
    b.check(replace(TINY, vocab_size=dm.vocab_size))
    H, W = TINY.frame_size
    assert b.frames.shape == (3, 4, 3, H, W) and b.frames.dtype == torch.uint8
    assert b.audio.shape == (3, 4, 3, 60, 64) and b.audio.dtype == torch.float32
    assert b.text.shape == (3, 4, 3, TINY.max_text_len) and b.text.dtype == torch.int64
    assert lb.keys and len(lb.keys) == 3 and lb.skipped == 0
    assert lb.position.epoch == 0 and lb.position.index == 0


def test_mel_is_cut_into_three_time_major_subsegments():
    sample = make_sample("vid", 0, segments=2)
    ex = to_example(sample, DecodeConfig(frame_size=(32, 48), max_segments=2), ByteTokenizer())
    mel = sample.mel_float()  # (2, 64, 188)
    for k, start in enumerate((2, 64, 126)):
        expected = mel[:, :, start : start + 60].transpose(0, 2, 1)  # (2, 60, 64)
        np.testing.assert_array_equal(ex.audio[:, k], expected)
    # time-major: one mel column over time is a row of the block
    np.testing.assert_array_equal(ex.audio[1, 2, :, 5], mel[1, 5, 126:186])
    assert cut_subsegments(mel, 60).shape == (2, 3, 60, 64)


def test_words_land_in_their_subsegment_and_are_cut_to_max_text_len():
    sample = make_sample("vid", 0, segments=2, words_per_segment=0)
    W = schema.WordRecord
    sample.meta.words = [
        W("alpha", 100, 200, 0, 0),
        W("bravo", 2000, 2100, 0, 1),
        W("x" * 40, 2200, 2300, 0, 1),  # overflows the cell
        W("delta", 9000, 9100, 1, 2),
    ]
    tok = ByteTokenizer()
    ex = to_example(sample, DecodeConfig(frame_size=(32, 48), max_segments=3, max_text_len=16), tok)

    def cell(s, k):
        return tok.decode(ex.text[s, k][ex.text_mask[s, k]].tolist())

    assert cell(0, 0) == " alpha"
    assert cell(0, 1) == " bravo " + "x" * 9  # 16 tokens: " bravo" (6) + " " + 9 x
    assert cell(1, 2) == " delta"
    assert ex.text_mask.sum(-1).tolist() == [[6, 16, 0], [0, 0, 6], [0, 0, 0]]
    assert (ex.text[~ex.text_mask] == 0).all() and (ex.text[ex.text_mask] >= 2).all()


def test_missing_audio_gives_zeros_and_audio_present_false():
    sample = make_sample("vid", 0, segments=2, audio=False)
    ex = to_example(sample, DecodeConfig(frame_size=(32, 48), max_segments=2), ByteTokenizer())
    assert ex.audio_present is False and not ex.audio.any()
    with_audio = to_example(
        make_sample("vid", 0, segments=2),
        DecodeConfig(frame_size=(32, 48), max_segments=2),
        ByteTokenizer(),
    )
    assert with_audio.audio_present is True and with_audio.audio.any()


def test_short_window_is_padded_with_masked_empty_segments():
    sample = make_sample("vid", 0, segments=3)
    ex = to_example(sample, DecodeConfig(frame_size=(32, 48), max_segments=5), ByteTokenizer())
    assert ex.segment_mask.tolist() == [True, True, True, False, False]
    assert ex.frames[:3].any() and not ex.frames[3:].any()
    assert not ex.audio[3:].any() and not ex.text_mask[3:].any()


def test_frame_is_resized_to_cover_and_centre_cropped():
    # 200x100 picture: 25 px red bands at left and right, green between. Target 48x32
    # (aspect 1.5) keeps the central 150x100, so no red survives (crops are whole pixels
    # of the JPEG decoded at reduced scale, so an edge column may catch half a pixel).
    rgb = np.zeros((100, 200, 3), dtype=np.uint8)
    rgb[:, :, 1] = 200
    rgb[:, :25] = rgb[:, 175:] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    out = load_frame(buf.getvalue(), (32, 48))
    assert out.shape == (3, 32, 48) and out.dtype == np.uint8
    inner = out[:, :, 1:-1]
    assert inner[0].max() < 60 and inner[1].min() > 150, "red bands should be cropped away"
    wide = load_frame(buf.getvalue(), (32, 160))  # aspect 5: crops rows instead, keeps the bands
    assert wide[0, :, :10].mean() > 200


# ----------------------------------------------------------------------------- streams


def test_training_order_is_deterministic_per_seed_and_epoch(shards8):
    first = epoch_keys(datamodule(shards8[0], seed=7))
    again = epoch_keys(datamodule(shards8[0], seed=7))
    assert first == again
    dm = datamodule(shards8[0], seed=7)
    dm.set_epoch(1)
    assert epoch_keys(dm) != first
    assert epoch_keys(datamodule(shards8[0], seed=8)) != first


def test_ranks_read_disjoint_shards_and_run_the_same_number_of_batches(tmp_path):
    where = write_shards(tmp_path, 5)  # 5 shards over 2 ranks: 3 and 2
    per_rank = []
    for rank in (0, 1):
        batches = epoch_keys(datamodule(tmp_path, rank=rank, world_size=2, steps_per_epoch=6))
        assert len(batches) == 6
        per_rank.append({where[k] for b in batches for k in b})
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]


def test_too_few_shards_for_ranks_times_workers_fails_at_start(tmp_path):
    write_shards(tmp_path, 3)
    dm = datamodule(tmp_path, rank=0, world_size=2, num_workers=2)
    with pytest.raises(
        ValueError, match=r"3 shard\(s\) cannot be split over 2 rank\(s\) x 2 worker\(s\)"
    ):
        dm.train_dataloader()
    val = datamodule(tmp_path, rank=0, world_size=2, num_workers=2, val_shards=str(tmp_path))
    with pytest.raises(ValueError, match="val: 3 shard"):
        val.val_dataloader()
    resampled = datamodule(tmp_path, rank=1, world_size=2, num_workers=2, resampled=True)
    assert resampled.train_dataloader() is not None


def test_resampled_stream_is_deterministic_and_keeps_its_length(tmp_path):
    write_shards(tmp_path, 2)
    a = epoch_keys(datamodule(tmp_path, resampled=True, rank=1, world_size=4, steps_per_epoch=5))
    b = epoch_keys(datamodule(tmp_path, resampled=True, rank=1, world_size=4, steps_per_epoch=5))
    assert a == b and len(a) == 5


def test_remote_shards_stream_over_http_like_local_ones(shards8):
    path = shards8[0]
    local = epoch_keys(datamodule(path))
    with LocalServer(path) as server:
        remote = epoch_keys(datamodule(server.base_url + "/train-{000..007}.tar"))
        assert server.requests("train-000.tar") >= 1
    assert remote == local


def test_validation_reads_every_sample_once_split_over_ranks(tmp_path):
    where = write_shards(tmp_path, 3)
    seen = []
    for rank in (0, 1):
        dm = datamodule(
            tmp_path, val_shards=str(tmp_path), val_batch_size=4, rank=rank, world_size=2
        )
        batches = list(dm.val_dataloader())
        assert all(lb.position is None for lb in batches)
        seen += [k for lb in batches for k in lb.keys]
    assert sorted(seen) == sorted(where)


def test_bad_samples_are_skipped_counted_and_the_stream_goes_on(tmp_path, caplog):
    good, bad = write_corrupt_shard(tmp_path / "mixed-000.tar")
    val = datamodule(tmp_path, val_shards=str(tmp_path / "mixed-000.tar"), val_batch_size=2)
    with caplog.at_level(logging.WARNING, logger="model.data.loader"):
        batches = list(val.val_dataloader())
    assert sorted(k for lb in batches for k in lb.keys) == sorted(good)
    assert sum(lb.skipped for lb in batches) == 2
    warned = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warned) == 1, "warnings are rate-limited to one per period"
    # training cycles the shard: the stream keeps going past the bad samples
    train = datamodule(tmp_path, batch_size=2, steps_per_epoch=8, shuffle_buffer=0)
    train.stream = replace(train.stream, max_consecutive_errors=1)  # bad ones are not adjacent
    out = list(train.train_dataloader())
    assert len(out) == 8 and sum(lb.skipped for lb in out) >= 2
    assert not {k for lb in out for k in lb.keys} & set(bad)


def test_unreadable_shards_fail_instead_of_spinning(tmp_path):
    (tmp_path / "junk-000.tar").write_bytes(b"not a tar at all" * 100)
    dm = datamodule(tmp_path, warn_every_s=3600)
    dm.stream = replace(dm.stream, max_consecutive_errors=5)
    with pytest.raises(RuntimeError, match="look unreadable"):
        next(iter(dm.train_dataloader()))


# ----------------------------------------------------------------------------- resume


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_the_epoch_without_repeats_or_gaps(shards8, workers):
    path = shards8[0]
    full = epoch_keys(datamodule(path, num_workers=workers, steps_per_epoch=7))
    first = datamodule(path, num_workers=workers, steps_per_epoch=7)
    consumed = []
    for lb in first.train_dataloader():
        consumed.append(lb.keys)
        first.mark_consumed(lb)
        if len(consumed) == 3:
            break
    state = first.state_dict()
    assert state["epoch"] == 0 and state["consumed"] == 3
    second = datamodule(path, num_workers=workers, steps_per_epoch=7)
    second.load_state_dict(state)
    rest = epoch_keys(second, mark=True)
    assert consumed + rest == full
    # the finished epoch rolls over to the next one on the next pass
    assert second.state_dict()["consumed"] == 7
    nxt = next(iter(second.train_dataloader()))
    assert nxt.position.epoch == 1 and nxt.position.index == 0


def test_resume_skips_consumed_samples_before_decoding(shards8, monkeypatch):
    calls = []
    real = loader_mod.decode_raw
    monkeypatch.setattr(loader_mod, "decode_raw", lambda raw, *a: calls.append(1) or real(raw, *a))
    dm = datamodule(shards8[0], steps_per_epoch=6)
    dm.load_state_dict({**dm.state_dict(), "consumed": 4})
    batches = list(dm.train_dataloader())
    assert [lb.position.index for lb in batches] == [4, 5]
    assert len(calls) == 2 * 3, "only the two remaining batches are decoded"


def test_changed_layout_moves_on_to_the_next_epoch(shards8, caplog):
    dm = datamodule(shards8[0], num_workers=2)
    state = {**dm.state_dict(), "epoch": 3, "consumed": 2}
    other = datamodule(shards8[0], num_workers=1)
    with caplog.at_level(logging.WARNING, logger="model.data.datamodule"):
        other.load_state_dict(state)
    assert (other.position.epoch, other.position.index) == (4, 0)
    assert "num_workers" in caplog.text


class KeyRecorder(L.LightningModule):
    """Records the keys of every batch training_step receives."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[str]] = []

        self.val_seen: list[str] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        assert isinstance(batch, Batch), "the data module hands the model a plain Batch"
        self.seen.append(list(self.trainer.datamodule.last_keys))
        return (self.w * batch.audio.mean()).sum()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.val_seen += self.trainer.datamodule.last_keys
        self.log("val/n", float(batch.batch_size), sync_dist=True)  # reduced at epoch end

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_resume_mid_epoch_trains_on_each_batch_once(shards8, tmp_path):
    def fit(max_steps: int, ckpt_path=None, callbacks=()) -> KeyRecorder:
        module = KeyRecorder()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=max_steps,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=bool(callbacks),
            callbacks=list(callbacks),
            default_root_dir=tmp_path,
        )
        trainer.fit(
            module, datamodule=datamodule(shards8[0], steps_per_epoch=4), ckpt_path=ckpt_path
        )
        return module

    full = fit(7).seen  # epoch 0 (4 batches) and 3 batches of epoch 1
    every5 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    head = fit(5, callbacks=[every5]).seen
    (ckpt,) = (tmp_path / "ckpt").glob("*.ckpt")
    tail = fit(7, ckpt_path=str(ckpt)).seen
    assert len(full) == 7 and head + tail == full


DDP_SCRIPT = """
import json, sys
import lightning as L
from tests.model.data.test_datamodule import KeyRecorder, datamodule

shards, out = sys.argv[1], sys.argv[2]
module = KeyRecorder()
trainer = L.Trainer(accelerator="cpu", strategy="ddp", devices=1, num_nodes=2, max_epochs=1,
                    logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, num_sanity_val_steps=0)
dm = datamodule(shards, steps_per_epoch=3, val_shards=shards, val_batch_size=4)
trainer.fit(module, datamodule=dm)
with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
    json.dump({"train": module.seen, "val": module.val_seen}, f)
"""


@pytest.mark.slow  # about 10 s on idle cores: two interpreters importing torch + Lightning
def test_two_ddp_processes_get_disjoint_shards_and_equal_steps(tmp_path):
    """Two Lightning DDP processes on loopback (gloo); 3 shards: uneven validation."""
    shard_dir = tmp_path / "shards"
    where = write_shards(shard_dir, 3)
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    run_two_nodes([sys.executable, str(script), str(shard_dir), str(tmp_path)], ROOT, timeout=120)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(r["train"]) for r in ranks] == [3, 3], "both ranks run steps_per_epoch steps"
    shards_of = [{where[k] for b in r["train"] for k in b} for r in ranks]
    assert not shards_of[0] & shards_of[1], "ranks read disjoint shards"
    val = [r["val"] for r in ranks]
    assert len(val[0]) == 12 and len(val[1]) == 6  # 2 shards vs 1: uneven, and no hang
    assert sorted(val[0] + val[1]) == sorted(where)


# ----------------------------------------------------------------------------- shards' own parameters


def write_odd_shard(out, **params) -> str:
    """A real shard of 2 windows whose extraction parameters are changed by ``params``."""
    odd = replace(PARAMS, **params)
    samples = [make_sample("odd", w, segments=SEGMENTS) for w in range(2)]
    samples = [replace(s, meta=replace(s.meta, params=odd)) for s in samples]
    with ShardWriter(str(out), "odd") as writer:
        writer.add_video(samples, ManifestRow(video_id="odd", url="u", status="ok"))
    return str(out / writer.written[0])


def test_shards_made_with_other_subsegments_are_refused_before_any_batch(tmp_path):
    shard = write_odd_shard(tmp_path, subsegments=4)
    dm = datamodule(tmp_path, val_shards=str(tmp_path))
    want = f"train_shards {shard}: the shards hold 4 audio sub-segments per segment, the model is built for 3"
    with pytest.raises(ValueError) as err:
        dm.train_dataloader()
    assert str(err.value) == want
    with pytest.raises(ValueError, match=r"^val_shards .*4 audio sub-segments"):
        dm.val_dataloader()
    # a sample of such shards met among others is dropped, saying why
    odd = next(iter_samples(shard))
    with pytest.raises(schema.SampleError, match="odd_w0000: 4 audio sub-segments"):
        to_example(odd, DecodeConfig(frame_size=(32, 48)), ByteTokenizer())


@pytest.mark.parametrize(
    "change,message",
    [
        ({"n_mels": 80}, "64 mel bins, the model takes 80 (n_mels)"),
        (
            {"audio_frames": 70},
            "188 mel frames per segment, fewer than the model's 3 sub-segments x 70",
        ),
    ],
)
def test_a_model_with_other_audio_shapes_is_refused(shards8, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        datamodule(shards8[0], **change).train_dataloader()


def test_train_and_val_shards_made_differently_are_refused(shards8, tmp_path):
    write_odd_shard(tmp_path, segment_ms=10000, sample_rate=16000)
    dm = datamodule(shards8[0], val_shards=str(tmp_path))
    assert dm.train_dataloader() is not None
    with pytest.raises(
        ValueError,
        match="were made differently: segment_ms 10000 vs 5000, sample_rate 16000 vs 22050",
    ):
        dm.val_dataloader()
