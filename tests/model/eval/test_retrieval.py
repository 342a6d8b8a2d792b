"""Zero-shot retrieval metrics against hand-made scores whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from model.eval.retrieval import match_ranks, ranks_between, summarize, zero_shot_retrieval

# Query i's match is target i. Row 0: best. Row 1: one target above. Row 2: ties with
# two others (pessimistic: rank 3). Row 3: worst of 4.
SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.2, 0.3],
        [0.8, 0.5, 0.1, 0.0],
        [0.4, 0.4, 0.4, 0.1],
        [0.5, 0.6, 0.7, 0.2],
    ]
)


def test_ranks_are_one_based_and_ties_count_against_the_query():
    assert match_ranks(SCORES).tolist() == [1, 2, 3, 4]
    flat = torch.zeros(5, 5)
    assert match_ranks(flat).tolist() == [5] * 5, "all-equal scores are the worst case"


def test_recall_and_median_rank_from_known_ranks():
    ranks = torch.tensor([1, 2, 3, 4, 6, 7, 8, 11, 12, 20])
    s = summarize(ranks)
    assert (s.r1, s.r5, s.r10) == (0.1, 0.4, 0.7)
    assert s.median_rank == 6.5 and s.n == 10
    assert math.isclose(s.mean_rank, 7.4)


def test_embeddings_rank_by_cosine_in_chunks():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-1.0, -1.0]])  # lengths must not matter
    # q0, q1 point at their targets; q2 points away from its own and towards both others
    assert ranks_between(q, t, chunk=2).tolist() == [1, 1, 3]


def test_four_directions_skip_rows_without_the_modality():
    torch.manual_seed(0)
    n, d = 12, 16
    video = torch.randn(n, d)
    text = video + 0.01 * torch.randn(n, d)  # text matches perfectly
    audio = torch.randn(n, d)  # audio is noise ...
    audio[:4] = video[:4]  # ... except the 4 rows that have audio
    has_audio = torch.zeros(n, dtype=torch.bool)
    has_audio[:4] = True
    out = zero_shot_retrieval(text, video, audio, audio_present=has_audio)
    assert set(out) == {"text->video", "video->text", "audio->video", "video->audio"}
    assert out["text->video"].r1 == out["video->text"].r1 == 1.0 and out["text->video"].n == n
    assert out["audio->video"].n == 4 and out["audio->video"].r1 == 1.0
    assert out["video->audio"].median_rank == 1.0
    noisy = zero_shot_retrieval(text, video, audio)  # counting the noise rows drags audio down
    assert noisy["audio->video"].r1 < 1.0


def test_a_direction_without_rows_is_left_out_and_bad_shapes_fail():
    x = torch.randn(3, 4)
    out = zero_shot_retrieval(x, x, x, audio_present=torch.zeros(3, dtype=torch.bool))
    assert set(out) == {"text->video", "video->text"}
    with pytest.raises(AssertionError, match="must both be"):
        ranks_between(torch.randn(3, 4), torch.randn(2, 4))
