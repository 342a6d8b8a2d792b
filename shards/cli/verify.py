"""``verify``: read every shard to its end and every sample against the format.

Per shard: the tar is whole (no truncation, nothing after its end-of-archive
blocks), members are regular files named ``<key>.<suffix>`` with a valid key,
a sample's members are contiguous and appear once. Per sample: every member
the json implies is there and nothing else, JPEGs decode (and have the frame
size the json states), the mel loads with the json's shape and dtype, and the
invariants of :func:`shards.schema.check` hold, plus: each word's centre lies
in its segment and (segment, sub-segment) never decreases. Members are read as
:mod:`shards.decode` reads them (every json field type- and range-checked, a size
that a header declares held against the bytes or a cap before anything is
allocated), so what training would skip is reported here. Then the manifest
against the shards: every ``ok`` row's windows are present where the row says,
and no sample lacks an ``ok`` row that names its shard.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
from collections import defaultdict
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from shards import reader, schema
from shards.cli.locate import LocateError, ManifestView, Target, load_manifest
from shards.cli.progress import progress_bar
from shards.decode import MemberError, open_frame, parse_meta, read_npy
from shards.layout import shard_name

log = logging.getLogger(__name__)

MANIFEST = "manifest"  # the "shard" column of problems found in the manifest


@dataclass(slots=True, frozen=True)
class Problem:
    shard: str  # shard name, or "manifest"
    key: str  # sample key, video id, or "" for the shard as a whole
    reason: str

    def __str__(self) -> str:
        return f"{self.shard}: {self.key or '-'}: {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    spec: str
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    manifest: str | None = None  # the manifest checked, if any
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"ok": self.ok}


# --- One sample ---


def _check_jpeg(data: bytes, params: schema.ExtractionParams | None) -> str | None:
    try:
        with open_frame(data) as img:  # a JPEG whose declared size is checked; not decoded yet
            size = img.size
            # Decode every entropy-coded block, but skip the full-size inverse DCT:
            # twice as fast, and truncated or corrupt data fails all the same.
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except MemberError as exc:
        return str(exc)
    except (OSError, ValueError, SyntaxError) as exc:
        return f"does not decode as an image ({exc})"
    if params is not None:
        short, long = min(size), max(size)
        if short != params.frame_short_side or long > params.frame_max_long_side:
            return (
                f"is {size[0]}x{size[1]}, expected short side {params.frame_short_side} "
                f"and long side <= {params.frame_max_long_side}"
            )
    return None


def _load_mel(data: bytes) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_npy(data), None  # never bigger than the member, whatever its header says
    except MemberError as exc:
        return None, f".{schema.MEL_MEMBER} does not load ({exc})"


def _word_problems(meta: schema.SampleMeta) -> list[str]:
    """What schema.check leaves out: words sit in their segment, in segment order."""
    last = (0, 0)
    for i, w in enumerate(meta.words):
        if not (0 <= w.segment < meta.n_segments and 0 <= w.subsegment < meta.params.subsegments):
            return []  # schema.check reports this one
        s, e = meta.segments[w.segment]
        if not 2 * s <= w.start_ms + w.end_ms < 2 * e:
            return [
                f"word {i} {w.text!r} [{w.start_ms}, {w.end_ms}] is not in its segment [{s}, {e})"
            ]
        if (w.segment, w.subsegment) < last:
            return [f"word {i} {w.text!r} goes back to segment {w.segment}.{w.subsegment}"]
        last = (w.segment, w.subsegment)
    return []


def check_sample(key: str, members: dict[str, bytes]) -> list[str]:
    """Every problem of one sample, given its members' bytes by suffix; [] when whole."""
    return _check_sample(key, members)[0]


