"""MERLOT's objective in the model: its terms and weights, the tied vocabulary head, the
retrieval it supplies, and that it learns matching, MLM and reordering together."""

import pytest
import torch

from model.config import (
    SUBSEGMENTS,
    MerlotLossConfig,
    ModelConfig,
    ObjectiveConfig,
    SpanLossConfig,
)
from model.data.batch import Batch, random_batch
from model.eval.evaluation import embed_batch, evaluate
from model.objectives.reserve import Reserve

TINY = ModelConfig.from_name("tiny")


def _batch(seed=0, cfg=TINY, B=3, S=4, L=6):
    return random_batch(cfg, B, S, text_len=L, generator=torch.Generator().manual_seed(seed))


def merlot(**fields) -> ObjectiveConfig:
    return ObjectiveConfig(
        span=SpanLossConfig(weight=0.0), merlot=MerlotLossConfig(weight=1.0, **fields)
    )


def test_every_parameter_gets_a_gradient_and_every_term_is_logged():
    model = Reserve(TINY, merlot(reorder_rate=1.0))
    out = model(_batch(), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    assert model.backbone.audio_encoder is None and model.backbone.span_encoder is None
    names = {"match", "mlm", "mlm_acc", "order", "order_acc"}
    assert set(out.terms) == {"merlot"} | {f"merlot/{n}" for n in names}
    assert all(torch.isfinite(v) for v in out.terms.values())
    assert 0.0 <= out.terms["merlot/order_acc"] <= 1.0 and 0.0 <= out.terms["merlot/mlm_acc"] <= 1.0


def test_the_loss_is_the_weighted_sum_of_its_terms():
    model = Reserve(TINY, merlot(match_weight=0.5, mlm_weight=2.0, order_weight=3.0))
    out = model(_batch(1), torch.Generator().manual_seed(1))
    t = out.terms
    expected = 0.5 * t["merlot/match"] + 2.0 * t["merlot/mlm"] + 3.0 * t["merlot/order"]
    torch.testing.assert_close(out.loss.detach(), expected)


def test_a_term_with_weight_zero_builds_no_head_and_is_not_computed():
    model = Reserve(TINY, merlot(mlm_weight=0.0, order_weight=0.0))
    heads = dict(model.objectives["merlot"].named_children())
    assert set(heads) == {"frame_head", "text_head"}
    out = model(_batch(2))
    assert set(out.terms) == {"merlot", "merlot/match"}
    only_order = Reserve(TINY, merlot(match_weight=0.0, mlm_weight=0.0)).objectives["merlot"]
    assert set(dict(only_order.named_children())) == {"order_head"}
    assert only_order.embed(None, None, _batch(), ("text-video",)) == {}, "no matching heads"


def test_a_merlot_with_no_weighted_term_is_refused():
    with pytest.raises(ValueError, match=r"^model\.objectives\.merlot\.weight: "):
        MerlotLossConfig(weight=1.0, match_weight=0.0, mlm_weight=0.0, order_weight=0.0)


def test_the_vocabulary_head_is_tied_to_the_token_embeddings_of_the_tokenizers_size():
    cfg = ModelConfig.from_name("tiny", vocab_size=300)
    model = Reserve(cfg, merlot())
    objective, embedding = model.objectives["merlot"], model.backbone.token_embedding
    hidden = torch.randn(5, cfg.width)
    logits = objective.vocabulary(model.backbone, hidden)
    assert logits.shape == (5, 300)
    expected = objective.mlm_transform(hidden) @ embedding.weight.T + objective.mlm_bias
    torch.testing.assert_close(logits, expected)
    with torch.no_grad():
        embedding.weight[7] += 1.0
    assert not torch.allclose(objective.vocabulary(model.backbone, hidden)[:, 7], logits[:, 7])
    assert not [p for p in objective.parameters() if 300 in p.shape and p.dim() == 2]


def test_masks_and_shuffles_are_the_same_for_the_same_generator_seed():
    model = Reserve(TINY, merlot(reorder_rate=0.5))
    batch = _batch(3, B=4)
    a = model(batch, torch.Generator().manual_seed(7)).terms
    b = model(batch, torch.Generator().manual_seed(7)).terms
    c = model(batch, torch.Generator().manual_seed(8)).terms
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in ("merlot/mlm", "merlot/order"))


# ----------------------------------------------------------------------------- retrieval


