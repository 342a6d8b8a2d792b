"""Clip mode: a benchmark's clips (video, start, end, sentence) as one window each.

Retrieval benchmarks (MSR-VTT 1k-A, YouCook2) are distributed as clips with one sentence
each. Here each clip becomes one sample: the clip's span cut into 5 s segments (the last
one may run past the clip's end; at most ``window_segments``), one frame per segment at
its midpoint (inside the video), the log-mel of the clip's audio, and the sentence as its
caption, spread over the clip by character count as manual captions are. The long-video
filters (duration, words per window) are off: a clip is evaluated whatever its length.

    python -m ingest.clips clips.csv --output out/clips     # then: python -m model evaluate out/clips ...

The CSV (or TSV) has a header with ``video`` (a local path, an http(s) URL or a YouTube
id), ``start`` and ``end`` (seconds) and ``sentence``; ``id`` is optional. A clip that
fails is reported on one line and the others go on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingest import config as ingest_config
from ingest import features, media
from ingest.captions import spread
from ingest.config import CoreConfig
from ingest.core import (
    VideoFailure,
    VideoSource,
    build_sample,
    extraction_params,
    probe_video,
    step,
)
from ingest.deadline import Deadline
from ingest.refs import safe_id
from ingest.segments import Segment, Window, assign_words
from shards import schema
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Clip:
    clip_id: str  # [A-Za-z0-9_-]: the sample's video id
    video: str  # local path, http(s) URL or YouTube id
    start_ms: int
    end_ms: int
    sentence: str
    where: str  # file:line, for messages


def _ms(value: str, name: str, where: str) -> int:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{where}: {name} {value!r} must be a time >= 0")
    return round(seconds * 1000)


def parse_clips(text: str, source: str, delimiter: str = ",") -> list[Clip]:
    """The clips of a CSV text; ValueError (one line, naming file:line) on a bad row."""
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("video", "start", "end", "sentence") if c not in header]
    if missing:
        raise ValueError(f"{source}: header lacks {missing} (has {header})")
    reader.fieldnames = header
    clips, seen = [], set()
    for n, row in enumerate(reader, start=2):
        where = f"{source}:{n}"
        if all(not (v or "").strip() for v in row.values()):
            continue
        video, sentence = (row["video"] or "").strip(), " ".join((row["sentence"] or "").split())
        start, end = _ms(row["start"], "start", where), _ms(row["end"], "end", where)
        if not video or not sentence:
            raise ValueError(f"{where}: video and sentence must not be empty")
        if end <= start:
            raise ValueError(f"{where}: end {end} ms is not after start {start} ms")
        clip_id = safe_id((row.get("id") or "").strip() or f"clip{n - 1:06d}")
        if clip_id in seen:
            raise ValueError(f"{where}: clip id {clip_id!r} appears twice")
        seen.add(clip_id)
        clips.append(Clip(clip_id, video, start, end, sentence, where))
    if not clips:
        raise ValueError(f"{source}: lists no clips")
    return clips


def read_clips(path: str) -> list[Clip]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such clip list") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return parse_clips(text, path, "\t" if path.lower().endswith(".tsv") else ",")


def clip_segments(start_ms: int, end_ms: int, cfg: CoreConfig) -> list[Segment]:
    """Segments of segment_ms from start_ms covering [start_ms, end_ms) (the last one may
    run past end_ms), at most window_segments of them."""
    size = cfg.segments.segment_ms
    n = min(max(1, math.ceil((end_ms - start_ms) / size)), cfg.segments.window_segments)
    return [Segment(k, start_ms + k * size, start_ms + (k + 1) * size) for k in range(n)]


def process_clip(
    video_path: Path, clip: Clip, cfg: CoreConfig, source: VideoSource
) -> schema.Sample:
    """One downloaded video and one clip of it -> the clip's one sample."""
    deadline = Deadline.after(cfg.limits.process_deadline_s)
    vid = source.video_id
    with step("probe", deadline, vid):
        info = probe_video(video_path, deadline)
        if clip.start_ms >= info.duration_ms:
            message = f"clip starts at {clip.start_ms} ms, the video lasts {info.duration_ms} ms"
            raise VideoFailure("filter", "too_short", message, "skipped")
    with step("segments", deadline, vid):
        segments = clip_segments(clip.start_ms, min(clip.end_ms, info.duration_ms), cfg)
        words = spread(clip.sentence.split(), clip.start_ms, min(clip.end_ms, segments[-1].end_ms))
        aligned = assign_words(words, segments, cfg.segments)
        window = Window(0, tuple(segments), tuple(aligned))
    with step("media", deadline, vid):
        last = max(info.duration_ms - 1, 0)
        times = [min(s.mid_ms, last) for s in segments]
        try:
            jpegs = media.extract_frames(video_path, times, cfg.frames, info, deadline)
        except media.MediaError as exc:
            raise VideoFailure("media", "corrupt_media", str(exc)) from None
    mel_q = mel_scale = None
    if info.has_audio:
        with step("audio", deadline, vid):
            try:
                audio = media.decode_audio(video_path, cfg.audio.sample_rate, info, deadline)
            except media.MediaError as exc:
                raise VideoFailure("audio", "corrupt_media", str(exc)) from None
            first = clip.start_ms * cfg.audio.sample_rate // 1000
            ms = cfg.segments.segment_ms
            mel = features.log_mel_segments(audio[first:], len(segments), ms, cfg.audio)
            mel_q, mel_scale = schema.quantize_mel(mel, cfg.audio.quantile)
    with step("samples", deadline, vid):
        return build_sample(
            window, jpegs, mel_q, mel_scale, source, "manual", extraction_params(cfg), ()
        )


