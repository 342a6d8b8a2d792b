"""The Beam ingest pipeline: video list -> yt-dlp -> aligned windows -> shards + manifest.

    ReadInputs (first clears the partial files killed runs left in the output's temporary folder)
      -> Dedupe -> SkipDone (a join with the output's rows by video id)
      -> AssignGroups (refs grouped by a hash of the id)
      -> ProcessAndWrite: per group, download + core per video, streamed into shards
           ok rows     (videos in complete shards, already indexed beside their shard)
           failed rows -> WriteRows (skipped and failed videos, batched per bundle)
      -> Finalize (consolidates manifest.parquet once everything above is written)

`build_pipeline` only adds transforms to a pipeline it is given; option parsing
lives in `ingest.__main__`. Every input line ends as exactly one manifest row: whatever
happens to one video (a download error, a bug, a deadline, a shard that cannot be
written) ends as that video's row, and its group goes on with the next video. Stored
URLs and messages have their credentials removed (`ingest.refs.redact`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import zlib
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics

from ingest import METRICS as NAMESPACE
from ingest import core, scratch
from ingest.config import IngestConfig
from ingest.download import Downloader, DownloadError
from ingest.gate import COUNTERS
from ingest.inputs import InputLine, read_inputs
from ingest.progress import mark
from ingest.refs import VideoRef, make_ref, redact
from ingest.resume import SkipDone
from shards import layout, manifest, schema
from shards.manifest import ManifestRow
from shards.writer import ShardWriter

log = logging.getLogger(__name__)

FAILED = "failed"


def bad_input_id(raw: str) -> str:
    return "input-" + hashlib.sha1(raw.encode()).hexdigest()[:12]


def failure_row(
    ref: VideoRef, run: str, stage: str, reason: str, message: str, status: str = "failed"
) -> ManifestRow:
    return ManifestRow(
        video_id=ref.video_id,
        url=ref.shown_url,
        status=status,
        stage=stage,
        reason=reason,
        message=redact(message)[:2000],
        run=run,
    )


# --- stage 1: inputs ---------------------------------------------------------------


class _ParseLine(beam.DoFn):
    def __init__(self, run: str, captions_root: str | None) -> None:
        self.run, self.captions_root = run, captions_root

    def process(self, line: InputLine):
        try:
            yield make_ref(line.url, line.captions, line.video_id, self.captions_root)
        except ValueError as exc:
            Metrics.counter(NAMESPACE, "inputs_invalid").inc()
            yield beam.pvalue.TaggedOutput(
                FAILED,
                ManifestRow(
                    # a line without a URL is known by where it is
                    video_id=bad_input_id(line.url or line.where),
                    url=redact(line.url)[:500],
                    status="failed",
                    stage="input",
                    reason="invalid_input",
                    message=redact(f"{line.where}: {exc}"),
                    run=self.run,
                ),
            )


def _clear_leftovers(input_path: str, output: str | None) -> str:
    """Remove what earlier runs of ``output`` left in its temporary folder (they were killed while
    writing), and this machine's download folders of killed workers (each worker also
    does at its start); passes the input path on."""
    if output is not None:
        for path in layout.clear_tmp(output):
            log.info("removed %s, left by an earlier run", path)
    scratch.reap()
    return input_path


class ReadInputs(beam.PTransform):
    """Input list -> VideoRef; unusable lines go to the ``failed`` output as rows.

    Given the ``output``, it first clears the partial files earlier runs left there:
    everything this run writes descends from the lines read after that, so the
    clearing is done before any of it begins.
    """

    def __init__(
        self, path: str, run: str, captions_root: str | None = None, output: str | None = None
    ) -> None:
        super().__init__()
        self.path, self.run, self.captions_root, self.output = path, run, captions_root, output

    def expand(self, pbegin):
        parse = _ParseLine(self.run, self.captions_root)
        return (
            pbegin
            | "Path" >> beam.Create([self.path])
            | "ClearLeftovers" >> beam.Map(_clear_leftovers, output=self.output)
            | "Read" >> beam.FlatMap(read_inputs)
            | "Parse" >> beam.ParDo(parse).with_outputs(FAILED, main="refs")
        )


class Dedupe(beam.PTransform):
    """One VideoRef per video id (the first by URL, so the choice is deterministic)."""

    def expand(self, refs):
        return (
            refs
            | "ById" >> beam.Map(lambda r: (r.video_id, r))
            | "Group" >> beam.GroupByKey()
            | "First" >> beam.Map(lambda kv: min(kv[1], key=lambda r: (r.url, r.captions or "")))
        )


# --- stage 2: groups -------------------------------------------------------------------


def group_of(video_id: str, n_groups: int) -> int:
    return zlib.crc32(video_id.encode()) % n_groups


def n_groups_for(count: int, per_group: int, min_groups: int) -> int:
    """Enough groups to fill the workers, few enough that shards stay big."""
    return max(1, min(count, max(min_groups, math.ceil(count / per_group))))


class AssignGroups(beam.PTransform):
    """VideoRef -> (group, [VideoRef...]); the barrier is over refs only, never media."""

    def __init__(self, per_group: int, min_groups: int) -> None:
        super().__init__()
        self.per_group, self.min_groups = per_group, min_groups

    def expand(self, refs):
        per_group, min_groups = self.per_group, self.min_groups
        n_groups = (
            refs
            | "Count" >> beam.combiners.Count.Globally()
            | "Groups" >> beam.Map(n_groups_for, per_group, min_groups)
        )
        return (
            refs
            | "Key"
            >> beam.Map(
                lambda r, n: (group_of(r.video_id, n), r), n=beam.pvalue.AsSingleton(n_groups)
            )
            | "Gather" >> beam.GroupByKey()
            | "Spread" >> beam.Reshuffle()
        )


# --- stage 3: download, the per-video core, shards ---------------------------------------


@dataclass(slots=True)
class VideoResult:
    """What one video came to: its manifest row, and its samples when the row says ok."""

    row: ManifestRow
    samples: list[schema.Sample] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.row.status == "ok"


class _ProcessGroupFn(beam.DoFn):
    """Downloads and processes a group's videos one at a time, streaming them into shards.

    Shards land as each fills, so a killed run keeps every finished one, and memory
    holds one video at a time. A retried group first removes what an earlier attempt
    of the same group left, then rewrites the same names. Nothing one video does stops
    the group: every video ends as an ok row (in a complete shard) or a failure row.
    """

    def __init__(self, cfg: IngestConfig, output: str, run: str, progress: str | None) -> None:
        self.cfg, self.output, self.run, self.progress = cfg, output, run, progress
        self.limits = cfg.shards.limits
        self.ok = Metrics.counter(NAMESPACE, "videos_ok")
        self.failed = Metrics.counter(NAMESPACE, "videos_failed")
        self.skipped = Metrics.counter(NAMESPACE, "videos_skipped")
        self.windows = Metrics.counter(NAMESPACE, "windows")
        self.bytes = Metrics.counter(NAMESPACE, "bytes_written")
        self.shards = Metrics.counter(NAMESPACE, "shards_written")
        self.gate_counters = {name: Metrics.counter(NAMESPACE, name) for name in COUNTERS}

    def setup(self) -> None:
        self.workdir = scratch.make_workdir()  # first removes those of killed workers
        max_duration_s = self.cfg.core.filters.max_duration_s
        self.downloader = Downloader(self.cfg.download, self.workdir, max_duration_s)

    def teardown(self) -> None:
        self.downloader.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def process(self, keyed):
        _, refs = keyed
        refs = sorted(refs, key=lambda r: r.video_id)
        prefix = layout.group_prefix(r.video_id for r in refs)
        for shard in layout.remove_group(self.output, prefix):
            log.warning("removed %s, left by an earlier attempt of the same group", shard)
        writer = ShardWriter(self.output, prefix, self.limits)
        self.downloader.gate.start_group(prefix)  # binds the group's proxy
        try:
            for ref in refs:
                failure = self._ingest(ref, writer)
                self._count_gate()
                if failure is not None:
                    yield beam.pvalue.TaggedOutput(FAILED, failure)
                yield from self._lost(writer)
            try:
                writer.close()
            except Exception as exc:  # the last shard's videos are in writer.lost
                log.warning("group %s: last shard not written: %s", prefix, core.one_line(exc))
            yield from self._lost(writer)
        except BaseException:
            writer.abort()
            raise
        self.shards.inc(len(writer.written))
        for row in writer.rows:
            self.ok.inc()
            self.windows.inc(row.windows)
            self.bytes.inc(row.bytes)
            yield row

    def _ingest(self, ref: VideoRef, writer: ShardWriter) -> ManifestRow | None:
        """One video into the writer; its failure row, or None when its samples are in."""
        result = self.process_one(ref)
        if not result.ok:
            mark(self.progress, ref.video_id, result.row.status)
            return result.row
        try:
            writer.add_video(result.samples, result.row)
        except Exception as exc:  # nothing of this video is in the shard
            log.exception("%s: could not be written", ref.video_id)
            mark(self.progress, ref.video_id, "failed")
            return self._fail(ref, "write", "internal_error", core.one_line(exc)).row
        mark(self.progress, ref.video_id, "ok", result.row.duration_ms)
        return None

    def _count_gate(self) -> None:
        """The downloader's pacing, breaker and proxy counts, into Beam counters."""
        for name, n in self.downloader.gate.take_stats().items():
            if n:
                self.gate_counters[name].inc(n)

    def _lost(self, writer: ShardWriter):
        """Failure rows for the videos of shards the writer had to remove."""
        while writer.lost:
            shard = writer.lost.pop(0)
            for row in shard.rows:
                message = f"shard {shard.name} could not be written: {shard.error}"
                ref = VideoRef(row.video_id, row.url)
                yield beam.pvalue.TaggedOutput(
                    FAILED, self._fail(ref, "write", "internal_error", message).row
                )

    def process_one(self, ref: VideoRef) -> VideoResult:
        """Download and run the core on one video: its row, and its samples when ok."""
        try:
            with self.downloader.session(ref) as got:
                source = core.VideoSource(
                    video_id=ref.video_id,
                    url=ref.shown_url,
                    title=str(got.info.get("title") or ""),
                    caption_kind=got.caption_kind,
                )
                # the core's failures, its bugs and its deadline all come out as VideoFailure
                result = core.process_video(
                    got.video_path, got.captions_path, self.cfg.core, source
                )
        except DownloadError as exc:
            status = "skipped" if exc.category in ("too_long", "no_captions") else "failed"
            return self._fail(ref, "download", exc.category, exc.message, status)
        except core.VideoFailure as exc:
            return self._fail(ref, exc.stage, exc.reason, exc.message, exc.status)
        except Exception as exc:  # outside the downloader's taxonomy (its files, its cleanup)
            log.exception("%s: unexpected error at download", ref.video_id)
            return self._fail(ref, "download", "internal_error", core.one_line(exc))
        row = ManifestRow(
            video_id=ref.video_id,
            url=ref.shown_url,
            status="ok",
            title=source.title,
            duration_ms=result.duration_ms,
            segments=result.segments,
            windows=len(result.samples),
            words=result.words,
            caption_kind=result.caption_kind,
            has_audio=result.has_audio,
            run=self.run,
        )
        return VideoResult(row, result.samples)

    def _fail(
        self, ref: VideoRef, stage: str, reason: str, message: str, status: str = "failed"
    ) -> VideoResult:
        (self.skipped if status == "skipped" else self.failed).inc()
        row = failure_row(ref, self.run, stage, reason, message, status)
        log.info("%s: %s at %s (%s): %s", ref.video_id, status, stage, reason, row.message)
        return VideoResult(row)


