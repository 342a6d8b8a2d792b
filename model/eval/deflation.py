"""Deflation (MMV): still images through the video pathway, retrieved against text.

Each real segment of a batch becomes its own one-segment window holding only its frame:
no audio, no words. Its video embedding in the text <-> video space is the still
image's embedding. The text it should retrieve is its own segment's transcript, embedded
as a one-segment window holding those words. Image -> text and text -> image recall over
the stills whose segment has words then measure how well a model trained on video
transfers to images, rather than assuming it.

    stills = embed_stills(model, batch)    # Stills: one row per real segment
    stills_report(stills)                  # {"image->text": ..., "text->image": ...}
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from model.data.batch import Batch
from model.distributed import gather_features
from model.eval.retrieval import RetrievalScores, retrieval_scores
from model.objectives import TEXT_VIDEO
from model.objectives.reserve import Reserve


def still_windows(batch: Batch, words: bool = False) -> Batch:
    """Each real segment of ``batch`` as a one-segment window, in (window, segment) order:
    its frame, no audio, and no words (``words=True``: its own segment's words)."""
    keep = batch.segment_mask  # (B, S)
    frames = batch.frames[keep][:, None]  # (M, 1, 3, H, W)
    M = frames.shape[0]
    text, text_mask = batch.text[keep][:, None], batch.text_mask[keep][:, None]  # (M, 1, 3, L)
    if not words:
        text, text_mask = torch.zeros_like(text), torch.zeros_like(text_mask)
    return Batch(
        frames=frames,
        audio=torch.zeros_like(batch.audio[keep][:, None]),  # (M, 1, 3, T, F)
        text=text,
        text_mask=text_mask,
        segment_mask=torch.ones(M, 1, dtype=torch.bool, device=frames.device),
        audio_present=torch.zeros(M, dtype=torch.bool, device=frames.device),
    )


@dataclass
class Stills:
    """Still-image rows, row i = one real segment. Rows without words are left out of scores."""

    image: Tensor  # (M, E) the still frame through the video pathway (text <-> video space)
    text: Tensor  # (M, E) its segment's words (text <-> video space)
    present: Tensor  # (M,) bool: the segment has words and a text <-> video space exists

    @property
    def n(self) -> int:
        return self.image.shape[0]

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def empty(cls, dim: int, device: torch.device | str = "cpu") -> Stills:
        z = torch.zeros(0, dim, device=device)
        return cls(z, z, torch.zeros(0, dtype=torch.bool, device=device))


def cat_stills(parts: list[Stills]) -> Stills:
    assert parts, "nothing to concatenate"
    return Stills(*(torch.cat(ts) for ts in zip(*(p.tensors() for p in parts), strict=True)))


def gather_stills(stills: Stills) -> Stills:
    """Every rank's stills, in rank order; a collective."""
    return Stills(*(t.detach() for t in gather_features(*stills.tensors())))


@torch.no_grad()
def embed_stills(model: Reserve, batch: Batch) -> Stills:
    """Each real segment's still frame and its segment's words, in the text <-> video space;
    all rows absent when no enabled objective aligns text with video."""
    images, captions = still_windows(batch), still_windows(batch, words=True)
    M, E = images.batch_size, model.config.embed_dim
    image = model.embed(images, [TEXT_VIDEO]).get(TEXT_VIDEO)
    text = model.embed(captions, [TEXT_VIDEO]).get(TEXT_VIDEO)
    if image is None or text is None:
        z = torch.zeros(M, E, device=images.frames.device)
        return Stills(z, z.clone(), torch.zeros(M, dtype=torch.bool, device=z.device))
    present = captions.text_present.flatten(1).any(1)  # (M,)
    return Stills(image["video"], text["text"], present)


def stills_report(stills: Stills) -> dict[str, RetrievalScores]:
    """Image -> text and text -> image over the stills with words; absent when there are none."""
    if not bool(stills.present.any()):
        return {}
    return {
        "image->text": retrieval_scores(stills.image, stills.text, stills.present),
        "text->image": retrieval_scores(stills.text, stills.image, stills.present),
    }
