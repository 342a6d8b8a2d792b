"""The LightningModule: optimizer groups, schedule, vocabulary, and a two-step fit on CPU
with validation retrieval."""

import logging

import lightning as L
import pytest
import torch

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import Batch, random_batch
from model.train import module as module_py
from model.train.module import ReserveModule, contrastive_scales, lr_factor


def _two_steps(root, **options) -> L.Trainer:
    """A quiet CPU trainer for two steps, writing nothing but under `root`."""
    return L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **options,
    )


def test_lr_schedule_warms_up_then_decays_by_cosine():
    assert lr_factor(0, 10, 110) == 0.1
    assert lr_factor(9, 10, 110) == 1.0
    assert abs(lr_factor(60, 10, 110) - 0.5) < 1e-9
    assert lr_factor(110, 10, 110, min_ratio=0.1) == 0.1
    assert lr_factor(500, 10, None) == 1.0


def test_module_fits_two_steps_on_cpu_and_decays_only_matrices(tmp_path):
    module = ReserveModule(
        size="tiny", config={"max_segments": 4}, objectives=ObjectiveConfig(), warmup_steps=1
    )
    cfg: ModelConfig = module.model_config
    assert cfg.max_segments == 4 and cfg.width == 64
    opt = module.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(
        p.dim() < 2 for p in no_decay["params"]
    )
    batches = [
        random_batch(cfg, 2, 4, text_len=4, generator=torch.Generator().manual_seed(i))
        for i in range(2)
    ]
    before = [p.detach().clone() for p in module.parameters()]
    trainer = _two_steps(tmp_path)
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert trainer.global_step == 2
    metrics = trainer.callback_metrics
    assert {"train/span/audio", "scale/span/frame", "val/loss", "val/t2v_r1"} <= set(metrics)
    assert float(metrics["val/n"]) == 4, "retrieval ranks every validation window"
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_the_tokenizer_vocabulary_overrides_preset_and_config():
    module = ReserveModule(
        size="tiny", config={"vocab_size": 1000, "max_segments": 4}, vocab_size=258
    )
    assert module.model_config.vocab_size == 258
    assert module.model.backbone.token_embedding.num_embeddings == 258


def test_contrastive_scales_name_each_span_term():
    module = ReserveModule(size="tiny", config={"max_segments": 4})
    scales = contrastive_scales(module.model)
    assert set(scales) == {"scale/span/frame", "scale/span/audio", "scale/span/text"}
    assert all(abs(float(v) - 2.71828) < 1e-4 for v in scales.values()), "exp(init 1.0)"
    only_mil = ReserveModule(size="tiny", objectives=ObjectiveConfig.only("milnce"))
    assert contrastive_scales(only_mil.model) == {}


def test_contrastive_scales_come_from_each_objectives_public_scales():
    """The scales are read through `scales()`, whatever the objective calls its loss."""

    class Renamed(torch.nn.Module):
        def scales(self):
            return {"frame": torch.tensor(3.0)}

    module = ReserveModule(size="tiny", config={"max_segments": 4})
    module.model.objectives["span"] = Renamed()
    scales = contrastive_scales(module.model)
    assert list(scales) == ["scale/span/frame"] and float(scales["scale/span/frame"]) == 3.0


