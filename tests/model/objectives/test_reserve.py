"""The full model: shapes for every size, missing modalities, and a few steps of training."""

import pytest
import torch

from model.config import PRESETS, ModelConfig, ObjectiveConfig
from model.data.batch import random_batch
from model.nn.backbone import Backbone
from model.nn.masking import span_masks
from model.objectives.reserve import Reserve

OBJECTIVES = ("span", "combinatorial", "milnce", "mvm", "fac")
TINY = ModelConfig.from_name("tiny")


def _batch(seed=0, B=3, S=4, L=6):
    return random_batch(TINY, B, S, text_len=L, generator=torch.Generator().manual_seed(seed))


def _all_objectives():
    cfg = ObjectiveConfig()
    for name in OBJECTIVES:
        getattr(cfg, name).weight = 1.0
    return cfg


@pytest.mark.parametrize("size", sorted(PRESETS))
def test_backbone_shapes_for_every_config(size):
    cfg = ModelConfig.from_name(size)
    B, S, L = 2, cfg.max_segments, 7
    device = "cpu" if size == "tiny" else "meta"  # base / large: shapes only, no compute
    with torch.device(device):
        bb = Backbone(cfg)
    batch = random_batch(cfg, B, S, text_len=L, device=device)
    frames = bb.encode_frames(batch.frames)
    assert frames.tokens.shape == (B, S, cfg.frame_tokens, cfg.width)
    assert frames.embedding.shape == (B, S, cfg.width)
    audio = bb.encode_audio(batch.audio)
    assert audio.cls.shape == (B, S, 3, cfg.width)
    assert audio.tokens.shape == (B, S, 3, cfg.audio_tokens, cfg.width)
    assert bb.encode_spans(batch.text, batch.text_mask).shape == (B, S, 3, cfg.width)
    tv = bb.text_view(frames, batch.text, batch.text_mask, batch.segment_mask)
    assert tv.frames.shape == (B, S, cfg.frame_tokens, cfg.width)
    assert tv.subsegments.shape == (B, S, 3, L, cfg.width)
    av = bb.audio_view(frames, audio, batch.segment_mask, batch.audio_present)
    assert av.subsegments.shape == (B, S, 3, cfg.audio_tokens, cfg.width)


def test_reserve_widths_depths_and_parameter_counts():
    expected = {"tiny": (64, 2, 2, 2), "base": (768, 12, 12, 12), "large": (1024, 24, 24, 12)}
    counts = {}
    for size, (width, vit, joint, audio) in expected.items():
        cfg = ModelConfig.from_name(size)
        assert (cfg.width, cfg.vision_layers, cfg.joint_layers, cfg.audio_layers) == (
            width,
            vit,
            joint,
            audio,
        )
        with torch.device("meta"):
            counts[size] = Reserve(cfg, ObjectiveConfig()).num_params()
    assert counts["tiny"] < 1e6 < 250e6 < counts["base"] < 400e6 < counts["large"] < 1e9
    assert ModelConfig.from_name("base").frame_tokens == 60  # 12 x 20 patches pooled 2 x 2
    assert ModelConfig.from_name("base").audio_tokens == 6  # 60 frames / patch 2 / pool 5


@pytest.mark.parametrize(("size", "objectives"), [("base", "all"), ("large", "span")])
def test_full_model_forward_on_meta_device(size, objectives):
    cfg = ModelConfig.from_name(size)
    chosen = _all_objectives() if objectives == "all" else ObjectiveConfig.only(objectives)
    with torch.device("meta"):
        model = Reserve(cfg, chosen)
    out = model(random_batch(cfg, 2, 16, text_len=15, device="meta"))
    assert out.loss.shape == () and set(chosen.enabled()) <= set(out.terms)


def test_tiny_forward_returns_weighted_sum_of_objectives():
    objectives = _all_objectives()
    objectives.mvm.weight = 0.5
    model = Reserve(TINY, objectives)
    out = model(_batch(), torch.Generator().manual_seed(0))
    expected = sum(objectives.weights()[n] * out.terms[n] for n in OBJECTIVES)
    torch.testing.assert_close(out.loss.detach(), expected)
    assert {
        "span/frame",
        "span/audio",
        "span/text",
        "mvm/hog",
        "mvm/pixel",
        "combinatorial/t-va",
    } <= set(out.terms)


def test_precomputed_masks_in_the_batch_equal_drawing_them_with_the_same_seed():
    model = Reserve(TINY, ObjectiveConfig.only("span"))
    batch = _batch()
    drawn = model(batch, torch.Generator().manual_seed(5)).loss
    batch.masks = span_masks(
        batch.segment_mask,
        batch.audio_present,
        batch.text_present,
        generator=torch.Generator().manual_seed(5),
    )
    torch.testing.assert_close(model(batch).loss, drawn)


