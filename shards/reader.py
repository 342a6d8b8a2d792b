"""The one tar reader: shards -> members -> samples, for the loader, the tools and the tests.

A member is named ``<key>.<suffix>`` (:func:`split_name`, the only place that rule
is written) and a sample is the run of consecutive members sharing a key. Two ways
through a shard, one walk over its members (:func:`_walk`):

- a stream (:func:`iter_entries`, :func:`iter_raw`, :func:`iter_samples`, and
  :func:`stream_raw` over many shards): front to back, nothing seeked, so any
  fsspec file reads the same, an http one included;
- a scan (:class:`TarScan`): seeks past the members it does not want and checks
  what follows the last one (what ``inspect`` and ``verify`` need).

Damage is a :class:`ShardError` naming the shard. :func:`stream_raw`, the training
loader's source, reports it to a handler and goes on with the next shard.

Nothing here extracts members to disk: members are read into memory by name,
so a member called ``../../etc/passwd`` is just an odd key.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from shards import layout, schema
from shards.decode import decode_sample, parse_meta

Want = Callable[[str, str], bool]  # (key, suffix) -> read this member's data?


class ShardError(ValueError):
    """A shard cannot be read as a tar (missing, truncated, not a tar)."""


def split_name(name: str) -> tuple[str, str]:
    """(key, suffix) of a member name: the key is the basename up to its first dot."""
    dirname, base = posixpath.split(name)
    key, _, suffix = base.partition(".")
    return (posixpath.join(dirname, key) if dirname else key), suffix


@dataclass(slots=True)
class Entry:
    """One regular-file member; ``data`` only when the reader was asked for it."""

    key: str
    suffix: str
    name: str
    size: int
    data: bytes | None


@dataclass(slots=True)
class RawSample:
    """One sample's members as stored (bytes by suffix), not decoded yet."""

    key: str
    members: dict[str, bytes]
    url: str  # the shard it came from


# --- Opening and walking ---