def test_a_checkpoint_carries_the_tokenizer_and_resuming_with_another_is_refused(tmp_path):
    """A real one-step fit on narrated shards with the BPE beside them (data.tokenizer auto):
    the checkpoint holds the tokenizer.json text, from_state rebuilds identical encodings,
    the loggers record the choice, and fitting on from it with bytes stops in one line."""
    from lightning.pytorch.loggers import CSVLogger

    from model.data.datamodule import ShardDataModule
    from model.data.tokenizer import CHECKPOINT_KEY, BpeTokenizer, from_state, train_bpe
    from model.train.checkpoint import CheckpointError, SafeCheckpointIO, load
    from tests.helpers import write_narrated_shards

    shards = tmp_path / "train"
    write_narrated_shards(shards, 2)
    texts = ["now a red circle appears", "next comes a blue square"] * 20
    bpe = train_bpe(texts, vocab_size=400, path=shards / "tokenizer.json")

    cfg = ModelConfig.from_name("tiny", max_segments=4)

    def fit(tokenizer: str, ckpt_path=None) -> L.Trainer:
        data = ShardDataModule(
            train_shards=str(shards), batch_size=2, steps_per_epoch=1, num_workers=0,
            tokenizer=tokenizer, shuffle_buffer=0,
            **{k: getattr(cfg, k) for k in ("frame_size", "max_segments", "max_text_len",
                                            "audio_frames", "n_mels")},
        )  # fmt: skip
        module = ReserveModule(
            size="tiny", config={"max_segments": 4}, vocab_size=data.vocab_size, warmup_steps=1
        )
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_steps=1 if ckpt_path is None else 2,
            logger=CSVLogger(tmp_path, name="csv"), enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False,
            plugins=[SafeCheckpointIO()], default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return trainer

    trainer = fit("auto")
    ckpt = tmp_path / "one.ckpt"
    trainer.save_checkpoint(ckpt)
    state = load(str(ckpt))[CHECKPOINT_KEY]
    assert state["kind"] == "bpe" and state["source"] == str(shards / "tokenizer.json")
    assert state["json"] == (shards / "tokenizer.json").read_text(encoding="utf-8")
    rebuilt = from_state(state)
    assert isinstance(rebuilt, BpeTokenizer) and rebuilt.vocab_size == bpe.vocab_size
    assert [rebuilt.encode(t) for t in texts[:2]] == [bpe.encode(t) for t in texts[:2]]
    hparams = (tmp_path / "csv" / "version_0" / "hparams.yaml").read_text()
    assert "tokenizer/kind: bpe" in hparams and state["sha256"] in hparams

    with pytest.raises(CheckpointError, match=r"bpe tokenizer.*bytes tokenizer") as info:
        fit("bytes", ckpt_path=str(ckpt))
    assert "\n" not in str(info.value)


def _fit_on_identical_windows(tmp_path, check_after, monkeypatch):
    """Two steps and a validation on windows whose every segment shows the same frame and
    every sub-segment holds the same audio and words, so that all the targets of each span
    term are one (the term collapsed by construction); COLLAPSE_CHECK_AFTER set."""
    monkeypatch.setattr(module_py, "COLLAPSE_CHECK_AFTER", check_after)
    module = ReserveModule(
        size="tiny", config={"max_segments": 4}, objectives=ObjectiveConfig(), warmup_steps=1
    )
    one = random_batch(module.model_config, 1, 1, text_len=4, generator=torch.Generator())
    text = torch.tensor([5, 6, 7, 0])  # three tokens, then padding

    def every(x):  # (1, 1, ...) -> (4, 4, ...): the same in every window and segment
        return x.repeat(4, 4, *[1] * (x.dim() - 2))

    same = Batch(
        frames=every(one.frames),
        audio=every(one.audio[:, :, :1].repeat(1, 1, 3, 1, 1)),
        text=text.expand(4, 4, 3, 4).clone(),
        text_mask=(text != 0).expand(4, 4, 3, 4).clone(),
        segment_mask=torch.ones(4, 4, dtype=torch.bool),
        audio_present=torch.ones(4, dtype=torch.bool),
    )
    # two validations: a term is reported once
    trainer = _two_steps(tmp_path, num_sanity_val_steps=0, val_check_interval=1)
    loader = torch.utils.data.DataLoader([same, same], batch_size=None)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)


def test_a_collapsed_span_term_is_reported_once_validation_shows_it(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="model.train.module"):
        _fit_on_identical_windows(tmp_path, 0, monkeypatch)
    said = [r.getMessage() for r in caplog.records if r.name == "model.train.module"]
    for term in ("frame", "audio", "text"):
        assert sum(f"span/{term} has collapsed" in m for m in said) == 1, said  # once each
    assert all("segment_groups" in m for m in said)


def test_no_collapse_is_reported_before_the_check_starts(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="model.train.module"):
        _fit_on_identical_windows(tmp_path, 10, monkeypatch)
    assert not [r for r in caplog.records if "collapsed" in r.getMessage()]
