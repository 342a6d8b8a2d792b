"""MMV's FAC objective: which head builds which space, gradients everywhere, missing
modalities, and retrieval that learns (stills included) when the objective does."""

import pytest
import torch
import torch.nn.functional as F

from model.config import FacLossConfig, ModelConfig, ObjectiveConfig
from model.data.batch import random_batch
from model.data.stream import LoaderBatch
from model.eval.evaluation import evaluate
from model.objectives import AUDIO_VIDEO, TEXT_AUDIO, TEXT_VIDEO
from model.objectives.reserve import Reserve
from tests.helpers import ITEMS as K
from tests.helpers import item_batch

TINY = ModelConfig.from_name("tiny", max_segments=4)


def _batch(seed=0):
    batch = random_batch(TINY, 3, 4, text_len=5, generator=torch.Generator().manual_seed(seed))
    batch.audio_present[1] = False
    batch.text_mask[2] = False  # window 2 has no words
    batch.text[2] = TINY.pad_id
    return batch


def test_every_parameter_gets_a_finite_gradient_with_windows_missing_audio_or_words():
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only("fac"))
    assert model.backbone.joint is None, "a dual-encoder objective: no joint transformer"
    out = model(_batch())
    out.loss.backward()
    assert set(out.terms) == {"fac", "fac/va", "fac/vt", "fac/chance"}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize("name", ["temperature", "audio_weight", "text_weight", "num_candidates"])
def test_a_value_that_cannot_work_names_its_key(name):
    with pytest.raises(ValueError, match=f"model.objectives.fac.{name}"):
        FacLossConfig(**{name: 0})


def test_video_and_audio_reach_text_through_one_fine_to_coarse_head():
    """Changing the fine-to-coarse head moves exactly the coarse video and audio sides."""
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only("fac")).eval()
    batch = _batch(1)
    spaces = [TEXT_VIDEO, AUDIO_VIDEO, TEXT_AUDIO]
    with torch.no_grad():
        before = model.embed(batch, spaces)
        model.objectives["fac"].coarse[-1].weight.normal_()
        after = model.embed(batch, spaces)
    moved = {
        (space, side)
        for space in spaces
        for side in before[space]
        if not torch.allclose(before[space][side], after[space][side])
    }
    assert moved == {(TEXT_VIDEO, "video"), (TEXT_AUDIO, "audio")}
    # the coarse audio is the shared head applied to the fine audio head's output
    fac = model.objectives["fac"]
    with torch.no_grad():
        cls = model.backbone.encode_audio(batch.audio).cls.mean(2)  # (B, S, D)
        units = F.normalize(fac.coarse(fac.audio(cls)), dim=-1)[0]  # window 0: all audio
        expected = units[batch.segment_mask[0]].mean(0)
    torch.testing.assert_close(after[TEXT_AUDIO]["audio"][0], expected, atol=1e-5, rtol=1e-5)


def test_retrieval_and_still_images_climb_above_chance_when_fac_learns_the_pairing():
    """Windows whose colours, words and sounds name the same items: after training, held-out
    recall@1 is far above chance for text->video, audio->video and text->audio. Still
    frames (deflation) show one of K items each, so a still ties with every other still of
    its item (ranks count ties against the query) and recall@1 cannot rise: their median
    rank falls instead, from about n / 2 (chance) to about n / K (the best those ties allow)."""
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only("fac"))
    held_out = [item_batch(16, torch.Generator().manual_seed(100 + i)) for i in range(2)]
    directions = ("text->video", "audio->video", "text->audio")
    before = evaluate(model, held_out)
    chance = {d: 1 / before[d].n for d in directions}
    stills = before["image->text"].n
    assert stills == 2 * 16 * 4, "one still per held-out segment"
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(120):
        out = model(item_batch(8, g))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    loss, chance_loss = out.terms["fac"].item(), out.terms["fac/chance"].item()
    # items repeat within a batch (K kinds), so even a perfect model stays well above zero
    assert loss < 0.8 * chance_loss, f"training loss {loss:.3f} vs {chance_loss:.3f} at chance"
    after = evaluate(model, [LoaderBatch(b, keys=[]) for b in held_out])
    for d in directions:
        assert after[d].r1 >= 4 * chance[d], f"{d}: {after[d].r1:.3f} vs chance {chance[d]:.3f}"
        assert after[d].r1 > before[d].r1, d
    for d in ("image->text", "text->image"):
        assert after[d].median_rank <= 1.5 * stills / K < before[d].median_rank, d