def _check_sample(
    key: str, members: dict[str, bytes]
) -> tuple[list[str], schema.SampleMeta | None]:
    problems: list[str] = []
    if not schema.KEY_RE.match(key):
        problems.append("key has characters outside [A-Za-z0-9_-]")
    meta = None
    if schema.JSON_MEMBER not in members:
        problems.append("no .json member")
    else:
        try:
            meta = parse_meta(members[schema.JSON_MEMBER], where=".json")
        except schema.SampleError as exc:
            problems.append(str(exc))
    params = meta.params if meta is not None else None
    for suffix, data in sorted(members.items()):
        if schema.FRAME_MEMBER_RE.match(suffix) and (why := _check_jpeg(data, params)):
            problems.append(f".{suffix} {why}")
    mel, why = None, None
    if schema.MEL_MEMBER in members:
        mel, why = _load_mel(members[schema.MEL_MEMBER])
        if why:
            problems.append(why)
    if meta is None:
        return problems, None

    if schema.KEY_RE.match(key) and meta.key != key:
        problems.append(f"json names key {meta.key!r}")
    expected = {schema.JSON_MEMBER, *(schema.frame_member(i) for i in range(meta.n_segments))}
    if meta.has_audio:
        expected.add(schema.MEL_MEMBER)
    for suffix in sorted(expected - set(members)):
        if suffix != schema.MEL_MEMBER:  # a missing mel is schema.check's "has_audio but no mel"
            problems.append(f"member .{suffix} missing")
    problems += [f"unexpected member .{s}" for s in sorted(set(members) - expected - {"mel.npy"})]
    checked = meta
    if why:  # the mel is there but unreadable: check the rest as if the sample had no audio
        checked = dataclasses.replace(meta, has_audio=False, mel_shape=None, mel_scale=None)
    frames = [members.get(schema.frame_member(i), b"") for i in range(meta.n_segments)]
    try:
        schema.check(schema.Sample(meta=checked, frames=frames, mel=mel))
    except schema.SampleError as exc:
        problems.append(str(exc).removeprefix(f"{meta.key}: "))
    return problems + _word_problems(meta), meta


# --- One shard ---


@dataclass(slots=True)
class _Seen:
    """What the shards hold, for the manifest check: video -> shard -> window indices."""

    windows: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    first_key: dict[tuple[str, str], str] = field(default_factory=dict)  # (video, shard) -> key
    where: dict[str, str] = field(default_factory=dict)  # key -> first shard holding it


@dataclass(slots=True)
class ShardResult:
    """One shard's findings, independent of every other shard (see ``_merge``)."""

    name: str
    samples: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    # each checked sample in shard order: (key, video id, window); video None if no valid json
    held: list[tuple[str, str | None, int]] = field(default_factory=list)


def verify_shard(url: str) -> ShardResult:
    """Read one shard to its end and check every sample in it; needs nothing of other shards."""
    result = ShardResult(shard_name(url))
    name, problems = result.name, result.problems
    scan = reader.TarScan(url)
    done: set[str] = set()  # keys whose members are behind us in this shard
    key: str | None = None
    stray = False  # the current group repeats a key seen earlier: reported, not checked
    group: dict[str, bytes] = {}

    def finish(cut: bool = False) -> None:
        if key is None or stray:
            return
        result.samples += 1
        whys, meta = _check_sample(key, group)
        if cut and whys:  # the tar's damage cut this sample short; that is the one problem
            whys = [f"cut short where the shard is damaged ({len(whys)} problems)"]
        problems.extend(Problem(name, key, why) for why in whys)
        result.held.append((key, None, 0) if meta is None else (key, meta.video_id, meta.window))

    try:
        for entry in scan:
            if entry.key != key:
                finish()
                stray = entry.key in done
                if stray:
                    problems.append(Problem(name, entry.key, "members are not contiguous"))
                done.add(entry.key)
                key, group = entry.key, {}
            if entry.suffix in group:
                problems.append(Problem(name, key, f"member .{entry.suffix} appears twice"))
            assert entry.data is not None, "a scan without want reads every member"
            group[entry.suffix] = entry.data
        result.bytes += scan.size or 0
        finish()
    except reader.ShardError as exc:
        problems.append(Problem(name, "", str(exc).removeprefix(f"{url}: ")))
        finish(cut=True)
    problems.extend(Problem(name, "", f"member {n!r} is not a regular file") for n in scan.other)
    return result


def _merge(result: ShardResult, seen: _Seen, report: VerifyReport) -> None:
    """Add one shard's findings, in shard order: a key an earlier shard holds is a duplicate."""
    name = result.name
    report.shards += 1
    report.samples += result.samples
    report.bytes += result.bytes
    report.problems += result.problems
    for key, video, window in result.held:
        if key in seen.where:
            report.problems.append(Problem(name, key, f"sample also in {seen.where[key]}"))
            continue
        seen.where[key] = name
        if video is not None:
            seen.windows[video][name].append(window)
            seen.first_key.setdefault((video, name), key)


