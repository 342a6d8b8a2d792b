"""Writing shards: tar files that appear under their final name only when whole.

A :class:`ShardWriter` takes whole videos (all windows of one video plus its
manifest row) and packs them into tars of at most ``max_bytes`` and
``max_samples``. A video is never split across shards, so "this video is in a
complete shard" is a yes/no question, which makes resuming exact. A shard is
written under a temporary name; on close its videos' rows go to the shard's
index file and only then is the tar renamed into place (names and folders:
:mod:`shards.layout`).

A video is encoded into its tar bytes in memory before any of them is written, so
a video that fails to encode leaves the shard as it was, and the writer goes on
with the next one. A shard whose file cannot be written or committed is removed
whole; the rows of the videos it held are kept in :attr:`ShardWriter.lost`, so the
caller can record them rather than lose them.

The caller chooses the prefix (``layout.shard_file(prefix, part)`` names the
parts). The pipeline derives it from the video ids (``layout.group_prefix``), so
a retried Beam bundle rewrites the same names with the same content instead of
adding duplicates.

:class:`ShardLimits` is the one definition of how big a shard may grow; ingest's
configuration takes its defaults and its check from here.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass, replace

from shards import layout, schema
from shards.manifest import ManifestRow, write_rows_atomic

log = logging.getLogger(__name__)

TAR_BLOCK = 512
MIN_SHARD_BYTES = 4 * TAR_BLOCK  # the smallest tar with a member: header, data, two end blocks


@dataclass(frozen=True, slots=True)
class ShardLimits:
    """When a shard is full. A shard always takes its first video, whatever its size."""

    max_bytes: int = 1 << 30  # roll over before a shard would pass this size
    max_samples: int = 2000  # ... or this many samples (windows)

    def __post_init__(self) -> None:
        if self.max_bytes < MIN_SHARD_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_SHARD_BYTES}, got {self.max_bytes}")
        if self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {self.max_samples}")


def member_size(nbytes: int) -> int:
    """Bytes a member takes in a tar: one header block plus padded data."""
    return TAR_BLOCK + -(-nbytes // TAR_BLOCK) * TAR_BLOCK


def encode_video(samples: list[schema.Sample]) -> list[tuple[str, bytes]]:
    """(member name, data) for all windows of one video, in order."""
    out = []
    for sample in samples:
        key = sample.key
        for suffix, data in schema.encode(sample).items():
            out.append((f"{key}.{suffix}", data))
    return out


def tar_member(name: str, data: bytes) -> bytes:
    """One member as it lies in the archive: header, data, padding to the block
    (the bytes ``tarfile`` writes for it; mode 0444 and mtime 0, so identical content
    gives identical bytes)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0
    header = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    return header + data + bytes(-len(data) % TAR_BLOCK)


def tar_end(offset: int) -> bytes:
    """The end of an archive whose members take ``offset`` bytes: two zero blocks,
    then zeros up to a whole record, as ``tarfile`` ends one."""
    end = 2 * TAR_BLOCK
    return bytes(end + -(offset + end) % tarfile.RECORDSIZE)


@dataclass(frozen=True, slots=True)
class LostShard:
    """A shard that could not be written whole, and the rows of the videos it held."""

    name: str
    rows: list[ManifestRow]
    error: str  # what went wrong, on one line


class _OpenShard:
    """One tar being written under a temporary name."""

    def __init__(self, fs, root: str, name: str) -> None:
        self.fs, self.root, self.name = fs, root, name
        self.tmp = layout.temp_path(fs, root, name)
        self.file = fs.open(self.tmp, "wb")  # closed in commit() or abort()
        self.offset = 0  # bytes of the members written
        self.samples = 0
        self.rows: list[ManifestRow] = []

    @property
    def bytes(self) -> int:
        return self.offset + 2 * TAR_BLOCK  # the end-of-archive marker

    def add(self, data: bytes, n_samples: int, row: ManifestRow) -> ManifestRow:
        self.file.write(data)
        self.offset += len(data)
        self.samples += n_samples
        self.rows.append(replace(row, shards=[self.name], bytes=len(data)))
        return self.rows[-1]

    def commit(self) -> None:
        self.file.write(tar_end(self.offset))
        self.file.close()
        write_rows_atomic(self.fs, self.root, layout.index_file(self.name), self.rows)
        self.fs.mv(self.tmp, layout.join(self.root, self.name))

    def abort(self) -> None:
        try:
            self.file.close()
        except Exception as exc:  # the file is removed below whatever state it is in
            log.debug("closing %s: %s", self.tmp, exc)
        finally:
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


class ShardWriter:
    """Packs whole videos into size-limited shards under ``out``.

    Use as a context manager: leaving it normally commits the last shard,
    leaving it with an exception removes the partial one.
    """

    def __init__(self, out: str, prefix: str, limits: ShardLimits | None = None) -> None:
        if not schema.KEY_RE.match(prefix):
            raise ValueError(f"shard prefix {prefix!r} has characters outside [A-Za-z0-9_-]")
        self.fs, self.root = layout.open_output(out)
        self.fs.makedirs(self.root, exist_ok=True)
        self.prefix = prefix
        self.limits = limits or ShardLimits()
        self.part = 0
        self.current: _OpenShard | None = None
        self.written: list[str] = []
        self.rows: list[ManifestRow] = []
        self.lost: list[LostShard] = []  # shards removed because they could not be written

    def add_video(self, samples: list[schema.Sample], row: ManifestRow) -> ManifestRow:
        """Write all windows of one video; returns its row with shard and bytes filled in.

        On an exception nothing of this video is in the shard. If the shard's file
        itself failed, the shard is gone and its rows are in :attr:`lost`.
        """
        assert samples, "a video with no windows has nothing to write"
        data = b"".join(tar_member(name, d) for name, d in encode_video(samples))
        cur = self.current
        if (
            cur is not None
            and cur.samples
            and (
                cur.bytes + len(data) > self.limits.max_bytes
                or cur.samples + len(samples) > self.limits.max_samples
            )
        ):
            self._commit()
        if self.current is None:
            name = layout.shard_file(self.prefix, self.part)
            self.part += 1
            self.current = _OpenShard(self.fs, self.root, name)
        try:
            return self.current.add(data, len(samples), row)
        except BaseException as exc:  # bytes of this video may be in the file: drop it
            self._lose(exc)
            raise

    def _commit(self) -> None:
        assert self.current is not None
        shard = self.current
        try:
            shard.commit()
        except BaseException as exc:
            self._lose(exc)
            raise
        self.current = None
        self.written.append(shard.name)
        self.rows.extend(shard.rows)
        log.info("shard %s: %d samples, %d bytes", shard.name, shard.samples, shard.bytes)

    def _lose(self, exc: BaseException) -> None:
        """Remove the open shard, keeping its rows in ``lost``."""
        assert self.current is not None
        shard, self.current = self.current, None
        shard.abort()
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        if shard.rows:
            self.lost.append(LostShard(shard.name, shard.rows, error))
        log.warning("shard %s removed, %d videos lost: %s", shard.name, len(shard.rows), error)

    def close(self) -> list[ManifestRow]:
        """Commit the open shard; the rows of every video written, final."""
        if self.current is not None:
            self._commit()
        return self.rows

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()
            self.current = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