@contextmanager
def local_video(
    clip: Clip, settings: ingest_config.IngestConfig, workdir: Path
) -> Iterator[tuple[Path, str]]:
    """The clip's video as a local file, and the URL to record: a local path as it is,
    anything else downloaded with yt-dlp (and removed afterwards)."""
    if "://" not in clip.video and Path(clip.video).exists():
        yield Path(clip.video), Path(clip.video).resolve().as_uri()
        return
    from ingest.download import Downloader  # yt-dlp only when something is downloaded
    from ingest.refs import make_ref

    ref = make_ref(clip.video)
    downloader = Downloader(settings.download, workdir)
    try:
        with downloader.session(ref) as got:
            yield got.video_path, ref.shown_url
    finally:
        downloader.close()


def ingest_clips(clips: list[Clip], out: str, settings: ingest_config.IngestConfig) -> list[str]:
    """Write one sample per clip into shards under ``out``; returns one line per failed clip."""
    failures = []
    limits = ShardLimits(
        max_bytes=settings.shards.max_bytes, max_samples=settings.shards.max_samples
    )
    with (
        tempfile.TemporaryDirectory(prefix="montage-clips-") as tmp,
        ShardWriter(out, "clips", limits) as writer,
    ):
        for clip in clips:
            try:
                with local_video(clip, settings, Path(tmp)) as (path, url):
                    source = VideoSource(clip.clip_id, url=url, title=clip.sentence)
                    sample = process_clip(path, clip, settings.core, source)
            except VideoFailure as exc:
                failures.append(f"{clip.where}: {clip.clip_id}: {exc.stage}/{exc.reason}: {exc}")
                continue
            except (OSError, ValueError) as exc:
                failures.append(f"{clip.where}: {clip.clip_id}: {exc}")
                continue
            row = ManifestRow(video_id=clip.clip_id, url=url, status="ok", title=clip.sentence,
                              segments=sample.meta.n_segments, windows=1,
                              words=len(sample.meta.words), has_audio=sample.meta.has_audio)  # fmt: skip
            writer.add_video([sample], row)
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ingest.clips", description="Ingest a benchmark's clips, one window each."
    )
    p.add_argument("clips", help="CSV/TSV with video, start, end, sentence (and optional id)")
    p.add_argument("--output", required=True, help="the shard folder to write")
    p.add_argument("--config", help="pipelines.yaml to read (default: the one shipped)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        clips = read_clips(args.clips)
        settings = ingest_config.load(args.config).ingest
    except ingest_config.ConfigError as exc:
        print(f"python -m ingest.clips: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except ValueError as exc:
        print(f"python -m ingest.clips: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    failures = ingest_clips(clips, args.output, settings)
    for line in failures:
        print(f"failed: {line}", file=sys.stderr)  # noqa: T201
    print(f"{args.output}: {len(clips) - len(failures)} of {len(clips)} clips ingested")  # noqa: T201
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