# --- The manifest against the shards ---


def check_manifest(view: ManifestView, target: Target, seen: _Seen) -> list[Problem]:
    problems: list[Problem] = []
    selected = set(target.names)
    if view.consolidated is not None:
        ids: set[str] = set()
        for row in view.consolidated:
            if row.video_id in ids:
                problems.append(Problem(MANIFEST, row.video_id, "video has two rows"))
            ids.add(row.video_id)
            gone = [s for s in row.shards if s not in view.existing]
            if row.status == "ok" and gone:
                problems.append(
                    Problem(MANIFEST, row.video_id, f"row is ok but names missing shards {gone}")
                )
    # samples without a row that claims them
    for video, by_shard in seen.windows.items():
        row = view.state.get(video)
        for shard in by_shard:
            key = seen.first_key[(video, shard)]
            if row is None:
                problems.append(Problem(shard, key, f"video {video} has no manifest row"))
            elif row.status != "ok":
                problems.append(
                    Problem(shard, key, f"video {video}'s row says {row.status} ({row.reason})")
                )
            elif shard not in row.shards:
                problems.append(Problem(shard, key, f"video {video}'s row names {row.shards}"))
    # ok rows whose windows are not all where the row says
    for row in view.state.values():
        if row.status != "ok":
            continue
        if not row.shards:
            problems.append(Problem(MANIFEST, row.video_id, "row is ok but names no shard"))
            continue
        if not target.whole and not set(row.shards) <= selected:
            continue  # a selection of shards: check only the rows it holds entirely
        found = sorted(w for s in row.shards for w in seen.windows.get(row.video_id, {}).get(s, []))
        want = list(range(row.windows))
        if found != want:
            missing = sorted(set(want) - set(found))
            extra = sorted(set(found) - set(want))
            detail = "; ".join(
                part
                for part in (
                    f"windows {_ranges(missing)} missing" if missing else "",
                    f"windows {_ranges(extra)} not in the row" if extra else "",
                    "a window twice" if len(set(found)) < len(found) else "",
                )
                if part
            )
            where = row.shards[0] if len(row.shards) == 1 else MANIFEST
            problems.append(
                Problem(where, row.video_id, f"row says {row.windows} windows: {detail}")
            )
    return problems


def _ranges(values: list[int]) -> str:
    if len(values) > 6:
        return f"{values[:3]}..{values[-1]} ({len(values)})"
    return str(values)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _pool(workers: int, urls: list[str]) -> Executor:
    """Worker processes, or one thread: tar parsing and checks hold the GIL, so threads
    gain little (1.4x from 2 on 2 cores). A ``memory://`` filesystem exists only in this
    process, so its shards are read here."""
    n = min(workers, max(1, len(urls)))
    if n == 1 or any(urlsplit(u).scheme == "memory" for u in urls):
        return ThreadPoolExecutor(max_workers=1)
    spawn = multiprocessing.get_context("spawn")  # no fork of fsspec's or Arrow's threads
    return ProcessPoolExecutor(max_workers=n, mp_context=spawn, initializer=_ignore_sigint)


def default_workers() -> int:
    """Worker processes for ``verify``: one per usable CPU."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def verify_shards(target: Target, quiet: bool = True, workers: int = 1) -> VerifyReport:
    """Check ``target``'s shards and, when there is one, its manifest.

    ``workers`` processes read and check shards at once; findings are merged in shard
    order, so the report is the same for any number of workers.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    report = VerifyReport(target.spec)
    seen = _Seen()
    pool = _pool(workers, target.urls)
    try:
        with progress_bar(len(target.urls), "verify", unit="shard", quiet=quiet) as bar:
            for result in pool.map(verify_shard, target.urls):
                _merge(result, seen, report)
                bar.update(1, samples=result.samples)
    finally:  # on Ctrl-C, start no new shard; those being read finish first
        pool.shutdown(wait=False, cancel_futures=True)
    if target.root is not None:
        try:
            view = load_manifest(target.root)
        except LocateError as exc:
            report.problems.append(Problem(MANIFEST, "", str(exc)))
        else:
            report.manifest = view.path
            report.problems += check_manifest(view, target, seen)
    return report
