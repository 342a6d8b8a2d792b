"""The manifest: one row per input video, what resume, retries and inspection read.

Where its files lie is :mod:`shards.layout`'s business: ``manifest.parquet``
(consolidated), and the index (rows beside each shard, written *before* the
shard is renamed into place, and rows of videos in no shard). A video counts
as done only when its row says ``ok`` and the shard it names exists, so a run
killed at any point resumes without duplicates or gaps.
"""

from __future__ import annotations

import logging
import posixpath
import time
import uuid
from collections import defaultdict
from collections.abc import Container, Iterable
from dataclasses import asdict, dataclass, field, fields

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from shards import layout

log = logging.getLogger(__name__)

STATUSES = ("ok", "skipped", "failed")


@dataclass(slots=True)
class ManifestRow:
    video_id: str
    url: str
    status: str  # ok | skipped | failed
    stage: str = (
        ""  # where it stopped: input, download, probe, captions, filter, media, audio, write
    )
    reason: str = ""  # machine-readable: unavailable, too_long, no_captions, corrupt_media, ...
    message: str = ""  # human-readable detail
    title: str = ""
    duration_ms: int = 0
    segments: int = 0
    windows: int = 0
    words: int = 0
    bytes: int = 0  # bytes of this video's samples in shards
    shards: list[str] = field(default_factory=list)
    caption_kind: str = ""
    has_audio: bool = False
    run: str = ""  # the run that wrote the row

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("title", pa.string()),
        ("duration_ms", pa.int64()),
        ("segments", pa.int32()),
        ("windows", pa.int32()),
        ("words", pa.int32()),
        ("bytes", pa.int64()),
        ("shards", pa.list_(pa.string())),
        ("caption_kind", pa.string()),
        ("has_audio", pa.bool_()),
        ("run", pa.string()),
    ]
)
assert [f.name for f in fields(ManifestRow)] == SCHEMA.names, "ManifestRow and SCHEMA disagree"


def new_run_id() -> str:
    """Sortable by start time, so later runs' rows override earlier ones."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def to_table(rows: Iterable[ManifestRow]) -> pa.Table:
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=SCHEMA)


def from_table(table: pa.Table) -> list[ManifestRow]:
    missing = set(SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"manifest lacks columns {sorted(missing)}")
    return [ManifestRow(**r) for r in table.select(SCHEMA.names).to_pylist()]


def write_rows_atomic(
    fs: fsspec.AbstractFileSystem, root: str, relpath: str, rows: Iterable[ManifestRow]
) -> None:
    """Write ``root/relpath`` as Parquet under a temporary name, then rename it into place."""
    tmp = layout.temp_path(fs, root, posixpath.basename(relpath))
    final = layout.join(root, relpath)
    fs.makedirs(posixpath.dirname(final), exist_ok=True)
    try:
        with fs.open(tmp, "wb") as f:
            pq.write_table(to_table(rows), f)
        fs.mv(tmp, final)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_rows(out: str, run: str, rows: list[ManifestRow]) -> None:
    """Index the rows of videos that are in no shard (skipped, failed), atomically."""
    fs, root = layout.open_output(out)
    write_rows_atomic(fs, root, layout.rows_file(run, (r.video_id for r in rows)), rows)


def read_rows(fs: fsspec.AbstractFileSystem, path: str) -> list[ManifestRow]:
    # Read the bytes first: pq.read_table on an fsspec file object can leave Arrow's
    # I/O threads behind and abort the process at exit (apache/arrow#33975).
    with fs.open(path, "rb") as f:
        data = f.read()
    return from_table(pq.read_table(pa.BufferReader(data)))


def state_files(out: str) -> list[str]:
    """The files whose rows make the state of ``out``, in the order they apply:
    the consolidated manifest, then the index files by name."""
    fs, root = layout.open_output(out)
    if not fs.exists(root):
        return []
    manifest = layout.manifest_path(root)
    first = [manifest] if fs.exists(manifest) else []
    return first + list(layout.index_paths(fs, root))


def read_state_file(
    out: str, path: str, existing: Container[str] | None = None
) -> list[ManifestRow]:
    """The rows of one state file that count: an ``ok`` row only when all its shards
    exist. ``existing`` names the shards present; by default each one the file names
    is looked up (an index file names one shard)."""
    fs, root = layout.open_output(out)
    rows = read_rows(fs, path)
    if existing is None:
        named = {s for r in rows if r.status == "ok" for s in r.shards}
        existing = {s for s in named if fs.exists(layout.join(root, s))}
    return [r for r in rows if r.status != "ok" or all(s in existing for s in r.shards)]


def current_row(rows: Iterable[ManifestRow]) -> ManifestRow | None:
    """The row that stands for one video, given its rows in state order: the last,
    except that a done video stays done (no later failure replaces an ok row)."""
    current = None
    for row in rows:
        if current is not None and current.status == "ok" and row.status != "ok":
            continue
        current = row
    return current


def load_state(out: str) -> dict[str, ManifestRow]:
    """The current row of every video known under ``out``.

    Reads the consolidated manifest, then every index file; an ``ok`` row counts
    only when all its shards exist. Index files of shards that never landed
    (the run died between the two renames) are ignored.
    """
    fs, root = layout.open_output(out)
    files = state_files(out)
    existing = layout.shard_names(fs, root) if files else set()
    by_video: dict[str, list[ManifestRow]] = defaultdict(list)
    for path in files:
        for row in read_state_file(out, path, existing):
            by_video[row.video_id].append(row)
    state = {video: current_row(rows) for video, rows in by_video.items()}
    return {video: row for video, row in state.items() if row is not None}


def consolidate(out: str, run: str) -> list[ManifestRow]:
    """Rewrite ``manifest.parquet`` from everything under ``out``; return its rows."""
    fs, root = layout.open_output(out)
    state = load_state(out)
    rows = sorted(state.values(), key=lambda r: r.video_id)
    write_rows_atomic(fs, root, layout.MANIFEST_NAME, rows)
    layout.remove_empty_tmp(fs, root)
    log.info("manifest: %d rows (run %s)", len(rows), run)
    return rows
