"""Reading shards: resolve shard specs and stream samples out of tar files.

Nothing here extracts members to disk: members are read into memory by name,
so a member called ``../../etc/passwd`` is just an odd key.
"""

from __future__ import annotations

import logging
import posixpath
import tarfile
from collections.abc import Iterator
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