def test_padding_tokens_do_not_change_the_joint_outputs():
    torch.manual_seed(0)
    bb = Backbone(TINY).eval()
    batch = _batch(L=5)
    longer = _batch(L=5)
    longer.text = torch.cat([batch.text, torch.zeros(3, 4, 3, 3, dtype=torch.long)], -1)
    longer.text_mask = torch.cat([batch.text_mask, torch.zeros(3, 4, 3, 3, dtype=torch.bool)], -1)
    frames = bb.encode_frames(batch.frames)
    a = bb.text_view(frames, batch.text, batch.text_mask, batch.segment_mask)
    b = bb.text_view(frames, longer.text, longer.text_mask, batch.segment_mask)
    torch.testing.assert_close(a.frames, b.frames, atol=1e-5, rtol=1e-5)
    keep = batch.text_mask
    torch.testing.assert_close(
        a.subsegments[keep], b.subsegments[:, :, :, :5][keep], atol=1e-5, rtol=1e-5
    )


def _missing(kind):
    batch = _batch(seed=1)
    if kind in ("no_audio_sample", "no_audio_batch"):
        batch.audio_present[0 if kind == "no_audio_sample" else slice(None)] = False
        batch.audio[~batch.audio_present] = 0
    if kind in ("no_words_sample", "no_words_batch"):
        rows = 0 if kind == "no_words_sample" else slice(None)
        batch.text_mask[rows] = False
        batch.text[rows] = 0
    if kind == "padded_segments":
        batch.segment_mask[1, 2:] = False
        batch.text_mask[1, 2:] = False
        batch.text[1, 2:] = 0
    if kind == "no_audio_no_words":
        batch.audio_present[:] = False
        batch.text_mask[:] = False
        batch.text[:] = 0
    batch.check(TINY)
    return batch


KINDS = [
    "no_audio_sample",
    "no_audio_batch",
    "no_words_sample",
    "no_words_batch",
    "padded_segments",
    "no_audio_no_words",
]


@pytest.mark.parametrize("kind", KINDS)
def test_missing_modality_gives_finite_loss_and_gradients(kind):
    torch.manual_seed(0)
    model = Reserve(TINY, _all_objectives())
    out = model(_missing(kind), torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss), kind
    assert all(torch.isfinite(v) for v in out.terms.values()), out.terms
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if kind in ("no_audio_batch", "no_audio_no_words"):
        assert out.terms["span/audio"] == 0.0
    if kind == "no_audio_sample":
        assert out.terms["span/audio"] > 0, "the other samples' audio still trains"
    if kind in ("no_words_batch", "no_audio_no_words"):
        assert out.terms["span/text"] == 0.0 and out.terms["milnce"] == 0.0


# fac: at temperature 0.07 its first AdamW step overshoots on this random batch (the loss
# rises, then falls to about 0.9 of its start by step 10); its training is tested in
# tests/model/objectives/test_fac.py instead (held-out recall and the loss below chance).
@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n != "fac"])
def test_a_few_adamw_steps_on_a_fixed_batch_drive_each_loss_down(name):
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only(name))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    batch = _batch(seed=2, B=4)
    smooth = torch.rand(
        4, 4, 3, 4, 6, generator=torch.Generator().manual_seed(3)
    )  # predictable frames
    batch.frames = torch.nn.functional.interpolate(
        smooth.flatten(0, 1), size=TINY.frame_size, mode="bilinear"
    )
    batch.frames = (batch.frames * 255).to(torch.uint8).unflatten(0, (4, 4))
    losses = []
    for _ in range(10):
        loss = model(batch, torch.Generator().manual_seed(0)).loss  # same masks every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], f"{name}: {losses}"


@pytest.mark.parametrize("name", [*OBJECTIVES, "all"])
def test_every_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search(name):
    objectives = _all_objectives() if name == "all" else ObjectiveConfig.only(name)
    model = Reserve(TINY, objectives)
    model(_batch(), torch.Generator().manual_seed(0)).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"


def test_backbone_leaves_out_encoders_no_objective_uses():
    milnce = Reserve(TINY, ObjectiveConfig.only("milnce")).backbone
    assert milnce.joint is None and milnce.audio_encoder is None and milnce.span_encoder is not None
    objectives = ObjectiveConfig.only("combinatorial")
    objectives.combinatorial.pair_weights = {"t-v": 1.0}
    eao = Reserve(TINY, objectives)
    assert eao.backbone.audio_encoder is None and set(eao.objectives["combinatorial"].proj) == {
        "t",
        "v",
    }
