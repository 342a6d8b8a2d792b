"""Zero-shot retrieval between windows: one embedding per window and modality, then recall.

A window's embeddings come from the heads that the enabled objectives train to align, so
that retrieval measures what pretraining learned (a projection that no loss trains would
score chance). Two spaces are needed, each with its video side:

- text <-> video, from the first enabled of
  - combinatorial: the fusion transformer's single-modality embeddings ``t`` and ``v``;
  - milnce: the frame head ``video`` and the caption head ``text`` (frame and span encoders);
  - span: the frame term. Every frame is MASKed and the words stay visible (text view); the
    frame query head on each segment's pooled outputs gives the text side, the frame target
    head on the frame encoder's embedding gives the video side;
- audio <-> video, from the first enabled of
  - combinatorial: ``a`` and ``v``;
  - span: the audio term. Every sub-segment's words are MASKed (text view: only the frames
    are seen); the audio query head at the MASKs gives the video side, the audio target
    head on the audio encoder's CLS the audio side.

Per window, unit embeddings (segments or sub-segments) are L2-normalized and averaged over
the units that hold the modality. A window without words (or audio) is left out of the
directions that need them, and so is every window when no enabled objective provides the
space (MVM alone: no retrieval).

    emb = embed_batch(model, batch)        # Embeddings of B windows
    scores = evaluate(model, batches)      # {"text->video": RetrievalScores, ...}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from model.backbone import Frames
from model.batch import Batch
from model.collate import LoaderBatch
from model.config import SUBSEGMENTS
from model.distributed import gather_features
from model.layers import masked_mean
from model.objectives import CombinatorialObjective, Encoded
from model.reserve import Reserve
from model.retrieval import RetrievalScores, retrieval_scores

# Which objective supplies each space, in order of preference.
TEXT_VIDEO = ("combinatorial", "milnce", "span")
AUDIO_VIDEO = ("combinatorial", "span")

# Metric names: direction -> short name (val/t2v_r1, ...).
SHORT = {"text->video": "t2v", "video->text": "v2t", "audio->video": "a2v", "video->audio": "v2a"}


@dataclass
class Embeddings:
    """Window embeddings, row i = window i. Rows of an absent modality are zeros."""

    text: Tensor  # (N, E) text, in the text <-> video space
    video_t: Tensor  # (N, E) video, in the text <-> video space
    audio: Tensor  # (N, E) audio, in the audio <-> video space
    video_a: Tensor  # (N, E) video, in the audio <-> video space
    text_present: Tensor  # (N,) bool: the window has words and a text <-> video space exists
    audio_present: Tensor  # (N,) bool: the window has audio and an audio <-> video space exists

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


def _pool(units: Tensor, mask: Tensor) -> Tensor:
    """Unit embeddings (B, ..., E) and mask (B, ...) -> mean of the normalized units (B, E)."""
    x = F.normalize(units.float(), dim=-1).flatten(1, -2)  # (B, U, E)
    return masked_mean(x, mask.flatten(1), dim=1)


def _source(model: Reserve, order: tuple[str, ...], modalities: str) -> str | None:
    """The first enabled objective of ``order`` that aligns ``modalities`` ("tv", "av")."""
    for name in order:
        if name not in model.objectives:
            continue
        objective = model.objectives[name]
        # the combinatorial objective has heads only for the modalities its pairs use
        combinatorial = isinstance(objective, CombinatorialObjective)
        if not combinatorial or set(modalities) <= set(objective.proj):
            return name
    return None


def _fusion(
    model: Reserve, enc: Encoded, batch: Batch, modality: str, done: dict[str, Tensor]
) -> Tensor:
    """Combinatorial: one modality alone through the fusion transformer, per segment, then
    its head; the window embedding (B, E) over the segments that hold the modality. Kept in
    ``done``: video serves both spaces."""
    if modality in done:
        return done[modality]
    bb, seg = model.backbone, batch.segment_mask
    if modality == "v":
        part, present = bb.frame_part(enc.frames, seg), seg
    elif modality == "t":
        part = bb.text_part(batch.text, batch.text_mask, seg)
        present = batch.text_present.any(-1)
    else:
        part = bb.audio_part(enc.audio, seg, batch.audio_present)
        present = batch.audio_valid[:, :, 0]
    (out,) = bb.fuse([part], per_segment=True)  # (B, S, T, D)
    units = model.objectives["combinatorial"].proj[modality](masked_mean(out, part[1], dim=2))
    done[modality] = _pool(units, present)
    return done[modality]


def _text_video(
    model: Reserve, source: str, enc: Encoded, batch: Batch, fused: dict[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """(text (B, E), video (B, E), windows with words (B,)) in the text <-> video space."""
    seg, words = batch.segment_mask, batch.text_present.any(-1)  # (B, S)
    if source == "combinatorial":
        text, video = (_fusion(model, enc, batch, m, fused) for m in "tv")
    elif source == "milnce":
        head = model.objectives["milnce"]
        text = _pool(head.text(enc.spans), batch.text_present)
        video = _pool(head.video(enc.frames.embedding), seg)
    else:  # span: the frame term, with every frame MASKed so only the words speak
        span, frames = model.objectives["span"], enc.frames
        hidden = span.frame_mask.to(frames.tokens.dtype).expand_as(frames.tokens)
        tv = model.backbone.text_view(
            Frames(hidden, frames.embedding), batch.text, batch.text_mask, seg
        )
        text = _pool(span.query["frame"](tv.frames.mean(2)), words)  # (B, S, E) -> (B, E)
        video = _pool(span.target["frame"](frames.embedding), seg)
    return text, video, words.any(1)


def _audio_video(
    model: Reserve, source: str, enc: Encoded, batch: Batch, fused: dict[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """(audio (B, E), video (B, E), windows with audio (B,)) in the audio <-> video space."""
    valid = batch.audio_valid  # (B, S, 3)
    if source == "combinatorial":
        audio, video = (_fusion(model, enc, batch, m, fused) for m in "av")
    else:  # span: the audio term, with every sub-segment's words MASKed so only frames speak
        span, seg = model.objectives["span"], batch.segment_mask
        every = seg[:, :, None].expand(-1, -1, SUBSEGMENTS)  # (B, S, 3)
        tv = model.backbone.text_view(enc.frames, batch.text, batch.text_mask, seg, every)
        video = _pool(span.query["audio"](tv.subsegments[:, :, :, 0]), valid)  # (B, E)
        audio = _pool(span.target["audio"](enc.audio.cls), valid)
    return audio, video, valid.flatten(1).any(1)


@torch.no_grad()
def embed_batch(model: Reserve, batch: Batch) -> Embeddings:
    """One embedding per window and space (see the module docstring); no gradient."""
    B, E = batch.batch_size, model.config.embed_dim
    zeros = torch.zeros(B, E, device=batch.frames.device)
    none = torch.zeros(B, dtype=torch.bool, device=batch.frames.device)
    enc = Encoded(model.backbone, batch)
    fused: dict[str, Tensor] = {}  # combinatorial: per-modality window embeddings
    text = video_t = audio = video_a = zeros
    has_text = has_audio = none
    if (source := _source(model, TEXT_VIDEO, "tv")) is not None:
        text, video_t, has_text = _text_video(model, source, enc, batch, fused)
    if (source := _source(model, AUDIO_VIDEO, "av")) is not None:
        audio, video_a, has_audio = _audio_video(model, source, enc, batch, fused)
    return Embeddings(text, video_t, audio, video_a, has_text, has_audio)


# ----------------------------------------------------------------------------- scores


def retrieval_report(emb: Embeddings) -> dict[str, RetrievalScores]:
    """Four directions over the windows that have both modalities; empty ones are absent."""
    pairs = {
        "text->video": (emb.text, emb.video_t, emb.text_present),
        "video->text": (emb.video_t, emb.text, emb.text_present),
        "audio->video": (emb.audio, emb.video_a, emb.audio_present),
        "video->audio": (emb.video_a, emb.audio, emb.audio_present),
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
    model: Reserve, batches: Iterable[Batch | LoaderBatch], device: torch.device | str = "cpu"
) -> dict[str, RetrievalScores]:
    """Zero-shot retrieval over every window of ``batches`` (e.g. a validation loader), in
    one process, outside Lightning. The model is put in eval mode."""
    model.eval().to(device)
    parts = []
    for b in batches:
        batch = b.batch if isinstance(b, LoaderBatch) else b
        parts.append(embed_batch(model, batch.to(device)))
    assert parts, "no batches to evaluate"
    return retrieval_report(cat(parts))