def test_retrieval_is_text_video_from_the_matching_heads():
    model = Reserve(TINY, merlot()).eval()
    batch = _batch(4)
    report = evaluate(model, [batch])
    assert set(report) == {"text->video", "video->text", "image->text", "text->image"}, (
        "frames and words only: no audio"
    )
    before = embed_batch(model, batch)
    head = model.objectives["merlot"].frame_head
    with torch.no_grad():
        head.weight.normal_()
    after = embed_batch(model, batch)
    assert torch.equal(before.text, after.text) and not torch.allclose(
        before.video_t, after.video_t
    )


def test_beside_the_span_objective_merlot_supplies_text_video_and_span_audio_video():
    both = ObjectiveConfig(merlot=MerlotLossConfig(weight=1.0))  # span keeps weight 1
    model = Reserve(TINY, both).eval()
    batch = _batch(5)
    emb = embed_batch(model, batch)
    alone = Reserve(TINY, merlot()).eval()
    alone.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k in alone.state_dict()}, strict=False
    )
    torch.testing.assert_close(emb.text, embed_batch(alone, batch).text)
    assert emb.audio_present.all()


# ----------------------------------------------------------------------------- learning


K = 6  # items: each has its own colour and word


def story_batch(batch_size: int, generator: torch.Generator) -> Batch:
    """Windows of 4 segments, each showing and naming one of K items; a frame's brightness
    grows with its segment, so the order of shuffled frames can be read from them."""
    B, S, L = batch_size, 4, 4
    H, W = TINY.frame_size
    items = torch.randint(0, K, (B, S), generator=generator)  # (B, S)
    palette = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.float
    )
    light = torch.linspace(0.3, 1.0, S)[None, :, None]  # (1, S, 1)
    colours = (palette[items] * light * 255).to(torch.uint8)  # (B, S, 3)
    frames = colours[..., None, None].expand(B, S, 3, H, W).contiguous()
    text = torch.zeros(B, S, SUBSEGMENTS, L, dtype=torch.long)
    text[..., 0] = 2 + items[..., None]  # every sub-segment names the item once ...
    text[..., 1] = 2 + K + torch.arange(SUBSEGMENTS)  # ... beside a word of its own
    text_mask = text > 0
    audio = torch.zeros(B, S, SUBSEGMENTS, TINY.audio_frames, TINY.n_mels)
    segment_mask = torch.ones(B, S, dtype=torch.bool)
    return Batch(frames, audio, text, text_mask, segment_mask, torch.zeros(B, dtype=torch.bool))


def test_matching_mlm_and_reordering_all_learn_on_windows_that_hold_their_answers():
    torch.manual_seed(0)
    model = Reserve(TINY, merlot(reorder_rate=1.0, mask_rate=0.3))
    held_out = [story_batch(16, torch.Generator().manual_seed(100 + i)) for i in range(2)]
    chance = 1 / 32
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(100):
        out = model(story_batch(8, g), g)
        first = first or {k: v.item() for k, v in out.terms.items()}
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        last = model(held_out[0], torch.Generator().manual_seed(1)).terms
    assert last["merlot/mlm"] < 0.5 * first["merlot/mlm"]
    assert last["merlot/mlm_acc"] > 0.5  # random: about 1 / 512
    assert last["merlot/order"] < 0.5 and last["merlot/order_acc"] > 0.8  # random: 0.5
    report = evaluate(model, held_out)
    assert report["text->video"].r1 >= 5 * chance and report["video->text"].r1 >= 5 * chance


def _sparse(kind: str) -> Batch:
    batch = _batch(6, B=3)
    if kind in ("no_words_window", "no_words_batch"):
        rows = 0 if kind == "no_words_window" else slice(None)
        batch.text_mask[rows] = False
        batch.text[rows] = TINY.pad_id
    if kind == "padded_segments":
        batch.segment_mask[1, 2:] = False
        batch.text_mask[1, 2:] = False
        batch.text[1, 2:] = TINY.pad_id
    if kind == "one_segment_each":
        batch.segment_mask[:, 1:] = False
        batch.text_mask[:, 1:] = False
        batch.text[:, 1:] = TINY.pad_id
    batch.check(TINY)
    return batch


@pytest.mark.parametrize(
    "kind", ["no_words_window", "no_words_batch", "padded_segments", "one_segment_each"]
)
def test_missing_words_or_segments_give_finite_losses_and_gradients_everywhere(kind):
    torch.manual_seed(0)
    model = Reserve(TINY, merlot(reorder_rate=1.0))
    out = model(_sparse(kind), torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out.terms.values()), out.terms
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    if kind == "no_words_batch":
        assert out.terms["merlot/match"] == 0.0 and out.terms["merlot/mlm"] == 0.0
    if kind == "one_segment_each":
        assert out.terms["merlot/order"] == 0.0, "one frame cannot be reordered"
    else:
        assert out.terms["merlot/order"] > 0.0
