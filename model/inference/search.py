"""Nearest rows of an index to query vectors: exact by matrix product, or approximate.

Scores are cosine similarities. Exact search multiplies the (Q, E) queries by the
(N, E) index in blocks of rows, keeping the best k of each block, so memory holds one
block of scores at a time. Approximate search is faiss's inverted file (IVF, flat
vectors, inner product on unit vectors): the index is cut into ``nlist`` cells by
k-means and a query visits the ``nprobe`` nearest cells. What it misses is measured by
:func:`recall_at_k` against exact search (bench/bench_search.py), never assumed.

    top = exact_top_k(queries, matrix, k=10)         # Hits: (Q, k) scores and row ids
    approx = ApproximateIndex.build(matrix).search(queries, k=10)
    recall_at_k(approx.ids, top.ids)                   # share of exact hits found
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.inference.index import normalized

BLOCK_ROWS = 65536  # index rows per block of exact search
SMALL = 4000  # fewer rows than this are not clustered


@dataclass
class Hits:
    scores: np.ndarray  # (Q, k) float32, best first
    ids: np.ndarray  # (Q, k) int64 row numbers; -1 where the index has fewer than k rows


class ExactIndex:
    """Unit vectors of the index, normalized once; search is a blocked matrix product."""

    def __init__(self, matrix: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.matrix = normalized(matrix)  # (N, E)
        self.valid = valid  # (N,) bool or None

    def search(self, queries: np.ndarray, k: int) -> Hits:
        q = normalized(queries)
        Q, N = q.shape[0], self.matrix.shape[0]
        best_s = np.full((Q, 0), -np.inf, np.float32)
        best_i = np.zeros((Q, 0), np.int64)
        for start in range(0, N, BLOCK_ROWS):
            s = q @ self.matrix[start : start + BLOCK_ROWS].T  # (Q, b)
            if self.valid is not None:
                s[:, ~self.valid[start : start + BLOCK_ROWS]] = -np.inf
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
            best_s = np.take_along_axis(best_s, keep, 1)
            best_i = np.take_along_axis(best_i, keep, 1)
        best_i = np.where(np.isfinite(best_s), best_i, -1)
        return Hits(best_s.astype(np.float32), best_i)


def exact_top_k(
    queries: np.ndarray, matrix: np.ndarray, k: int, valid: np.ndarray | None = None
) -> Hits:
    """The k rows of ``matrix`` (N, E) with the highest cosine to each query (Q, E);
    ``valid`` (N,) bool leaves rows out."""
    return ExactIndex(matrix, valid).search(queries, k)


class ApproximateIndex:
    """faiss IVF-flat over unit vectors (inner product = cosine)."""

    def __init__(self, index, nprobe: int) -> None:
        self.index = index
        if nprobe:
            self.index.nprobe = nprobe

    @classmethod
    def build(
        cls, matrix: np.ndarray, nlist: int | None = None, nprobe: int = 16, seed: int = 0
    ) -> ApproximateIndex:
        import faiss  # an optional dependency, imported when approximate search is asked for

        x = np.ascontiguousarray(normalized(matrix))
        N, E = x.shape
        if N < SMALL:  # too few rows to cluster: a flat index, exact
            flat = faiss.IndexFlatIP(E)
            flat.add(x)
            return cls(flat, nprobe=0)
        nlist = nlist or max(1, min(4096, int(math.sqrt(N)), N // 40))
        quantizer = faiss.IndexFlatIP(E)
        index = faiss.IndexIVFFlat(quantizer, E, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(N, size=min(N, 64 * nlist), replace=False)]
        index.cp.seed = seed
        index.train(sample)
        index.add(x)
        return cls(index, nprobe)

    def search(self, queries: np.ndarray, k: int) -> Hits:
        scores, ids = self.index.search(np.ascontiguousarray(normalized(queries)), k)
        return Hits(scores.astype(np.float32), ids.astype(np.int64))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_q & truth_q| / |truth_q| (ids of -1 ignored)."""
    total = hit = 0
    for f, t in zip(found, truth, strict=True):
        t = set(t[t >= 0].tolist())
        total += len(t)
        hit += len(t & set(f[f >= 0].tolist()))
    return hit / max(total, 1)
