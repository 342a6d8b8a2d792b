"""Writing shards: tar files that appear under their final name only when whole.

A :class:`ShardWriter` takes whole videos (all windows of one video plus its
manifest row) and packs them into tars of at most ``max_bytes`` and
``max_samples``. A video is never split across shards, so "this video is in a
complete shard" is a yes/no question, which makes resuming exact. A shard is
written under a temporary name; on close its videos' rows go to the shard's
index file and only then is the tar renamed into place (names and folders:
:mod:`shards.layout`).

The caller chooses the prefix (``layout.shard_file(prefix, part)`` names the
parts). The pipeline derives it from the video ids (``layout.group_prefix``), so
a retried Beam bundle rewrites the same names with the same content instead of
adding duplicates.

:class:`ShardLimits` is the one definition of how big a shard may grow; ingest's
configuration takes its defaults and its check from here.
"""

from __future__ import annotations

import io
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


class _OpenShard:
    """One tar being written under a temporary name."""

    def __init__(self, fs, root: str, name: str) -> None:
        self.fs, self.root, self.name = fs, root, name
        self.tmp = layout.temp_path(fs, root, name)
        self.file = fs.open(self.tmp, "wb")  # closed in commit() or abort()
        self.tar = tarfile.open(fileobj=self.file, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.bytes = 2 * TAR_BLOCK  # end-of-archive marker
        self.samples = 0
        self.rows: list[ManifestRow] = []

    def add(self, members: list[tuple[str, bytes]], n_samples: int, row: ManifestRow) -> int:
        added = 0
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0  # identical content gives identical bytes
            self.tar.addfile(info, io.BytesIO(data))
            added += member_size(len(data))
        self.bytes += added
        self.samples += n_samples
        self.rows.append(replace(row, shards=[self.name], bytes=added))
        return added

    def commit(self) -> None:
        self.tar.close()
        self.file.close()
        write_rows_atomic(self.fs, self.root, layout.index_file(self.name), self.rows)
        self.fs.mv(self.tmp, layout.join(self.root, self.name))

    def abort(self) -> None:
        try:
            self.tar.close()
            self.file.close()
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

    def add_video(self, samples: list[schema.Sample], row: ManifestRow) -> ManifestRow:
        """Write all windows of one video; returns its row with shard and bytes filled in."""
        assert samples, "a video with no windows has nothing to write"
        members = encode_video(samples)
        size = sum(member_size(len(d)) for _, d in members)
        cur = self.current
        if (
            cur is not None
            and cur.samples
            and (
                cur.bytes + size > self.limits.max_bytes
                or cur.samples + len(samples) > self.limits.max_samples
            )
        ):
            self._commit()
        if self.current is None:
            name = layout.shard_file(self.prefix, self.part)
            self.current = _OpenShard(self.fs, self.root, name)
            self.part += 1
        self.current.add(members, len(samples), row)
        out = self.current.rows[-1]
        return out

    def _commit(self) -> None:
        assert self.current is not None
        shard = self.current
        self.current = None
        shard.commit()
        self.written.append(shard.name)
        self.rows.extend(shard.rows)
        log.info("shard %s: %d samples, %d bytes", shard.name, shard.samples, shard.bytes)

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
