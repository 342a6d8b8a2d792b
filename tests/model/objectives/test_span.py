"""The span objective, Reserve's recipe piece by piece: the vision-free frame pass, the
audio term's extra negatives, MASKAUDIO, words in the audio view; and the old recipe."""

import math

import pytest
import torch

from model.config import MASK_ID, ModelConfig, ObjectiveConfig, SpanLossConfig
from model.data.batch import random_batch
from model.nn.joint import TEXT
from model.nn.masking import span_masks
from model.objectives.common import Encoded
from model.objectives.reserve import Reserve
from model.objectives.span import collapsed_terms
from tests.helpers import direct_span, direct_span_with_negatives

TINY = ModelConfig.from_name("tiny")


def _batch(seed=0, B=3, S=4, L=6):
    batch = random_batch(TINY, B, S, text_len=L, generator=torch.Generator().manual_seed(seed))
    batch.segment_mask[1, 3:] = False  # a short window
    batch.text_mask[1, 3:] = False
    batch.text[1, 3:] = 0
    batch.audio_present[2] = False  # a video without audio
    batch.audio[2] = 0
    batch.check(TINY)
    return batch


def _model(span=None):
    objectives = ObjectiveConfig.only("span")
    objectives.span = span or SpanLossConfig()
    torch.manual_seed(0)
    return Reserve(TINY, objectives)


def _masks(batch, seed=1, **kw):
    return span_masks(
        batch.segment_mask,
        batch.audio_present,
        batch.text_present,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def test_vision_free_pass_has_a_row_per_real_segment_of_the_samples_with_its_content():
    batch = _batch()
    batch.masks = _masks(batch)
    batch.masks.pass_words = torch.tensor([True, False, False])  # sample 2 has no audio
    out = _model()(batch)
    rows = int(batch.segment_mask[0].sum() + batch.segment_mask[1].sum())  # 4 + 3
    assert out.terms["span/chance/frame"].item() == pytest.approx(math.log(rows))
    batch.masks.pass_words = torch.tensor([True, True, True])
    out = _model()(batch)
    assert out.terms["span/chance/frame"].item() == pytest.approx(math.log(11))  # B x S real


def test_vision_free_pass_sees_no_frame_and_only_the_chosen_modality():
    model = _model().eval()
    span = model.objectives["span"]
    batch = _batch()
    pass_words = torch.tensor([True, False, True])

    def pooled(b):
        with torch.no_grad():
            return span.pooled(model.backbone, Encoded(model.backbone, b), b, pass_words)

    before = pooled(batch)
    other = _batch(seed=9)
    changed = _batch()
    changed.frames = other.frames  # new pictures everywhere
    torch.testing.assert_close(pooled(changed), before)
    changed.audio[0] = other.audio[0]  # sample 0 sees words: its audio does not matter
    changed.text[1], changed.text_mask[1] = other.text[1], other.text_mask[1]  # 1 sees audio
    changed.text[1, 3:], changed.text_mask[1, 3:] = 0, False
    torch.testing.assert_close(pooled(changed), before)
    changed.audio[1] = other.audio[1]  # now sample 1's own content changes
    after = pooled(changed)
    assert not torch.allclose(after[1], before[1])
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])


def test_audio_term_negatives_are_every_unmasked_subsegment_with_audio():
    batch = _batch()
    batch.masks = _masks(batch)
    valid = batch.audio_valid
    n = int((batch.masks.text_view & valid).sum())
    m = int((~batch.masks.text_view & valid).sum())
    assert m == int(valid.sum()) - n and m > 2 * n  # 75% of them
    reserve = _model()(batch).terms["span/chance/audio"].item()
    assert reserve == pytest.approx(0.5 * (math.log(n + m) + math.log(n)))
    legacy = _model(SpanLossConfig.legacy())(batch).terms["span/chance/audio"].item()
    assert legacy == pytest.approx(math.log(n))


def test_maskaudio_follows_mask_in_a_masked_subsegment():
    model = _model()
    bb, span = model.backbone, model.objectives["span"]
    batch = _batch()
    masked = torch.zeros(3, 4, 3, dtype=torch.bool)
    masked[0, 1, 2] = masked[2, 0, 0] = True
    x, keys = bb.text_part(batch.text, batch.text_mask, batch.segment_mask, masked, span.mask_audio)
    x, keys = x.unflatten(2, (3, -1)), keys.unflatten(2, (3, -1))  # (B, S, 3, L, D)
    ji = bb.joint_input
    for b, s, k in masked.nonzero().tolist():
        place = ji.segment[s] + ji.subsegment[k] + ji.kind[TEXT]
        mask_emb = bb.token_embedding.weight[MASK_ID]
        torch.testing.assert_close(x[b, s, k, 0], mask_emb + ji.text_pos[0] + place)
        torch.testing.assert_close(x[b, s, k, 1], span.mask_audio + ji.text_pos[1] + place)
        assert keys[b, s, k].tolist() == [True, True] + [False] * (keys.shape[-1] - 2)
    plain, plain_keys = bb.text_part(batch.text, batch.text_mask, batch.segment_mask)
    keep = ~masked[..., None].expand(-1, -1, -1, 6).flatten(2)  # (B, S, 3L)
    torch.testing.assert_close(x.flatten(2, 3)[keep], plain[keep])
    assert torch.equal(keys.flatten(2)[keep], plain_keys[keep])


