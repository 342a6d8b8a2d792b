"""Retrieval on held-out windows from a checkpoint: the numbers the field reports.

Each window is one query and one target (a benchmark clip is one window whose words are
its sentence): text->video and video->text recall@1/5/10 and median rank, and the audio
directions (text->audio, text->fused video + audio) where the windows have audio, computed exactly as validation computes them
(model/eval/evaluation.py) from the vectors the encoder gives.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from model.data.batch import Batch
from model.eval.evaluation import Embeddings, retrieval_report
from model.eval.retrieval import RetrievalScores
from model.inference.encoder import Encoder, WindowVectors

TV, AV, TA, TF = "text-video", "audio-video", "text-audio", "text-fused"


def as_embeddings(vecs: WindowVectors, dim: int) -> Embeddings:
    """The encoder's window vectors in evaluation's form (absent spaces: zero rows)."""
    B = next(iter(vecs.windows.values())).shape[0]
    zeros, none = torch.zeros(B, dim), torch.zeros(B, dtype=torch.bool)

    def get(name: str) -> torch.Tensor:
        return vecs.windows.get(name, zeros)

    def both(space: str, left: str, right: str) -> torch.Tensor:
        if f"{space}/{left}" not in vecs.windows or f"{space}/{right}" not in vecs.windows:
            return none
        return vecs.present[f"{space}/{left}"] & vecs.present[f"{space}/{right}"]

    return Embeddings(
        get(f"{TV}/text"), get(f"{TV}/video"), get(f"{AV}/audio"), get(f"{AV}/video"),
        both(TV, "text", "video"), both(AV, "audio", "video"),
        get(f"{TA}/text"), get(f"{TA}/audio"), both(TA, "text", "audio"),
        get(f"{TF}/text"), get(f"{TF}/fused"), both(TF, "text", "fused"),
    )  # fmt: skip


def evaluate_windows(encoder: Encoder, batches: Iterable[Batch]) -> dict[str, RetrievalScores]:
    """Retrieval over every window of ``batches``, ranked together."""
    parts = [
        as_embeddings(encoder.encode_windows(b, segments=False), encoder.embed_dim) for b in batches
    ]
    if not parts:
        raise ValueError("no windows to evaluate")
    emb = Embeddings(*(torch.cat(ts) for ts in zip(*(p.tensors() for p in parts), strict=True)))
    return retrieval_report(emb)
