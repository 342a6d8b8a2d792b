"""Window, segment and sentence vectors: the same numbers validation computes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.data.batch import random_batch
from model.eval.evaluation import embed_batch
from model.inference import Encoder, load_checkpoint
from model.inference.encoder import single_segments


@pytest.fixture(scope="module")
def encoder(trained_run) -> Encoder:
    return Encoder(load_checkpoint(str(trained_run.checkpoint)), batch_size=2)


@pytest.fixture(scope="module")
def batch(encoder):
    g = torch.Generator().manual_seed(0)
    b = random_batch(encoder.model.config, 5, text_len=8, generator=g)
    b.segment_mask[1, 2:] = False  # a short window: padding is left out
    b.text_mask[1, 2:] = False
    b.text[1, 2:] = 0
    b.text_mask[2] = False  # a window without words
    b.text[2] = 0
    b.audio_present[3] = False  # a window without audio
    return b


def test_window_vectors_are_what_validation_computes_in_any_chunking(encoder, batch):
    emb = embed_batch(encoder.model, batch)
    out = encoder.encode_windows(batch, segments=False)  # in chunks of 2 windows
    assert torch.allclose(out.windows["text-video/text"], emb.text, atol=1e-5)
    assert torch.allclose(out.windows["text-video/video"], emb.video_t, atol=1e-5)
    assert torch.allclose(out.windows["audio-video/audio"], emb.audio, atol=1e-5)
    assert torch.allclose(out.windows["audio-video/video"], emb.video_a, atol=1e-5)
    assert out.present["text-video/text"].tolist() == emb.text_present.tolist()
    assert out.present["audio-video/audio"].tolist() == emb.audio_present.tolist()
    assert out.present["text-video/text"].tolist() == [True, True, False, True, True]


def test_a_segment_vector_is_its_segment_embedded_as_a_window_alone(encoder, batch):
    out = encoder.encode_windows(batch)
    one, where = single_segments(batch)
    assert len(where) == int(batch.segment_mask.sum()) == 5 * 4 - 2
    i = 7
    b, s = where[i].tolist()
    alone = embed_batch(encoder.model, one.to("cpu"))
    assert torch.allclose(out.segments["text-video/video"][b, s], alone.video_t[i], atol=1e-5)
    assert torch.allclose(out.segments["audio-video/audio"][b, s], alone.audio[i], atol=1e-5)
    assert not out.segment_present["text-video/video"][1, 2:].any(), "padded segments"
    assert not out.segment_present["audio-video/audio"][3].any(), "no audio in window 3"


def test_a_sentence_vector_does_not_depend_on_its_batch(encoder):
    alone = encoder.encode_text(["pour the milk"])["text-video/text"]
    together = encoder.encode_text(["whisk two eggs", "pour the milk", "x"])["text-video/text"]
    assert alone.shape == (1, encoder.embed_dim)
    assert torch.allclose(alone[0], together[1], atol=1e-5)
    assert not torch.allclose(together[0], together[1], atol=1e-3), "sentences differ"


def test_an_empty_sentence_or_list_is_refused(encoder):
    with pytest.raises(ValueError, match="no sentences"):
        encoder.encode_text([])
    with pytest.raises(ValueError, match="sentence 1 has no words"):
        encoder.encode_text(["ok", "  "])


def test_a_picture_goes_through_the_video_pathway(encoder):
    rng = np.random.default_rng(0)
    pictures = []
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(buf, fmt)
        pictures.append(buf.getvalue())
    out = encoder.encode_images(pictures)
    assert set(out) == {"text-video/video", "audio-video/video"}
    assert out["text-video/video"].shape == (2, encoder.embed_dim)
    with pytest.raises(ValueError, match="image 0: does not decode"):
        encoder.encode_images([b"not a picture"])


def test_the_benchmark_reports_every_direction_validation_reports_text_to_fused_included():
    """With the combinatorial objective on, the command's retrieval (from the encoder's
    vectors) equals `evaluate` (validation's) in every direction, text -> fused included."""
    from model.config import ModelConfig, ObjectiveConfig
    from model.data.collate import DecodeConfig
    from model.data.tokenizer import from_state
    from model.eval.evaluation import evaluate
    from model.inference.benchmark import evaluate_windows
    from model.inference.loading import Loaded
    from model.objectives.reserve import Reserve

    torch.manual_seed(0)
    cfg = ModelConfig.from_name("tiny")
    model = Reserve(cfg, ObjectiveConfig.only("combinatorial"))
    loaded = Loaded(model, from_state(None), DecodeConfig(), "memory", "-")
    g = torch.Generator().manual_seed(1)
    batches = [random_batch(cfg, 6, text_len=8, generator=g) for _ in range(2)]
    batches[0].audio_present[2] = False  # a window without audio: left out of the fused side
    got = evaluate_windows(Encoder(loaded, batch_size=4), batches)
    want = evaluate(model, batches, stills=False)
    assert {"text->fused", "text->audio", "text->video"} <= set(want)
    assert set(got) == set(want)
    for direction, scores in want.items():
        assert got[direction].n == scores.n, direction
        assert got[direction].as_dict() == pytest.approx(scores.as_dict(), abs=1e-6), direction
