"""Zero-shot retrieval between windows: one embedding per window and modality, then recall.

A window's embeddings come from the heads that the enabled objectives train to align, so
that retrieval measures what pretraining learned (a projection that no loss trains would
score chance). They are read through `Reserve.embed`, which asks each objective's public
`embed` for the spaces it aligns; nothing here knows an objective's heads. Two spaces are
always asked for, each with its video side (FAC: text <-> video in its coarse space, audio <->
video in its fine space), and two more where an objective aligns them: text <-> audio
(combinatorial ``t`` and ``a``; FAC's coarse space) and text <-> fused video + audio
(combinatorial, Everything at Once's ``t -> va``):

- text <-> video, from the first enabled of
  - combinatorial: the fusion transformer's single-modality embeddings ``t`` and ``v``;
  - fac: the caption head, and the fine-to-coarse head on the frame head (coarse space);
  - milnce: the frame head ``video`` and the caption head ``text`` (frame and span encoders);
  - merlot: the matching heads, frame head on the frame encoding and text head on each
    segment's mean text-only joint output;
  - span: the frame term. Every frame is MASKed and the words stay visible (text view); the
    frame query head on each segment's pooled outputs gives the text side, the frame target
    head on the frame encoder's embedding gives the video side;
- audio <-> video, from the first enabled of
  - combinatorial: ``a`` and ``v``;
  - fac: the fine audio and frame heads;
  - span: the audio term. Every sub-segment's words are MASKed (text view: only the frames
    are seen); the audio query head at the MASKs gives the video side, the audio target
    head on the audio encoder's CLS the audio side.

Per window, unit embeddings (segments or sub-segments) are L2-normalized and averaged over
the units that hold the modality. A window without words (or audio) is left out of the
directions that need them, and so is every window when no enabled objective provides the
space (MVM alone: no retrieval).

    emb = embed_batch(model, batch)        # Embeddings of B windows
    scores = evaluate(model, batches)      # {"text->video": RetrievalScores, ...}

`evaluate` also scores still frames against their segment's words (image <-> text,
model/eval/deflation.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from model.data.batch import Batch
from model.data.stream import LoaderBatch
from model.distributed import gather_features
from model.eval.deflation import cat_stills, embed_stills, stills_report
from model.eval.retrieval import RetrievalScores, retrieval_scores
from model.objectives import AUDIO_VIDEO, SPACES, TEXT_AUDIO, TEXT_FUSED, TEXT_VIDEO
from model.objectives.reserve import Reserve

# Metric names: direction -> short name (val/t2v_r1, ...).
SHORT = {
    "text->video": "t2v",
    "video->text": "v2t",
    "audio->video": "a2v",
    "video->audio": "v2a",
    "text->audio": "t2a",
    "audio->text": "a2t",
    "text->fused": "t2va",  # text against video and audio fused (Everything at Once)
    "image->text": "i2t",  # still frames (model/eval/deflation.py)
    "text->image": "t2i",
}


@dataclass
class Embeddings:
    """Window embeddings, row i = window i. Rows of an absent modality are zeros; the
    spaces after the first two may be left out (None: zeros, nothing present)."""

    text: Tensor  # (N, E) text, in the text <-> video space
    video_t: Tensor  # (N, E) video, in the text <-> video space
    audio: Tensor  # (N, E) audio, in the audio <-> video space
    video_a: Tensor  # (N, E) video, in the audio <-> video space
    text_present: Tensor  # (N,) bool: the window has words and a text <-> video space exists
    audio_present: Tensor  # (N,) bool: the window has audio and an audio <-> video space exists
    text_ta: Tensor | None = None  # (N, E) text, in the text <-> audio space
    audio_ta: Tensor | None = None  # (N, E) audio, in the text <-> audio space
    text_audio_present: Tensor | None = None  # (N,) bool: words, audio and the space exist
    text_f: Tensor | None = None  # (N, E) text, in the text <-> fused space
    fused: Tensor | None = None  # (N, E) video and audio fused, in the text <-> fused space
    fused_present: Tensor | None = None  # (N,) bool: words, audio and the space exist

    def __post_init__(self) -> None:
        for name in ("text_ta", "audio_ta", "text_f", "fused"):
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros_like(self.text))
        for name in ("text_audio_present", "fused_present"):
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros_like(self.text_present))

    @property
    def n(self) -> int:
        return self.text.shape[0]

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def empty(cls, dim: int, device: torch.device | str = "cpu") -> Embeddings:
        """No windows (a rank whose validation shards held none)."""
        z = torch.zeros(0, dim, device=device)
        b = torch.zeros(0, dtype=torch.bool, device=device)
        return cls(z, z, z, z, b, b)


def cat(parts: list[Embeddings]) -> Embeddings:
    """Concatenate the windows of several batches."""
    assert parts, "nothing to concatenate"
    return Embeddings(*(torch.cat(ts) for ts in zip(*(p.tensors() for p in parts), strict=True)))


def gather(emb: Embeddings) -> Embeddings:
    """Every rank's windows, in rank order (ranks may hold different numbers); a collective."""
    return Embeddings(*(t.detach() for t in gather_features(*emb.tensors())))


