"""What a command-line PATH names: shard URLs, and the output folder holding their manifest.

PATH is an output folder (``out/``: every ``*.tar`` in it, and its manifest),
or a shard spec (``out/shard-{000..009}.tar``, ``out/*.tar``, one file, or any
fsspec URL of those), in which case the manifest is looked for in the folder
that holds the shards.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass

import braceexpand
import fsspec
import pyarrow as pa

from shards import layout, manifest
from shards.layout import shard_name
from shards.manifest import ManifestRow

log = logging.getLogger(__name__)


class LocateError(ValueError):
    """PATH names nothing that can be read; the message says what was looked for."""


@dataclass(slots=True)
class Target:
    spec: str  # PATH as given
    urls: list[str]  # the shards, in order
    root: str | None  # the folder with manifest.parquet and/or _index/, when there is one
    whole: bool  # urls are every shard of root (not a selection)

    @property
    def names(self) -> list[str]:
        return [shard_name(u) for u in self.urls]


def locate(spec: str) -> Target:
    """Resolve PATH; raises :class:`LocateError` when it names nothing."""
    if not spec:
        raise LocateError("empty path")
    single = next(iter(braceexpand.braceexpand(spec)))
    fs, path = fsspec.core.url_to_fs(single)
    is_pattern = single != spec or any(c in path for c in "*?[")
    if not is_pattern and fs.isdir(path):
        urls = layout.expand(spec)
        has = layout.has_manifest(fs, path)
        if not urls and not has:
            raise LocateError(f"{spec}: folder holds no shards (*.tar) and no manifest")
        return Target(spec, urls, spec.rstrip("/") if has else None, whole=True)
    urls = layout.expand(spec)
    if not urls:
        raise LocateError(f"{spec}: no shards match")
    if not any(fs.exists(fsspec.core.url_to_fs(u)[1]) for u in urls):
        what = "no such file" if len(urls) == 1 else f"none of the {len(urls)} shards exists"
        raise LocateError(f"{spec}: {what}")
    parents = {posixpath.dirname(u) for u in urls}
    root = None
    if len(parents) == 1:
        parent = parents.pop()
        if layout.has_manifest(fs, fsspec.core.url_to_fs(parent or ".")[1]):
            root = parent or "."
    return Target(spec, urls, root, whole=False)


@dataclass(slots=True)
class ManifestView:
    """The rows a tool compares with the shards."""

    path: str  # manifest.parquet's URL (it may not exist when only _index/ does)
    state: dict[str, ManifestRow]  # manifest.load_state: the current row of each video
    consolidated: list[ManifestRow] | None  # manifest.parquet's rows as stored; None if absent
    existing: set[str]  # shard names present in the folder


def load_manifest(root: str) -> ManifestView:
    """Read the manifest and index of ``root``; raises :class:`LocateError` when unreadable."""
    fs, path = layout.open_output(root)
    mpath = layout.manifest_path(root)
    try:
        state = manifest.load_state(root)
        consolidated = None
        local_mpath = layout.manifest_path(path)
        if fs.exists(local_mpath):
            consolidated = manifest.read_rows(fs, local_mpath)
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise LocateError(f"{mpath}: manifest does not read: {exc}") from None
    existing = layout.shard_names(fs, path)
    return ManifestView(mpath, state, consolidated, existing)
