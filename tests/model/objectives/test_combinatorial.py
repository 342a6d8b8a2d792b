"""Everything at Once's embeddings at test time: any subset of modalities, any number of
segments, and the text <-> fused (video + audio) space."""

import itertools

import pytest
import torch

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import Batch, random_batch
from model.objectives import TEXT_FUSED, Encoded
from model.objectives.reserve import Reserve

TINY = ModelConfig.from_name("tiny", max_segments=4)
GROUPS = ["".join(g) for n in (1, 2, 3) for g in itertools.combinations("tva", n)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Reserve(TINY, ObjectiveConfig.only("combinatorial")).eval()


def _batch(S, seed=0, B=3):
    return random_batch(TINY, B, S, text_len=5, generator=torch.Generator().manual_seed(seed))


def _group(model, batch, group):
    objective = model.objectives["combinatorial"]
    with torch.no_grad():
        return objective.embed_group(model.backbone, Encoded(model.backbone, batch), batch, group)


@pytest.mark.parametrize("S", [1, 3, 4, 9])
@pytest.mark.parametrize("group", GROUPS)
def test_any_subset_of_modalities_embeds_windows_of_any_length(model, group, S):
    batch = _batch(S)
    emb = _group(model, batch, group)
    assert emb.shape == (3, TINY.embed_dim) and torch.isfinite(emb).all()
    assert (emb.norm(dim=-1) > 0.1).all(), "a mean of unit vectors from one model: not empty"


def test_a_window_longer_than_max_segments_averages_its_parts(model):
    """Fused per segment: a window of two 4-segment halves embeds as the mean of the halves."""
    a, b = _batch(4, seed=1), _batch(4, seed=2)
    a.segment_mask[:] = True
    b.segment_mask[:] = True
    whole = Batch(
        frames=torch.cat([a.frames, b.frames], 1),
        audio=torch.cat([a.audio, b.audio], 1),
        text=torch.cat([a.text, b.text], 1),
        text_mask=torch.cat([a.text_mask, b.text_mask], 1),
        segment_mask=torch.cat([a.segment_mask, b.segment_mask], 1),
        audio_present=torch.ones(3, dtype=torch.bool),
    )
    a.audio_present[:] = True
    b.audio_present[:] = True
    for group in ("v", "va"):
        expected = (_group(model, a, group) + _group(model, b, group)) / 2
        torch.testing.assert_close(_group(model, whole, group), expected, atol=1e-5, rtol=1e-5)


def test_fused_video_and_audio_is_video_alone_where_there_is_no_audio(model):
    batch = _batch(4, seed=3)
    batch.audio_present[:] = torch.tensor([False, True, False])
    fused, video = _group(model, batch, "va"), _group(model, batch, "v")
    torch.testing.assert_close(fused[[0, 2]], video[[0, 2]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fused[1], video[1], atol=1e-3), "audio takes part where present"


def test_text_fused_space_pairs_words_with_fused_video_and_audio(model):
    batch = _batch(4, seed=4)
    with torch.no_grad():
        spaces = model.embed(batch, [TEXT_FUSED])
    assert set(spaces) == {TEXT_FUSED}
    torch.testing.assert_close(spaces[TEXT_FUSED]["fused"], _group(model, batch, "va"))
    torch.testing.assert_close(spaces[TEXT_FUSED]["text"], _group(model, batch, "t"))


def test_without_an_audio_head_there_is_no_fused_space():
    cfg = ObjectiveConfig.only("combinatorial")
    cfg.combinatorial.pair_weights = {"t-v": 1.0}
    model = Reserve(TINY, cfg).eval()
    with torch.no_grad():
        spaces = model.embed(_batch(4), [TEXT_FUSED])
    assert spaces == {}
