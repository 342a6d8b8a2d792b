"""Where things lie in an output folder and what they are called: the one module that knows.

Layout of an output folder (local or any fsspec URL such as ``gs://`` or ``s3://``)::

    OUT/<prefix>-<part>.tar           complete shards (written under _tmp/, renamed when whole)
    OUT/manifest.parquet              consolidated view: one row per input video
    OUT/_index/<shard>.parquet        rows of the videos inside that shard, written
                                      *before* the shard is renamed into place
    OUT/_index/rows-<run>-<n>.parquet rows of videos that were skipped or failed
    OUT/_tmp/                         partial files; never read

Writers, readers, the manifest and the tools ask this module for every name and
path above; none of them spells one. ``ingest/`` and ``model/`` call the functions
here (``group_prefix``, ``remove_group``, ``expand``) and never name a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable
from typing import BinaryIO

import braceexpand
import fsspec
from fsspec.implementations.local import LocalFileSystem

MANIFEST_NAME = "manifest.parquet"
INDEX_DIR = "_index"
TMP_DIR = "_tmp"
SHARD_SUFFIX = ".tar"
SHARD_GLOB = "*" + SHARD_SUFFIX


def open_output(out: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path) for a local folder or an fsspec URL."""
    fs, root = fsspec.core.url_to_fs(out)
    return fs, root


def read_whole(url: str) -> BinaryIO:
    """A readable file for a local path or fsspec URL. A remote file is fetched whole, now
    (servers without range requests serve it too; nothing is cached by name)."""
    fs, path = fsspec.core.url_to_fs(str(url))
    if isinstance(fs, LocalFileSystem):
        return fs.open(path, "rb")
    return io.BytesIO(fs.cat_file(path))


def write_atomically(url: str, write: Callable[[BinaryIO], None], mark: str = ".tmp-") -> None:
    """Write ``url`` whole or not at all: ``write`` fills ``<url><mark><hex>`` beside it
    (same filesystem, so never a copy across filesystems), which is then renamed over it.
    Temporaries of ``url`` that a killed writer left are removed first (one writer per
    path).
    A local file and its folder are fsynced, so the rename survives a power cut."""
    fs, path = fsspec.core.url_to_fs(str(url))
    folder = posixpath.dirname(path)
    fs.makedirs(folder, exist_ok=True)
    for stale in fs.glob(f"{path}{mark}*"):  # what a writer killed mid-write left
        fs.rm(stale)
    tmp = f"{path}{mark}{uuid.uuid4().hex}"
    local = isinstance(fs, LocalFileSystem)
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
            if local:
                f.flush()
                os.fsync(f.fileno())
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)
    if local:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def join(base: str, *parts: str) -> str:
    """Join URL-or-path parts with '/', whatever the filesystem."""
    return posixpath.join(base.rstrip("/"), *parts) if base else posixpath.join(*parts)


# --- Names ---


def group_prefix(video_ids: Iterable[str]) -> str:
    """The shard prefix of a group of videos, named by its inputs: a retried group
    rewrites the same names instead of adding new ones."""
    digest = hashlib.sha1("\n".join(sorted(video_ids)).encode()).hexdigest()
    return "shard-" + digest[:16]


def shard_file(prefix: str, part: int) -> str:
    """The name of part ``part`` of the shards with ``prefix``."""
    return f"{prefix}-{part:03d}{SHARD_SUFFIX}"


def shard_name(url: str) -> str:
    """A shard's name as the manifest records it: the file name."""
    return posixpath.basename(url)


def index_file(shard: str) -> str:
    """Where the rows of a shard's videos go, relative to the output folder."""
    return posixpath.join(INDEX_DIR, shard.removesuffix(SHARD_SUFFIX) + ".parquet")


def rows_file(run: str, video_ids: Iterable[str]) -> str:
    """Where a batch of rows of videos in no shard (skipped, failed) goes, relative to
    the output folder; the same rows of the same run always get the same name."""
    digest = hashlib.sha1("".join(video_ids).encode()).hexdigest()[:12]
    return posixpath.join(INDEX_DIR, f"rows-{run}-{digest}.parquet")


def temp_path(fs: fsspec.AbstractFileSystem, root: str, name: str) -> str:
    """A fresh temporary path under ``root/_tmp`` (same filesystem, so rename works)."""
    fs.makedirs(join(root, TMP_DIR), exist_ok=True)
    return join(root, TMP_DIR, f"{name}.{uuid.uuid4().hex}")


# --- What a folder holds ---