# ----------------------------------------------------------------------------- embedding


@torch.no_grad()
def embed_batch(model: Reserve, batch: Batch) -> Embeddings:
    """One embedding per window and space (see the module docstring); no gradient."""
    B, E = batch.batch_size, model.config.embed_dim
    zeros = torch.zeros(B, E, device=batch.frames.device)
    none = torch.zeros(B, dtype=torch.bool, device=batch.frames.device)
    spaces = model.embed(batch, SPACES)
    words = batch.text_present.flatten(1).any(1)  # (B,) the window has words
    sound = batch.audio_valid.flatten(1).any(1)  # (B,) the window has audio

    def sides(space: str, left: str, right: str, present: Tensor) -> tuple[Tensor, ...]:
        if space not in spaces:
            return zeros, zeros, none
        return spaces[space][left], spaces[space][right], present

    text, video_t, has_text = sides(TEXT_VIDEO, "text", "video", words)
    audio, video_a, has_audio = sides(AUDIO_VIDEO, "audio", "video", sound)
    text_ta, audio_ta, has_ta = sides(TEXT_AUDIO, "text", "audio", words & sound)
    text_f, fused, has_f = sides(TEXT_FUSED, "text", "fused", words & sound)
    return Embeddings(
        text, video_t, audio, video_a, has_text, has_audio,
        text_ta, audio_ta, has_ta, text_f, fused, has_f,
    )  # fmt: skip


# ----------------------------------------------------------------------------- scores


def retrieval_report(emb: Embeddings) -> dict[str, RetrievalScores]:
    """Every direction over the windows that have both of its sides; empty ones are absent."""
    pairs = {
        "text->video": (emb.text, emb.video_t, emb.text_present),
        "video->text": (emb.video_t, emb.text, emb.text_present),
        "audio->video": (emb.audio, emb.video_a, emb.audio_present),
        "video->audio": (emb.video_a, emb.audio, emb.audio_present),
        "text->audio": (emb.text_ta, emb.audio_ta, emb.text_audio_present),
        "audio->text": (emb.audio_ta, emb.text_ta, emb.text_audio_present),
        "text->fused": (emb.text_f, emb.fused, emb.fused_present),
    }
    return {
        name: retrieval_scores(q, t, mask) for name, (q, t, mask) in pairs.items() if mask.any()
    }


def retrieval_metrics(report: dict[str, RetrievalScores], prefix: str = "") -> dict[str, float]:
    """Flat metric names: {prefix}t2v_r1, _r5, _r10, _medr for each direction present."""
    out = {}
    for direction, s in report.items():
        name = f"{prefix}{SHORT[direction]}"
        out |= {f"{name}_r1": s.r1, f"{name}_r5": s.r5, f"{name}_r10": s.r10}
        out[f"{name}_medr"] = s.median_rank
    return out


def evaluate(
    model: Reserve,
    batches: Iterable[Batch | LoaderBatch],
    device: torch.device | str = "cpu",
    stills: bool = True,
) -> dict[str, RetrievalScores]:
    """Zero-shot retrieval over every window of ``batches`` (e.g. a validation loader), in
    one process, outside Lightning. The model is put in eval mode. With ``stills``, also
    image <-> text over every real segment's still frame (model/eval/deflation.py)."""
    model.eval().to(device)
    parts, frames = [], []
    for b in batches:
        batch = (b.batch if isinstance(b, LoaderBatch) else b).to(device)
        parts.append(embed_batch(model, batch))
        if stills:
            frames.append(embed_stills(model, batch))
    assert parts, "no batches to evaluate"
    report = retrieval_report(cat(parts))
    return report | (stills_report(cat_stills(frames)) if stills else {})
