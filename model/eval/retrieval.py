"""Zero-shot retrieval metrics: recall@K and median rank between two embedding sets.

Row i of the queries matches row i of the targets. The rank of a query's match is
1 + the number of *other* targets scoring at least as high (ties count against the
query: pessimistic, so a collapsed model with all-equal scores gets rank N, not 1).
Scores are cosine similarities (rows are L2-normalized first).

``zero_shot_retrieval`` reports four directions: text->video, video->text, audio->video,
video->audio, each over the rows where both modalities exist (pass the masks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

KS = (1, 5, 10)


@dataclass(frozen=True)
class RetrievalScores:
    """Recall@K in [0, 1], median and mean rank (1-based) over ``n`` queries."""

    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def match_ranks(scores: Tensor, offset: int = 0) -> Tensor:
    """(n, N) scores of queries offset..offset+n-1 against all N targets, query i matching
    target offset + i -> (n,) 1-based pessimistic ranks (int64)."""
    n, N = scores.shape
    assert offset + n <= N, f"rows {offset}..{offset + n} have no match among {N} targets"
    assert bool(torch.isfinite(scores).all()), "scores must be finite"
    cols = torch.arange(offset, offset + n, device=scores.device)[:, None]  # (n, 1)
    own = scores.gather(1, cols)  # (n, 1)
    return (scores >= own).sum(dim=1)  # the match itself counts once: rank >= 1


def ranks_between(queries: Tensor, targets: Tensor, chunk: int = 1024) -> Tensor:
    """(N, D) queries, (N, D) targets -> (N,) ranks of each query's own target, by cosine.

    Works in row chunks so N x N never sits in memory at once.
    """
    assert queries.shape == targets.shape and queries.dim() == 2, (
        f"queries {tuple(queries.shape)} and targets {tuple(targets.shape)} must both be (N, D)"
    )
    q = F.normalize(queries.float(), dim=-1)
    t = F.normalize(targets.float(), dim=-1)
    parts = [match_ranks(q[i : i + chunk] @ t.T, offset=i) for i in range(0, q.shape[0], chunk)]
    return torch.cat(parts)


def summarize(ranks: Tensor, ks: tuple[int, ...] = KS) -> RetrievalScores:
    """Recall@1/5/10, median and mean rank from 1-based ranks (median of an even count:
    the mean of the two middle ranks)."""
    assert ranks.numel() > 0, "no queries to score"
    assert tuple(ks) == KS, f"RetrievalScores holds recall at {KS}"
    r = ranks.double()
    recall = [float((r <= k).double().mean()) for k in ks]
    return RetrievalScores(
        r1=recall[0],
        r5=recall[1],
        r10=recall[2],
        median_rank=float(r.quantile(0.5)),
        mean_rank=float(r.mean()),
        n=int(r.numel()),
    )


def retrieval_scores(
    queries: Tensor, targets: Tensor, mask: Tensor | None = None
) -> RetrievalScores:
    """Scores of one direction over the rows where ``mask`` (N,) bool is True."""
    if mask is not None:
        assert mask.shape == queries.shape[:1] and mask.dtype == torch.bool, (
            "mask must be (N,) bool"
        )
        queries, targets = queries[mask], targets[mask]
    return summarize(ranks_between(queries, targets))


def zero_shot_retrieval(
    text: Tensor,
    video: Tensor,
    audio: Tensor,
    text_present: Tensor | None = None,
    audio_present: Tensor | None = None,
) -> dict[str, RetrievalScores]:
    """Four directions between (N, D) embeddings; rows without the modality are left out.

    ``text_present`` / ``audio_present``: (N,) bool (None: all present). Video is always
    present. A direction with no rows left is absent from the result.
    """
    n = video.shape[0]
    assert text.shape[0] == n and audio.shape[0] == n, "text, video, audio must share N"
    every = torch.ones(n, dtype=torch.bool, device=video.device)
    has_text = every if text_present is None else text_present.bool()
    has_audio = every if audio_present is None else audio_present.bool()
    pairs = {
        "text->video": (text, video, has_text),
        "video->text": (video, text, has_text),
        "audio->video": (audio, video, has_audio),
        "video->audio": (video, audio, has_audio),
    }
    return {
        name: retrieval_scores(q, t, mask)
        for name, (q, t, mask) in pairs.items()
        if bool(mask.any())
    }
