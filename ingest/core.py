"""The per-video core: one video file + its captions -> aligned training windows.

    probe -> captions -> filter -> segments -> media (frames) -> audio (+ log-mel) -> samples

Whatever goes wrong in a step leaves :func:`process_video` as a :class:`VideoFailure`
naming the step (its ``stage``) and a machine-readable reason: the expected failures
their own (``corrupt_media``, ``malformed_captions``, ...), any other exception
``internal_error`` with its class and message on one line, and a video still at work
when ``limits.process_deadline_s`` has passed ``timeout``. The deadline is checked
between steps and kills the ffmpeg processes that run past it. The pipeline records
the failure as a manifest row and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest import features, media
from ingest.captions import CaptionError, Captions, Word, parse_captions
from ingest.config import CoreConfig
from ingest.deadline import Deadline, DeadlineExceeded
from ingest.segments import Window, assign_words, filter_reason, make_segments, make_windows
from shards import schema

log = logging.getLogger(__name__)


class VideoFailure(Exception):
    """A video could not be turned into samples. ``status`` is failed or skipped."""

    def __init__(self, stage: str, reason: str, message: str = "", status: str = "failed") -> None:
        super().__init__(f"{stage}/{reason}: {message}" if message else f"{stage}/{reason}")
        self.stage, self.reason, self.message, self.status = stage, reason, message, status


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``Class: message`` of an unexpected exception, on one line."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:limit]


@contextmanager
def step(stage: str, deadline: Deadline, video_id: str) -> Iterator[None]:
    """Run one step of a video: a failure in it, or the deadline passing before or
    during it, becomes a VideoFailure of ``stage``."""
    if deadline.passed():
        raise VideoFailure(stage, "timeout", f"processing {deadline.message()}")
    try:
        yield
    except VideoFailure:
        raise
    except DeadlineExceeded as exc:
        raise VideoFailure(stage, "timeout", str(exc)) from None
    except Exception as exc:
        log.exception("%s: unexpected error at %s", video_id, stage)
        raise VideoFailure(stage, "internal_error", one_line(exc)) from exc
    if deadline.passed():
        raise VideoFailure(stage, "timeout", f"processing {deadline.message()}")


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


def probe_video(video_path: Path, deadline: Deadline) -> media.MediaInfo:
    """The video's media facts; VideoFailure at the probe stage for a file ffprobe cannot
    read or one without a video stream."""
    try:
        info = media.probe(video_path, deadline)
    except media.MediaError as exc:
        raise VideoFailure("probe", "corrupt_media", str(exc)) from None
    if not info.has_video:
        raise VideoFailure("probe", "no_video_stream", f"{video_path.name} has no video stream")
    return info


def process_video(
    video_path: Path, captions_path: Path | None, cfg: CoreConfig, source: VideoSource
) -> CoreResult:
    """Turn one downloaded video into its samples (all windows, in order), within
    ``cfg.limits.process_deadline_s`` of being called."""
    deadline = Deadline.after(cfg.limits.process_deadline_s)
    vid = source.video_id
    with step("probe", deadline, vid):
        info = probe_video(video_path, deadline)

    with step("captions", deadline, vid):
        captions = load_captions(captions_path, cfg.filters.require_captions)
        words = list(captions.words) if captions else []

    with step("filter", deadline, vid):
        reason = filter_reason(info.duration_ms, words, cfg.filters)
        if reason is not None:
            message = f"duration {info.duration_ms} ms, {len(words)} words"
            raise VideoFailure("filter", reason, message, "skipped")

    with step("segments", deadline, vid):
        segments = make_segments(info.duration_ms, cfg.segments)
        if not segments:
            message = f"shorter than one segment ({info.duration_ms} ms)"
            raise VideoFailure("filter", "too_short", message, "skipped")
        aligned = assign_words(words, segments, cfg.segments)
        windows = make_windows(segments, aligned, cfg.segments)
        if not windows:
            message = (
                f"{len(segments)} segments, fewer than min_segments={cfg.segments.min_segments}"
            )
            raise VideoFailure("filter", "too_short", message, "skipped")

    with step("media", deadline, vid):
        times = [s.mid_ms for s in segments]
        try:
            jpegs = media.extract_frames(video_path, times, cfg.frames, info, deadline)
        except media.MediaError as exc:
            raise VideoFailure("media", "corrupt_media", str(exc)) from None
        assert len(jpegs) == len(segments), f"{len(jpegs)} frames for {len(segments)} segments"

    mel_q = mel_scale = None
    if info.has_audio:
        with step("audio", deadline, vid):
            try:
                audio = media.decode_audio(video_path, cfg.audio.sample_rate, info, deadline)
            except media.MediaError as exc:
                raise VideoFailure("audio", "corrupt_media", str(exc)) from None
            ms = cfg.segments.segment_ms
            mel = features.log_mel_segments(audio, len(segments), ms, cfg.audio)
            del audio
            mel_q, mel_scale = schema.quantize_mel(mel, cfg.audio.quantile)

    with step("samples", deadline, vid):
        kind = captions.kind if captions else (source.caption_kind or "none")
        params = extraction_params(cfg)
        non_speech = captions.non_speech if captions else ()
        samples = [
            build_sample(w, jpegs, mel_q, mel_scale, source, kind, params, non_speech)
            for w in windows
        ]
    log.debug("%s: %d windows, %d words", vid, len(samples), len(aligned))
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
