"""The per-video core: one video file + its captions -> aligned training windows.

    probe -> captions -> filters -> segments -> frames -> audio + log-mel -> samples

Each step that can fail raises :class:`VideoFailure` naming its stage and a
machine-readable reason; the pipeline records it as a manifest row and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest import features, media
from ingest.captions import CaptionError, Captions, Word, parse_captions
from ingest.config import CoreConfig
from ingest.segments import Window, assign_words, filter_reason, make_segments, make_windows
from shards import schema

log = logging.getLogger(__name__)


class VideoFailure(Exception):
    """A video could not be turned into samples. ``status`` is failed or skipped."""

    def __init__(self, stage: str, reason: str, message: str = "", status: str = "failed") -> None:
        super().__init__(f"{stage}/{reason}: {message}" if message else f"{stage}/{reason}")
        self.stage, self.reason, self.message, self.status = stage, reason, message, status


@dataclass(slots=True)
class VideoSource:
    """What the core needs to know about a video besides its files."""

    video_id: str
    url: str = ""
    title: str = ""
    caption_kind: str | None = None  # what the downloader chose; the parser's finding wins


@dataclass(slots=True)
class CoreResult:
    samples: list[schema.Sample]
    duration_ms: int
    segments: int
    words: int
    has_audio: bool
    caption_kind: str


def extraction_params(cfg: CoreConfig) -> schema.ExtractionParams:
    a, s, f = cfg.audio, cfg.segments, cfg.frames
    return schema.ExtractionParams(
        segment_ms=s.segment_ms,
        subsegments=schema.SUBSEGMENTS,
        sample_rate=a.sample_rate,
        n_fft=a.n_fft,
        hop_length=a.hop_length,
        n_mels=a.n_mels,
        fmin=a.fmin,
        fmax=a.fmax,
        log_offset=a.log_offset,
        mel_frames=a.frames_per_segment(s.segment_ms),
        frame_short_side=f.short_side,
        frame_max_long_side=f.max_long_side,
    )


def load_captions(path: Path | None, require: bool) -> Captions | None:
    if path is None:
        if require:
            raise VideoFailure("captions", "no_captions", "no caption file", status="skipped")
        return None
    try:
        return parse_captions(path)
    except CaptionError as exc:
        raise VideoFailure("captions", "malformed_captions", str(exc)) from None
    except OSError as exc:
        raise VideoFailure("captions", "unreadable_captions", f"{path}: {exc}") from None


def process_video(
    video_path: Path, captions_path: Path | None, cfg: CoreConfig, source: VideoSource
) -> CoreResult:
    """Turn one downloaded video into its samples (all windows, in order)."""
    try:
        info = media.probe(video_path)
    except media.MediaError as exc:
        raise VideoFailure("probe", "corrupt_media", str(exc)) from None
    if not info.has_video:
        raise VideoFailure("probe", "no_video_stream", f"{video_path.name} has no video stream")

    captions = load_captions(captions_path, cfg.filters.require_captions)
    words = list(captions.words) if captions else []
    reason = filter_reason(info.duration_ms, words, cfg.filters)
    if reason is not None:
        raise VideoFailure(
            "filter", reason, f"duration {info.duration_ms} ms, {len(words)} words", "skipped"
        )

    segments = make_segments(info.duration_ms, cfg.segments)
    if not segments:
        raise VideoFailure(
            "filter", "too_short", f"shorter than one segment ({info.duration_ms} ms)", "skipped"
        )
    aligned = assign_words(words, segments, cfg.segments)
    windows = make_windows(segments, aligned, cfg.segments)
    if not windows:
        raise VideoFailure(
            "filter",
            "too_short",
            f"{len(segments)} segments, fewer than min_segments={cfg.segments.min_segments}",
            "skipped",
        )

    try:
        jpegs = media.extract_frames(video_path, [s.mid_ms for s in segments], cfg.frames, info)
    except media.MediaError as exc:
        raise VideoFailure("media", "corrupt_media", str(exc)) from None
    assert len(jpegs) == len(segments), f"{len(jpegs)} frames for {len(segments)} segments"

    mel_q = mel_scale = None
    if info.has_audio:
        try:
            audio = media.decode_audio(video_path, cfg.audio.sample_rate, info)
        except media.MediaError as exc:
            raise VideoFailure("audio", "corrupt_media", str(exc)) from None
        mel = features.log_mel_segments(audio, len(segments), cfg.segments.segment_ms, cfg.audio)
        del audio
        mel_q, mel_scale = schema.quantize_mel(mel, cfg.audio.quantile)

    kind = captions.kind if captions else (source.caption_kind or "none")
    params = extraction_params(cfg)
    non_speech = captions.non_speech if captions else ()
    samples = [
        build_sample(w, jpegs, mel_q, mel_scale, source, kind, params, non_speech) for w in windows
    ]
    log.debug("%s: %d windows, %d words", source.video_id, len(samples), len(aligned))
    return CoreResult(
        samples=samples,
        duration_ms=info.duration_ms,
        segments=len(segments),
        words=len(aligned),
        has_audio=info.has_audio,
        caption_kind=kind,
    )


def build_sample(
    window: Window,
    jpegs: list[bytes],
    mel_q: np.ndarray | None,
    mel_scale: np.ndarray | None,
    source: VideoSource,
    caption_kind: str,
    params: schema.ExtractionParams,
    non_speech: Sequence[Word],
) -> schema.Sample:
    first = window.segments[0].index
    idx = slice(first, first + len(window.segments))
    start, end = window.segments[0].start_ms, window.segments[-1].end_ms
    words = [
        schema.WordRecord(w.text, w.start_ms, w.end_ms, w.segment - first, w.subsegment)
        for w in window.words
    ]
    tags = sorted({w.text for w in non_speech if start <= w.start_ms < end})
    mel = mel_q[idx] if mel_q is not None else None
    meta = schema.SampleMeta(
        video_id=source.video_id,
        url=source.url,
        title=source.title,
        window=window.index,
        start_ms=start,
        end_ms=end,
        segments=[(s.start_ms, s.end_ms) for s in window.segments],
        words=words,
        caption_kind=caption_kind,
        has_audio=mel is not None,
        params=params,
        mel_shape=tuple(mel.shape) if mel is not None else None,
        mel_scale=[float(x) for x in mel_scale[idx]] if mel_scale is not None else None,
        non_speech=tags,
    )
    return schema.Sample(
        meta=meta, frames=jpegs[idx], mel=np.ascontiguousarray(mel) if mel is not None else None
    )