class ProcessAndWrite(beam.PTransform):
    """(group, refs) -> ok rows of videos in complete shards; failure rows on ``failed``."""

    def __init__(self, cfg: IngestConfig, output: str, run: str, progress: str | None = None):
        super().__init__()
        self.cfg, self.output, self.run, self.progress = cfg, output, run, progress

    def expand(self, groups):
        fn = _ProcessGroupFn(self.cfg, self.output, self.run, self.progress)
        return groups | "Process" >> beam.ParDo(fn).with_outputs(FAILED, main="ok")


def _write_rows(
    rows: list[ManifestRow], output: str, run: str, progress: str | None = None
) -> list[ManifestRow]:
    manifest.write_rows(output, run, rows)
    for row in rows:  # inputs that never reached a group (a video marked twice counts once)
        mark(progress, row.video_id, row.status)
    return rows


class WriteRows(beam.PTransform):
    """Rows of skipped and failed videos -> the output's index, a file per batch."""

    def __init__(self, output: str, run: str, progress: str | None = None) -> None:
        super().__init__()
        self.output, self.run, self.progress = output, run, progress

    def expand(self, rows):
        write = beam.FlatMap(_write_rows, output=self.output, run=self.run, progress=self.progress)
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=1000)
            | "Write" >> write
        )


