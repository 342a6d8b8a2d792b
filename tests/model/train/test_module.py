"""The LightningModule: optimizer groups, schedule, vocabulary, and a two-step fit on CPU
with validation retrieval."""

import lightning as L
import pytest
import torch

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import random_batch
from model.train.module import ReserveModule, contrastive_scales, lr_factor


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread beats two on a busy 2-core machine (by 5-10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
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