def shard_paths(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """The complete shards directly in ``root``, sorted."""
    return sorted(fs.glob(join(root, SHARD_GLOB)))


def shard_names(fs: fsspec.AbstractFileSystem, root: str) -> set[str]:
    return {shard_name(p) for p in shard_paths(fs, root)}


def index_paths(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Every index file of ``root``, sorted (so later runs' rows come later)."""
    return sorted(fs.glob(join(root, INDEX_DIR, "*.parquet")))


def manifest_path(root: str) -> str:
    return join(root, MANIFEST_NAME)


def has_manifest(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """``root`` holds a consolidated manifest or an index (rows a manifest is made of)."""
    return fs.exists(manifest_path(root)) or fs.isdir(join(root, INDEX_DIR))


def remove_group(out: str, prefix: str) -> list[str]:
    """Delete the shards with ``prefix`` and their index files; returns the shards removed."""
    fs, root = open_output(out)
    shards = sorted(fs.glob(join(root, f"{prefix}-{SHARD_GLOB}")))
    for path in shards:
        fs.rm(path)
    for path in fs.glob(join(root, INDEX_DIR, f"{prefix}-*.parquet")):
        fs.rm(path)
    return shards


def clear_tmp(out: str) -> list[str]:
    """Delete everything under ``out/_tmp`` (partial files that earlier runs, killed while
    writing, left); returns what was removed. Only for the start of a run: the files of
    a run still writing to ``out`` lie there too."""
    fs, root = open_output(out)
    tmp = join(root, TMP_DIR)
    if not fs.isdir(tmp):
        return []
    found = sorted(fs.ls(tmp, detail=False))
    for path in found:
        fs.rm(path, recursive=True)
    return found


def remove_empty_tmp(fs: fsspec.AbstractFileSystem, root: str) -> None:
    tmp = join(root, TMP_DIR)
    if fs.exists(tmp) and not fs.ls(tmp):
        fs.rm(tmp, recursive=True)


# --- Shard specs ---


def expand(spec: str) -> list[str]:
    """Shard URLs for a folder, a brace pattern, a glob, or one file (local or fsspec).

    ``out/`` -> every ``*.tar`` directly in it, sorted; ``out/shard-{000..009}.tar``
    -> those names; ``gs://bucket/x/*.tar`` -> the glob's matches.
    """
    return [url for url, _ in _expand(spec)]


def _expand(spec: str) -> Iterable[tuple[str, bool]]:
    """(url, listed) for each shard ``spec`` names: listed when a folder listing or a
    glob found it (so it exists), not when the spec names it outright."""
    for one in braceexpand.braceexpand(spec):
        fs, path = fsspec.core.url_to_fs(one)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(c in path for c in "*?["):
            found, listed = sorted(fs.glob(path)), True
        elif fs.isdir(path):
            found, listed = shard_paths(fs, path), True
        else:
            found, listed = [path], False
        for p in found:
            yield (prefix + p if prefix and not p.startswith(prefix) else p), listed


class NoShards(ValueError):
    """A shard spec names no shard that exists; the message is one line saying what was
    looked for."""


def find_shards(spec: str, what: str = "shards") -> list[str]:
    """:func:`expand`, refusing at once a spec that names nothing to read.

    A folder with no ``*.tar`` in it, a pattern or glob that matches none, or a named
    shard that does not exist raises :class:`NoShards` naming ``what`` (the option the
    user gave, e.g. ``data.train_shards``) and the path. Shards named outright (not found
    by a listing or a glob) are checked with one listing per folder, not one request each.
    """
    if not spec:
        raise NoShards(f"{what}: no path given; expected a folder, pattern or URL of *.tar shards")
    found = list(_expand(spec))
    urls = [url for url, _ in found]
    if not urls:
        _, path = fsspec.core.url_to_fs(next(iter(braceexpand.braceexpand(spec))))
        if any(c in path for c in "*?["):
            raise NoShards(f"{what}: {spec}: no shard matches this pattern")
        raise NoShards(f"{what}: {spec}: folder holds no shards (*.tar)")
    missing = _missing([url for url, listed in found if not listed])  # the rest were just listed
    if missing:
        more = f" (and {len(missing) - 1} more of {len(urls)})" if len(missing) > 1 else ""
        kind = "no such file or folder" if len(urls) == 1 else "no such shard"
        raise NoShards(f"{what}: {missing[0]}: {kind}{more}")
    return urls


def _missing(urls: list[str]) -> list[str]:
    """The URLs that do not exist, listing each parent folder once."""
    by_parent: dict[str, list[tuple[str, str]]] = {}
    systems: dict[str, fsspec.AbstractFileSystem] = {}
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        parent = posixpath.dirname(path)
        systems[parent] = fs
        by_parent.setdefault(parent, []).append((url, path))
    missing = []
    for parent, members in by_parent.items():
        fs = systems[parent]
        try:
            present = {p.rstrip("/") for p in fs.ls(parent or ".", detail=False)}
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        for url, path in members:
            # Not every filesystem lists a folder (a web server may not): ask it directly
            # about what the listing did not show.
            if path.rstrip("/") not in present and not fs.exists(path):
                missing.append(url)
    return missing
