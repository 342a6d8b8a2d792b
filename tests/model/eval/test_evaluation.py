"""Zero-shot retrieval evaluation: recall on known embeddings, which heads supply which
spaces, windows without a modality, and retrieval that learns when the objective does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.config import (
    MilNceLossConfig,
    ModelConfig,
    MvmLossConfig,
    ObjectiveConfig,
    SpanLossConfig,
)
from model.data.batch import Batch, random_batch
from model.data.stream import LoaderBatch
from model.eval.evaluation import (
    Embeddings,
    cat,
    embed_batch,
    evaluate,
    gather,
    retrieval_metrics,
    retrieval_report,
)
from model.objectives.reserve import Reserve
from tests.helpers import ITEMS, item_batch

TINY = ModelConfig.from_name("tiny", max_segments=4)


# ----------------------------------------------------------------------------- known embeddings


def hand_made() -> Embeddings:
    """4 windows. Text i is the unit vector e_i, so cos(text i, video j) = video_t[j][i]:

        text\\video    0    1    2    3
        0            .6   .8   0    0      text 0 prefers video 1: rank 2
        1            .8   .6   0    0      text 1 prefers video 0: rank 2
        2            0    0    1    .6     rank 1
        3            0    0    0    .8     rank 1

    Video->text reads the columns: video 0 and 1 rank their text 2nd, 2 and 3 first.
    The audio space is separate: audio = video_a = identity, every rank 1.
    """
    eye = torch.eye(4)
    video_t = torch.tensor(
        [[0.6, 0.8, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.6, 0.8]]
    )
    every = torch.ones(4, dtype=torch.bool)
    return Embeddings(eye, video_t, eye, eye.clone(), every, every.clone())


def test_recall_and_median_rank_on_hand_made_embeddings():
    report = retrieval_report(hand_made())
    t2v, v2t = report["text->video"], report["video->text"]
    assert (t2v.r1, t2v.r5, t2v.median_rank, t2v.mean_rank, t2v.n) == (0.5, 1.0, 1.5, 1.5, 4)
    assert (v2t.r1, v2t.median_rank) == (0.5, 1.5)
    assert report["audio->video"].r1 == report["video->audio"].r1 == 1.0, "its own space"
    metrics = retrieval_metrics(report, prefix="val/")
    assert metrics["val/t2v_r1"] == 0.5 and metrics["val/t2v_medr"] == 1.5
    assert metrics["val/a2v_r10"] == 1.0 and metrics["val/v2a_medr"] == 1.0
    assert len(metrics) == 4 * 4


def test_windows_without_the_modality_are_left_out_of_its_directions():
    emb = hand_made()
    emb.text_present[3] = False  # among windows 0-2: ranks 2, 2, 1
    emb.audio_present[:] = torch.tensor([True, True, False, False])
    report = retrieval_report(emb)
    assert report["text->video"].n == 3 and report["text->video"].median_rank == 2.0
    assert report["text->video"].r1 == pytest.approx(1 / 3)
    assert report["audio->video"].n == 2
    emb.audio_present[:] = False
    assert set(retrieval_report(emb)) == {"text->video", "video->text"}


def test_concatenated_and_gathered_windows_keep_their_order():
    a, b = hand_made(), Embeddings.empty(4)
    both = cat([a, b, a])
    assert both.n == 8 and torch.equal(both.video_t[4:], a.video_t)
    assert torch.equal(gather(both).text, both.text), "one process: gathering is the identity"


# ----------------------------------------------------------------------------- embedding


def sparse_batch() -> Batch:
    """3 windows: 0 complete, 1 without audio, 2 without words."""
    batch = random_batch(TINY, 3, 4, text_len=6, generator=torch.Generator().manual_seed(0))
    batch.text_mask[:, :, :, 0] = True  # every sub-segment has a word ...
    batch.text[:, :, :, 0] = 7
    batch.text_mask[2] = False  # ... except in window 2
    batch.text[2] = TINY.pad_id
    batch.audio_present[1] = False
    batch.audio[1] = 0.0
    batch.check(TINY)
    return batch


@pytest.mark.parametrize(
    ("objective", "spaces"),
    [
        ("span", {"text", "audio"}),
        ("combinatorial", {"text", "audio", "text-audio", "text-fused"}),
        ("milnce", {"text"}),  # frame and caption heads: no audio
        ("mvm", set()),  # nothing aligns modalities: no retrieval
        ("fac", {"text", "audio", "text-audio"}),  # coarse text-video, text-audio; fine audio
    ],
)
def test_each_objective_supplies_the_spaces_its_heads_align(objective, spaces):
    model = Reserve(TINY, ObjectiveConfig.only(objective)).eval()
    emb = embed_batch(model, sparse_batch())
    E = TINY.embed_dim
    assert all(t.shape == (3, E) for t in (emb.text, emb.video_t, emb.audio, emb.video_a))
    assert all(torch.isfinite(t).all() for t in emb.tensors())
    words = [True, True, False] if "text" in spaces else [False] * 3
    sound = [True, False, True] if "audio" in spaces else [False] * 3
    assert emb.text_present.tolist() == words and emb.audio_present.tolist() == sound
    both = [True, False, False] if "text-audio" in spaces else [False] * 3  # words and audio
    assert emb.text_audio_present.tolist() == both
    assert emb.fused_present.tolist() == (
        [True, False, False] if "text-fused" in spaces else [False] * 3
    )
    expected = {
        "text": {"text->video", "video->text"},
        "audio": {"audio->video", "video->audio"},
        "text-audio": {"text->audio", "audio->text"},
        "text-fused": {"text->fused"},
    }
    assert set(retrieval_report(emb)) == set().union(*(expected[s] for s in spaces))


def _changed_by_heads(objectives, heads_to_try):
    """Which window embeddings change when one head of the span objective is scrambled."""
    model = Reserve(TINY, objectives).eval()
    batch = sparse_batch()
    before = embed_batch(model, batch)
    heads = model.objectives["span"]
    changed = {}
    for term, side in heads_to_try:
        head = getattr(heads, side)[term]
        saved = head.weight.detach().clone()
        with torch.no_grad():
            head.weight.normal_()
        after = embed_batch(model, batch)
        with torch.no_grad():
            head.weight.copy_(saved)
        changed[(term, side)] = {
            name
            for name in ("text", "video_t", "audio", "video_a")
            if not torch.allclose(getattr(before, name), getattr(after, name))
        }
    return changed


def test_span_embeddings_come_from_the_heads_the_span_loss_trains():
    """Zeroing a head the span terms train changes exactly the embeddings built from it
    (the masked-frames recipe: frame heads for text-video, audio heads for audio-video)."""
    objectives = ObjectiveConfig.only("span")
    objectives.span = SpanLossConfig.legacy()
    changed = _changed_by_heads(
        objectives, [("frame", "query"), ("frame", "target"), ("audio", "query")]
    )
    assert changed[("frame", "query")] == {"text"}
    assert changed[("frame", "target")] == {"video_t"}
    assert changed[("audio", "query")] == {"video_a"}


def test_reserve_span_embeddings_come_from_the_vision_free_frame_term():
    """Reserve's recipe: the frame term's pass over words (or audio) without frames gives
    the text (or audio) side through the frame query head; the frame target head gives
    the video side of both spaces; the audio heads are not used."""
    changed = _changed_by_heads(
        ObjectiveConfig.only("span"),
        [("frame", "query"), ("frame", "target"), ("audio", "query"), ("audio", "target")],
    )
    assert changed[("frame", "query")] == {"text", "audio"}
    assert changed[("frame", "target")] == {"video_t", "video_a"}
    assert changed[("audio", "query")] == changed[("audio", "target")] == set()


class Sealed(nn.Module):
    """An objective seen only through its public ``embed``: its heads, MASK embeddings and
    loss sit under a name that nothing outside it knows (as after renaming them)."""

    def __init__(self, objective: nn.Module) -> None:
        super().__init__()
        self.renamed_inner_objective = objective
        self.calls = 0

    def embed(self, *args, **kwargs):
        self.calls += 1
        return self.renamed_inner_objective.embed(*args, **kwargs)


@pytest.mark.parametrize(
    "objectives",
    [
        ObjectiveConfig.only("span"),
        ObjectiveConfig.only("combinatorial"),
        ObjectiveConfig.only("milnce"),
        ObjectiveConfig(milnce=MilNceLossConfig(1.0), mvm=MvmLossConfig(1.0)),  # span: default 1
        ObjectiveConfig.only("fac"),
    ],
    ids=["span", "combinatorial", "milnce", "milnce+mvm+span", "fac"],
)
def test_evaluation_reads_objectives_only_through_their_embed(objectives):
    """Renaming an objective's heads cannot break validation: evaluation gets the same
    embeddings when every objective shows nothing but ``embed``."""
    model = Reserve(TINY, objectives).eval()
    batch = sparse_batch()
    before = embed_batch(model, batch)
    sealed = {name: Sealed(objective) for name, objective in model.objectives.items()}
    for name, wrapper in sealed.items():
        model.objectives[name] = wrapper
    after = embed_batch(model, batch)
    assert all(torch.equal(a, b) for a, b in zip(before.tensors(), after.tensors(), strict=True))
    assert before.text_present.any(), "the comparison covers real embeddings"
    assert sum(w.calls for w in sealed.values()) >= 1


# ----------------------------------------------------------------------------- learning


K = ITEMS  # items: each has its own colour, word and sound


def test_retrieval_climbs_far_above_chance_when_the_objective_learns_the_pairing():
    """MIL-NCE (the cheapest objective to train) on windows whose colours, words and sounds
    name the same items: held-out text->video recall@1 goes from chance to >= 5x chance."""
    torch.manual_seed(0)
    model = Reserve(TINY, ObjectiveConfig.only("milnce"))
    held_out = [item_batch(16, torch.Generator().manual_seed(100 + i)) for i in range(2)]
    chance = 1 / 32
    assert evaluate(model, held_out)["text->video"].r1 < 3 * chance
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        model(item_batch(8, g)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    report = evaluate(model, [LoaderBatch(b, keys=[]) for b in held_out])
    assert report["text->video"].r1 >= 5 * chance and report["video->text"].r1 >= 5 * chance
    assert report["text->video"].n == 32
