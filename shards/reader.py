"""Reading shards: resolve shard specs and stream samples out of tar files.

Nothing here extracts members to disk: members are read into memory by name,
so a member called ``../../etc/passwd`` is just an odd key.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import braceexpand
import fsspec

from shards import schema
from shards.manifest import open_output

log = logging.getLogger(__name__)


class ShardError(ValueError):
    """A shard cannot be read as a tar (missing, truncated, not a tar)."""


def expand(spec: str) -> list[str]:
    """Shard URLs for a folder, a brace pattern, a glob, or one file (local or fsspec).

    ``out/`` -> every ``*.tar`` directly in it, sorted; ``out/shard-{000..009}.tar``
    -> those names; ``gs://bucket/x/*.tar`` -> the glob's matches.
    """
    urls: list[str] = []
    for one in braceexpand.braceexpand(spec):
        fs, path = fsspec.core.url_to_fs(one)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(c in path for c in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(fs.glob(posixpath.join(path.rstrip("/"), "*.tar")))
        else:
            found = [path]
        urls.extend(prefix + p if prefix and not p.startswith(prefix) else p for p in found)
    return urls


@dataclass(slots=True)
class Member:
    key: str
    suffix: str
    data: bytes


def split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the basename up to its first dot."""
    dirname, base = posixpath.split(name)
    key, _, suffix = base.partition(".")
    return (posixpath.join(dirname, key) if dirname else key), suffix


def iter_members(url: str) -> Iterator[Member]:
    """Every regular-file member of a tar, in order; raises :class:`ShardError`."""
    fs, path = open_output(url)
    try:
        f = fs.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ShardError(f"{url}: cannot open: {exc}") from None
    with f:
        try:
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    fh = tar.extractfile(info)
                    data = fh.read() if fh is not None else b""
                    if len(data) != info.size:
                        raise ShardError(f"{url}: truncated inside member {info.name}")
                    key, suffix = split_name(info.name)
                    yield Member(key, suffix, data)
        except tarfile.ReadError as exc:
            raise ShardError(f"{url}: not a readable tar ({exc})") from None
        except (EOFError, tarfile.StreamError) as exc:
            raise ShardError(f"{url}: truncated ({exc})") from None


def iter_grouped(url: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) for consecutive members sharing a key."""
    key: str | None = None
    group: dict[str, bytes] = {}
    for m in iter_members(url):
        if m.key != key:
            if key is not None:
                yield key, group
            key, group = m.key, {}
        if m.suffix in group:
            raise ShardError(f"{url}: member {m.key}.{m.suffix} appears twice")
        group[m.suffix] = m.data
    if key is not None:
        yield key, group


def iter_samples(url: str) -> Iterator[schema.Sample]:
    """Decoded samples of one shard; raises ShardError or schema.SampleError."""
    for key, members in iter_grouped(url):
        yield schema.decode(key, members)


# --- Scanning a whole tar, end included (used by the inspect / verify tools) ---

END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE  # two zero blocks close a tar


@dataclass(slots=True)
class Entry:
    """One regular-file member as scanned; ``data`` only when the caller asked for it."""

    key: str
    suffix: str
    name: str
    size: int
    data: bytes | None


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

    def __init__(self, url: str, want: Callable[[str, str], bool] | None = None) -> None:
        self.url = url
        self.want = want
        self.size: int | None = None
        self.other: list[str] = []

    def __iter__(self) -> Iterator[Entry]:
        fs, path = open_output(self.url)
        try:
            raw = fs.open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise ShardError(f"{self.url}: cannot open: {exc.strerror or exc}") from None
        with raw, _seekable(raw) as f:
            try:
                with tarfile.open(fileobj=f, mode="r:") as tar:
                    yield from self._members(tar)
                    end = tar.offset  # where the header after the last member was sought
            except tarfile.ReadError as exc:
                if "unexpected end of data" in str(exc):
                    raise ShardError(f"{self.url}: truncated (data ends inside a member)") from None
                raise ShardError(f"{self.url}: not a tar ({exc})") from None
            except (EOFError, tarfile.TarError) as exc:
                raise ShardError(f"{self.url}: truncated ({exc})") from None
            except OSError as exc:
                raise ShardError(f"{self.url}: cannot read: {exc}") from None
            self.size = self._check_end(f, end)

    def _members(self, tar: tarfile.TarFile) -> Iterator[Entry]:
        for info in tar:
            if not info.isfile():
                self.other.append(info.name)
                continue
            key, suffix = split_name(info.name)
            data = None
            if self.want is None or self.want(key, suffix):
                fh = tar.extractfile(info)
                data = fh.read() if fh is not None else b""
                if len(data) != info.size:
                    raise ShardError(f"{self.url}: truncated inside member {info.name}")
            yield Entry(key, suffix, info.name, info.size, data)

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
