"""`python -m model embed`: validation's vectors in a Parquet index that resumes and skips damage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from model.cli.main import main
from model.inference import index
from tests.helpers import write_corrupt_shard

VAL_WINDOWS = 2 * 2 * 3  # val shards x videos x windows (tests/helpers.write_shards)
SEGMENTS = 3  # per window


def embed(run, shards, out, *more) -> int:
    args = ["embed", str(shards), "--out", str(out), "--checkpoint", str(run.checkpoint)]
    return main([*args, "--device", "cpu", *more])


def rows_of(out) -> list[dict]:
    return [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def made(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    assert embed(trained_run, trained_run.val, out, "--batch-size", "5") == 0
    return out


def test_embed_writes_a_row_per_window_and_segment_with_validations_vectors(trained_run, made):
    from model.data.datamodule import ShardDataModule
    from model.eval.evaluation import embed_batch
    from model.train.module import ReserveModule

    rows = rows_of(made)
    windows = {r["key"]: r for r in rows if r["level"] == "window"}
    segments = [r for r in rows if r["level"] == "segment"]
    assert len(windows) == VAL_WINDOWS and len(segments) == VAL_WINDOWS * SEGMENTS
    assert len({(r["key"], r["segment"]) for r in rows}) == len(rows), "no duplicate rows"
    # validation's own path: the Lightning module and the data module's loader
    module = ReserveModule.load_from_checkpoint(trained_run.checkpoint, map_location="cpu")
    cfg = module.model_config
    data = ShardDataModule(val_shards=str(trained_run.val), batch_size=4, num_workers=0,
                           frame_size=cfg.frame_size, max_segments=cfg.max_segments,
                           max_text_len=cfg.max_text_len, audio_frames=cfg.audio_frames,
                           n_mels=cfg.n_mels, rank=0, world_size=1)  # fmt: skip
    data.setup("validate")
    module.eval()
    seen = 0
    for lb in data.val_dataloader():
        emb = embed_batch(module.model, lb.batch)
        for i, key in enumerate(lb.keys):
            row = windows[key]
            for name, want in (("text-video/text", emb.text), ("text-video/video", emb.video_t),
                               ("audio-video/audio", emb.audio), ("audio-video/video", emb.video_a)):  # fmt: skip
                got = torch.tensor(row[name])
                assert torch.allclose(got, want[i], atol=1e-5), (key, name)
            seen += 1
    assert seen == VAL_WINDOWS
    one = segments[0]
    assert one["end_ms"] - one["start_ms"] == 5000 and one["text"] and one["url"]
    summary = json.loads((made / index.SUMMARY).read_text())
    assert summary["shards"] == 2 and summary["windows_skipped"] == 0


def test_an_interrupted_embed_resumes_without_duplicate_rows(trained_run, made, tmp_path, capsys):
    out = tmp_path / "idx"
    # the interrupted run: its first shard written whole, the second never started, and a
    # temporary of a killed write left behind
    assert embed(trained_run, trained_run.val / "val-000.tar", out) == 0
    first = (out / "val-000.parquet").stat().st_mtime_ns
    (out / "val-001.parquet.tmp-dead").write_bytes(b"partial")
    (out / index.SUMMARY).unlink()
    capsys.readouterr()
    assert embed(trained_run, trained_run.val, out) == 0
    said = capsys.readouterr().out
    assert "1 shards embedded" in said and "1 already done" in said
    assert (out / "val-000.parquet").stat().st_mtime_ns == first, "done shards are not redone"
    resumed, whole = rows_of(out), rows_of(made)
    assert len(resumed) == len(whole)
    assert sorted((r["key"], r["segment"]) for r in resumed) == sorted(
        (r["key"], r["segment"]) for r in whole
    )


def test_corrupt_shards_and_windows_are_skipped_and_counted(trained_run, tmp_path, capsys):
    shards = tmp_path / "shards"
    shutil.copytree(trained_run.val, shards)
    good, bad = write_corrupt_shard(shards / "val-002.tar")
    (shards / "val-003.tar").write_bytes(b"\x00garbage, not a tar" * 64)
    out = tmp_path / "idx"
    assert embed(trained_run, shards, out) == 0
    summary = json.loads((out / index.SUMMARY).read_text())
    assert summary["windows_skipped"] == len(bad) == 2
    assert summary["shards_skipped"] == ["val-003.tar"]
    keys = {r["key"] for r in rows_of(out)}
    assert set(good) <= keys and not set(bad) & keys
    assert "2 bad windows skipped" in capsys.readouterr().out


def test_an_index_is_never_resumed_with_other_weights(trained_run, made, tmp_path, capsys):
    state = torch.load(trained_run.checkpoint, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] + 1.0
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    out = tmp_path / "copy"
    shutil.copytree(made, out)
    code = main(["embed", str(trained_run.val), "--out", str(out), "--checkpoint", str(other)])
    err = capsys.readouterr().err
    assert code == 1 and "made with other weights" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,want",
    [
        (["embed", "{missing}", "--out", "{tmp}/o", "--checkpoint", "{ckpt}"], "no such"),
        (["embed", "{val}", "--out", "{tmp}/o", "--checkpoint", "{tmp}/none.ckpt"], "no such checkpoint"),
        (["embed", "{val}", "--out", "{tmp}/o", "--checkpoint", "{ckpt}", "--batch-size", "0"], "--batch-size"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(trained_run, tmp_path, capsys, args, want):
    fill = {"missing": tmp_path / "nothing", "tmp": tmp_path, "ckpt": trained_run.checkpoint,
            "val": trained_run.val}  # fmt: skip
    code = main([a.format(**fill) for a in args])
    err = capsys.readouterr().err
    assert code == 1 and want in err and len(err.strip().splitlines()) == 1


def test_index_vectors_load_back_as_matrices(made):
    idx = index.load_index(str(made), "segment")
    assert len(idx) == VAL_WINDOWS * SEGMENTS
    m = idx.vectors["text-video/video"]
    assert (
        m.shape[0] == len(idx) and m.dtype == np.float32 and idx.present["text-video/video"].all()
    )