def open_shard(url: str) -> BinaryIO:
    """A shard's bytes (a local path or any fsspec URL); raises :class:`ShardError`."""
    fs, path = layout.open_output(url)
    try:
        return fs.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise ShardError(f"{url}: cannot open: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _tar_errors(url: str) -> Iterator[None]:
    """What tarfile and the file raise, as one-line :class:`ShardError`\\ s."""
    try:
        yield
    except tarfile.ReadError as exc:
        if "unexpected end of data" in str(exc):
            raise ShardError(f"{url}: truncated (data ends inside a member)") from None
        raise ShardError(f"{url}: not a tar ({exc})") from None
    except (EOFError, tarfile.TarError) as exc:
        raise ShardError(f"{url}: truncated ({exc})") from None
    except OSError as exc:
        raise ShardError(f"{url}: cannot read: {exc}") from None


def _walk(
    tar: tarfile.TarFile, url: str, want: Want | None, other: list[str] | None = None
) -> Iterator[Entry]:
    """Every regular-file member in order, with its data when ``want`` says so (all when
    None); the names of other members (directories, links) go to ``other``."""
    for info in tar:
        tar.members = []  # forget headers already passed: a long shard costs no memory
        if not info.isfile():
            if other is not None:
                other.append(info.name)
            continue
        key, suffix = split_name(info.name)
        data = None
        if info.size > schema.MAX_MEMBER_BYTES:  # read, it would allocate what it declares
            raise ShardError(
                f"{url}: member {info.name} declares {info.size} bytes, more than the "
                f"{schema.MAX_MEMBER_BYTES} a member may have"
            )
        if want is None or want(key, suffix):
            fh = tar.extractfile(info)
            data = fh.read() if fh is not None else b""
            if len(data) != info.size:
                raise ShardError(f"{url}: truncated inside member {info.name}")
        yield Entry(key, suffix, info.name, info.size, data)


# --- Streams ---


def iter_entries(url: str, want: Want | None = None) -> Iterator[Entry]:
    """A shard's regular-file members front to back; raises :class:`ShardError`."""
    with open_shard(url) as f, _tar_errors(url), tarfile.open(fileobj=f, mode="r|") as tar:
        yield from _walk(tar, url, want)


def _raise(exc: Exception) -> None:
    raise exc


def _grouped(
    url: str, on_error: Callable[[Exception], object], keep_partial: bool
) -> Iterator[RawSample]:
    """Consecutive members sharing a key -> RawSample. Read errors raise ShardError (after
    the sample in progress, with ``keep_partial``); a member twice goes to ``on_error``."""
    sample: RawSample | None = None
    with contextlib.closing(iter_entries(url)) as entries:
        while True:
            try:
                entry = next(entries, None)
            except Exception as exc:
                if keep_partial and sample is not None:
                    yield sample  # read before the damage; its decoder judges whether it is whole
                if isinstance(exc, ShardError):
                    raise
                # remote filesystems raise their own types
                raise ShardError(f"{url}: cannot read: {type(exc).__name__}: {exc}") from None
            if entry is None:
                break
            if sample is None or entry.key != sample.key:
                if sample is not None:
                    yield sample
                sample = RawSample(entry.key, {}, url)
            if entry.suffix in sample.members:
                on_error(ShardError(f"{url}: member {entry.name} appears twice"))
                continue  # the first one stays
            assert entry.data is not None, "a walk without want reads every member"
            sample.members[entry.suffix] = entry.data
    if sample is not None:
        yield sample


def iter_raw(url: str) -> Iterator[RawSample]:
    """The samples of one shard, in order; raises :class:`ShardError` at any damage
    (a member that appears twice included)."""
    return _grouped(url, _raise, keep_partial=False)


def stream_raw(urls: Iterable[str], on_error: Callable[[Exception], object]) -> Iterator[RawSample]:
    """The samples of many shards, in order, whatever the damage.

    A shard that does not open or read, and a member that appears twice, go to
    ``on_error`` (which may raise to stop the stream); the stream goes on with the
    next member or shard. The samples read before a shard's damage are kept.
    """
    for url in urls:
        try:
            yield from _grouped(url, on_error, keep_partial=True)
        except ShardError as exc:
            on_error(exc)


def iter_samples(url: str) -> Iterator[schema.Sample]:
    """Decoded (checked) samples of one shard; raises ShardError or schema.SampleError."""
    for raw in iter_raw(url):
        yield decode_sample(raw.key, raw.members)


def json_only(_key: str, suffix: str) -> bool:
    return suffix == schema.JSON_MEMBER


def first_meta(url: str) -> schema.SampleMeta:
    """The metadata of a shard's first sample, read no further than its ``.json`` member;
    raises ShardError or schema.SampleError."""
    for entry in iter_entries(url, want=json_only):
        if entry.data is not None:
            return parse_meta(entry.data, where=f"{url}: {entry.key}.json")
    raise ShardError(f"{url}: no sample with a .json member")


# --- Scanning a whole tar, end included (inspect, verify, show, sample) ---

END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE  # two zero blocks close a tar


class TarScan:
    """One pass over a tar: its regular-file members, then a check of what follows them.

    ``want(key, suffix)`` says whose data to read (all when ``want`` is None);
    other members are seeked past, so a scan for ``.json`` members reads little
    more than the headers. Iterating raises :class:`ShardError` when the tar is
    missing, not a tar, truncated (inside a member, or before its end-of-archive
    blocks), or has anything but zero padding after them (garbage appended,
    which :mod:`tarfile` alone would silently ignore). After a complete pass,
    ``size`` is the file's length in bytes and ``other`` names members that
    are not regular files (directories, links), which nothing reads.
    """

    def __init__(self, url: str, want: Want | None = None) -> None:
        self.url = url
        self.want = want
        self.size: int | None = None
        self.other: list[str] = []

    def __iter__(self) -> Iterator[Entry]:
        with open_shard(self.url) as raw, _seekable(raw) as f:
            with _tar_errors(self.url), tarfile.open(fileobj=f, mode="r:") as tar:
                yield from _walk(tar, self.url, self.want, self.other)
                end = tar.offset  # where the header after the last member was sought
            self.size = self._check_end(f, end)

    def _check_end(self, f, end: int) -> int:
        """Zero blocks and zero padding only after ``end``; returns the file size."""
        f.seek(end)
        pos = end
        while chunk := f.read(1 << 20):
            zeros = len(chunk) - len(chunk.lstrip(b"\0"))
            if zeros < len(chunk):
                first = pos + zeros
                f.seek(0, 2)
                raise ShardError(
                    f"{self.url}: {f.tell() - first} bytes of garbage after the last member "
                    f"(at offset {first}; the archive ends at {end})"
                )
            pos += len(chunk)
        if pos - end < END_OF_ARCHIVE:
            raise ShardError(
                f"{self.url}: truncated (no end-of-archive blocks after offset {end}; "
                f"file is {pos} bytes)"
            )
        return pos


def _seekable(raw) -> contextlib.AbstractContextManager:
    """``raw`` itself when it can seek, else a spooled copy (memory, then a temp file)."""
    try:
        if raw.seekable():
            return contextlib.nullcontext(raw)
    except (AttributeError, OSError, ValueError):
        pass
    # The tar as a whole, never its members: names in it are never used as paths.
    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 (the caller's with closes it)
    shutil.copyfileobj(raw, spool, 1 << 20)
    spool.seek(0)
    return spool
