"""Exact top-k over blocks equals a full sort; approximate recall is measured, not assumed."""

from __future__ import annotations

import numpy as np
import pytest

from model.inference import search
from model.inference.search import ApproximateIndex, exact_top_k, recall_at_k


def full_sort(q: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def test_exact_top_k_across_blocks_equals_a_full_sort(monkeypatch):
    monkeypatch.setattr(search, "BLOCK_ROWS", 37)  # many blocks, a ragged last one
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((500, 16)), rng.standard_normal((7, 16))
    hits = exact_top_k(q, x, 10)
    assert (hits.ids == full_sort(q, x, 10)).all()
    assert (np.diff(hits.scores, axis=1) <= 0).all()


def test_rows_left_out_are_never_returned_and_a_short_index_pads_with_minus_one():
    rng = np.random.default_rng(1)
    x, q = rng.standard_normal((6, 8)), rng.standard_normal((2, 8))
    valid = np.array([True, False, True, False, True, False])
    hits = exact_top_k(q, x, 5, valid)
    assert set(hits.ids[:, :3].ravel()) <= {0, 2, 4} and (hits.ids[:, 3:] == -1).all()


def test_recall_at_k_counts_the_exact_hits_found():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, -1]])
    found = np.array([[4, 9, 1, 8], [7, 5, 6, 0]])
    assert recall_at_k(found, truth) == pytest.approx((2 + 3) / 7)


def test_approximate_search_on_clustered_vectors_finds_most_exact_hits():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    x = centres[rng.integers(0, 50, 20_000)] + 0.5 * rng.standard_normal((20_000, 32)).astype(
        np.float32
    )
    q = x[:40] + 0.1 * rng.standard_normal((40, 32)).astype(np.float32)
    exact = exact_top_k(q, x, 10)
    ann = ApproximateIndex.build(x, nprobe=16)
    assert ann.index.nlist > 1, "large enough to be clustered"
    r = recall_at_k(ann.search(q, 10).ids, exact.ids)
    assert 0.8 <= r <= 1.0, f"recall@10 {r:.3f}"
    everything = ApproximateIndex.build(x, nprobe=ann.index.nlist)  # every cell visited: exact
    assert recall_at_k(everything.search(q, 10).ids, exact.ids) == pytest.approx(1.0)
