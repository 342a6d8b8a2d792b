"""Deflation: still frames as one-segment windows, their embeddings through the video
pathway, and image <-> text retrieval over the stills with words."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import random_batch
from model.eval.deflation import (
    Stills,
    cat_stills,
    embed_stills,
    gather_stills,
    still_windows,
    stills_report,
)
from model.objectives.reserve import Reserve

TINY = ModelConfig.from_name("tiny", max_segments=4)


def _batch(segment_mask, seed=0):
    B, S = len(segment_mask), len(segment_mask[0])
    batch = random_batch(TINY, B, S, text_len=4, generator=torch.Generator().manual_seed(seed))
    batch.segment_mask = torch.tensor(segment_mask)
    batch.text_mask &= batch.segment_mask[:, :, None, None]
    batch.text[~batch.text_mask] = TINY.pad_id
    batch.frames[~batch.segment_mask] = 0
    return batch


windows = st.integers(1, 3).flatmap(
    lambda b: st.lists(
        st.lists(st.booleans(), min_size=4, max_size=4).filter(any), min_size=b, max_size=b
    )
)


@settings(max_examples=30, deadline=None)
@given(windows, st.integers(0, 2**16))
def test_each_real_segment_becomes_a_one_segment_window_of_its_frame_alone(mask, seed):
    batch = _batch(mask, seed)
    real = [(b, s) for b, row in enumerate(mask) for s, ok in enumerate(row) if ok]
    images, captions = still_windows(batch), still_windows(batch, words=True)
    images.check(TINY)
    captions.check(TINY)
    for stills in (images, captions):
        assert stills.frames.shape[:2] == (len(real), 1)
        assert stills.segment_mask.all() and not stills.audio_present.any()
        assert not stills.audio.any()
        for i, (b, s) in enumerate(real):
            assert torch.equal(stills.frames[i, 0], batch.frames[b, s])
    assert not images.text_mask.any() and not images.text.any(), "no words beside the image"
    for i, (b, s) in enumerate(real):
        assert torch.equal(captions.text[i, 0], batch.text[b, s]), "its own segment's words"
        assert torch.equal(captions.text_mask[i, 0], batch.text_mask[b, s])


def test_a_still_is_embedded_by_the_frame_encoder_and_the_coarse_video_head():
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only("fac")).eval()
    batch = _batch([[True, True, False, False], [True, True, True, True]])
    stills = embed_stills(model, batch)
    assert stills.n == 6
    fac = model.objectives["fac"]
    with torch.no_grad():
        frames = batch.frames[batch.segment_mask][:, None]  # (6, 1, 3, H, W)
        embedding = model.backbone.encode_frames(frames).embedding[:, 0]  # (6, D)
        expected = F.normalize(fac.coarse(fac.video(embedding)), dim=-1)
        words = model.backbone.encode_spans(batch.text, batch.text_mask)[batch.segment_mask]
        has = batch.text_present[batch.segment_mask]  # (6, 3)
        text = F.normalize(fac.text(words), dim=-1)  # (6, 3, E)
        text = (text * has[..., None]).sum(1) / has.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(stills.image, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stills.text[stills.present], text[has.any(1)], atol=1e-5, rtol=1e-5)
    assert stills.present.tolist() == has.any(1).tolist()


def test_stills_without_words_are_left_out_and_without_a_text_space_nothing_is_scored():
    torch.manual_seed(0)
    batch = _batch([[True, True, True, False]])
    batch.text_mask[0, 1] = False  # the second segment has no words
    batch.text[0, 1] = TINY.pad_id
    report = stills_report(embed_stills(Reserve(TINY, ObjectiveConfig.only("fac")).eval(), batch))
    assert set(report) == {"image->text", "text->image"} and report["image->text"].n == 2
    mvm = embed_stills(Reserve(TINY, ObjectiveConfig.only("mvm")).eval(), batch)
    assert mvm.n == 3 and not mvm.present.any() and stills_report(mvm) == {}


def test_stills_concatenate_and_gather_in_order():
    a = Stills(torch.eye(3), torch.eye(3).flip(0), torch.tensor([True, False, True]))
    both = cat_stills([a, Stills.empty(3), a])
    assert both.n == 6 and torch.equal(both.text[3:], a.text)
    assert torch.equal(gather_stills(both).image, both.image), "one process: the identity"
    report = stills_report(a)  # rows 0 and 2: image 0 -> text 0 is e_2, image 2 -> e_0
    assert report["image->text"].n == 2 and report["image->text"].r1 == 0.0