def test_audio_and_text_terms_equal_the_formulas_on_mask_and_maskaudio_outputs():
    """The audio term queries at MASKAUDIO (slot 1), the text term at MASK (slot 0) of the
    text view and at the audio view's MASK; recomputed with the loops of the losses test."""
    model = _model(SpanLossConfig(borrow_tokens=False, neighbour_text_p=0.0))
    bb, span = model.backbone, model.objectives["span"]
    batch = _batch()
    m = batch.masks = _masks(batch, neighbour_text_p=0.0)
    terms = model(batch).terms
    enc = Encoded(bb, batch)
    tv = bb.text_view(
        enc.frames, batch.text, batch.text_mask, batch.segment_mask, m.text_view, span.mask_audio
    )
    audio_in = enc.audio.tokens.clone()
    audio_in[..., 0, :][m.audio_view] = span.audio_mask
    av = bb.audio_view(
        enc.frames,
        type(enc.audio)(enc.audio.cls, audio_in),
        batch.segment_mask,
        batch.audio_present,
        m.audio_view,
    )
    valid = batch.audio_valid
    q = span.query["audio"](tv.subsegments[:, :, :, 1]).flatten(0, 2).double()
    t = span.target["audio"](enc.audio.cls).flatten(0, 2).double()
    s = span.loss.log_scales["audio"].double()
    rows, extra = (m.text_view & valid).flatten(), (~m.text_view & valid).flatten()
    audio = direct_span_with_negatives(q, t, rows, extra, s)
    torch.testing.assert_close(terms["span/audio"].double(), audio, atol=1e-4, rtol=1e-4)
    words = batch.text_present
    q = torch.cat([tv.subsegments[:, :, :, 0], av.subsegments[:, :, :, 0]])
    q = span.query["text"](q).flatten(0, 2).double()
    t = span.target["text"](enc.spans).flatten(0, 2).repeat(2, 1).double()
    rows = torch.cat([(m.text_view & words).flatten(), (m.audio_view & words & valid).flatten()])
    text = direct_span(q, t, rows, span.loss.log_scales["text"].double())
    torch.testing.assert_close(terms["span/text"].double(), text, atol=1e-4, rtol=1e-4)


def test_audio_view_shows_the_chosen_neighbours_as_words():
    model = _model().eval()
    bb = model.backbone
    batch = _batch()
    m = _masks(batch, neighbour_text_p=1.0)
    assert m.audio_view_words.any()
    enc = Encoded(bb, batch)
    words = (batch.text, batch.text_mask, m.audio_view_words)
    args = (enc.frames, enc.audio, batch.segment_mask, batch.audio_present, m.audio_view)
    with torch.no_grad():
        shown = bb.audio_view(*args, words).frames
        other = batch.text.clone()
        other[~m.audio_view_words] = 2  # words nobody shows: no effect
        hidden = bb.audio_view(*args, (other, batch.text_mask, m.audio_view_words)).frames
        torch.testing.assert_close(hidden, shown)
        plain = bb.audio_view(*args).frames
    with_words = m.audio_view_words.flatten(1).any(1)  # (B,)
    assert not torch.allclose(shown[with_words], plain[with_words])


@pytest.mark.parametrize("recipe", ["reserve", "legacy"])
def test_both_recipes_train_every_parameter_and_stay_finite(recipe):
    model = _model(SpanLossConfig() if recipe == "reserve" else SpanLossConfig.legacy())
    out = model(_batch(), torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{recipe}: no gradient for {missing}"
    names = {n for n, _ in model.named_parameters()}
    prefix = "objectives.span."
    assert (prefix + "pool" in names) == (recipe == "reserve")
    assert (prefix + "mask_audio" in names) == (recipe == "reserve")
    assert (prefix + "frame_mask" in names) == (recipe == "legacy")


def _parts(term, below, query, target, chance=4.5):
    return {
        f"span/{term}": chance - below,
        f"span/chance/{term}": chance,
        f"span/cos/query/{term}": query,
        f"span/cos/target/{term}": target,
    }


def test_collapsed_terms_are_at_chance_with_one_side_alike():
    # held-out figures of the demo corpus's bench runs (docs/DESIGN.md section 3.1)
    one_sequence = (
        _parts("frame", 0.04, 0.97, 0.72)
        | _parts("audio", 0.03, 0.78, 0.98)
        | _parts("text", 0.003, 0.90, 0.94)
    )
    assert set(collapsed_terms(one_sequence)) == {"frame", "audio", "text"}
    learning = _parts("frame", 0.11, 0.57, 0.63) | _parts("text", 0.38, 0.28, 0.32)
    assert collapsed_terms(learning) == {}
    # at chance but its rows differ: not (yet) collapsed; alike but learning: not collapsed
    assert collapsed_terms(_parts("audio", 0.01, 0.5, 0.6)) == {}
    assert collapsed_terms(_parts("audio", 0.2, 0.99, 0.99)) == {}
    (account,) = collapsed_terms(_parts("frame", 0.0, 0.81, 0.994, chance=2.773)).values()
    assert account == (
        "span/frame has collapsed: 2.773 nats against 2.773 at chance, "
        "mean cosine between rows 0.81 (queries) and 0.99 (targets)"
    )
    assert collapsed_terms({"span/frame": 1.0}) == {}  # parts missing: nothing to say