def _finalize(_, output: str, run: str, written: int) -> int:
    rows = manifest.consolidate(output, run)
    log.info("run %s wrote %d rows; manifest has %d", run, written, len(rows))
    return len(rows)


def build_pipeline(
    p: beam.Pipeline,
    input_path: str,
    output: str,
    cfg: IngestConfig,
    run: str,
    retry_failed: bool = False,
    progress: str | None = None,
):
    """Add the ingest transforms to ``p``; returns the PCollection of the final row count.

    ``progress``: a folder on this machine where workers mark each video they finish
    (``ingest.progress``); None on clusters."""
    parsed = p | "ReadInputs" >> ReadInputs(input_path, run, cfg.download.captions_root, output)
    groups = (
        parsed.refs
        | "Dedupe" >> Dedupe()
        | "SkipDone" >> SkipDone(output, retry_failed, progress)
        | "AssignGroups" >> AssignGroups(cfg.shards.videos_per_group, cfg.shards.min_groups)
    )
    processed = groups | "ProcessAndWrite" >> ProcessAndWrite(cfg, output, run, progress)
    ok_rows = processed.ok
    bad_rows = (
        (parsed[FAILED], processed[FAILED])
        | "AllFailures" >> beam.Flatten()
        | "WriteRows" >> WriteRows(output, run, progress)
    )
    written = (
        (ok_rows, bad_rows)
        | "AllRows" >> beam.Flatten()
        | "CountRows" >> beam.combiners.Count.Globally()
    )
    return (
        p
        | "Finalize" >> beam.Create([None])
        | "Consolidate"
        >> beam.Map(_finalize, output=output, run=run, written=beam.pvalue.AsSingleton(written))
    )
