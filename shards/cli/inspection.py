"""``inspect``: what a set of shards holds, from the ``.json`` members and the manifest.

The scan reads each shard's headers and its ``.json`` members only (the other
members are seeked past), so it is fast; :mod:`shards.verify` is the full check.
(Named ``inspection`` so that it never shadows the standard library's ``inspect``.)
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from shards import reader, schema
from shards.cli.locate import LocateError, ManifestView, Target, load_manifest
from shards.cli.progress import progress_bar
from shards.decode import parse_meta
from shards.layout import shard_name

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ShardStats:
    name: str
    bytes: int = 0
    samples: int = 0
    videos: int = 0
    words: int = 0
    window_ms: int = 0  # sum of the samples' window lengths
    error: str = ""  # why the shard could not be read to its end
    bad_samples: int = 0  # samples whose json is missing, does not parse or mistypes a field


@dataclass(slots=True)
class Problem:
    shard: str
    key: str
    reason: str


@dataclass(slots=True)
class ManifestSummary:
    path: str
    videos: int
    statuses: dict[str, int]  # status -> videos
    reasons: dict[str, dict[str, int]]  # status -> "stage/reason" -> videos
    ok_hours: float  # duration of the videos whose status is ok


@dataclass(slots=True)
class Report:
    spec: str
    shards: list[ShardStats]
    videos: int
    video_ms: int  # union of the windows of each video (overlapping windows count once)
    manifest: ManifestSummary | None
    problems: list[Problem] = field(default_factory=list)
    selection: bool = False  # the shards are some of a folder's; the manifest covers it all

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    @property
    def words(self) -> int:
        return sum(s.words for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def size_spread(self) -> dict[str, float]:
        sizes = [s.bytes for s in self.shards if not s.error]
        if not sizes:
            return {"mean": 0.0, "sd": 0.0, "min": 0.0, "max": 0.0}
        sd = statistics.pstdev(sizes) if len(sizes) > 1 else 0.0
        return {"mean": statistics.fmean(sizes), "sd": sd, "min": min(sizes), "max": max(sizes)}

    def to_dict(self) -> dict:
        return {
            "path": self.spec,
            "totals": {
                "shards": len(self.shards),
                "samples": self.samples,
                "videos": self.videos,
                "hours": self.video_ms / 3_600_000,
                "words": self.words,
                "bytes": self.bytes,
                "shard_bytes": self.size_spread(),
            },
            "manifest": asdict(self.manifest) if self.manifest else None,
            "manifest_covers_more_shards": self.selection,
            "shards": [asdict(s) for s in self.shards],
            "problems": [asdict(p) for p in self.problems],
        }


def _union_ms(spans: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(spans):
        if end is None or a >= end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


class _Scanner:
    """Accumulates statistics over the shards, one json at a time."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.problems: list[Problem] = []

    def shard(self, url: str) -> ShardStats:
        stats = ShardStats(shard_name(url))
        scan = reader.TarScan(url, want=reader.json_only)
        keys: set[str] = set()
        with_json: set[str] = set()
        videos: set[str] = set()
        try:
            for entry in scan:
                keys.add(entry.key)
                if entry.data is None:
                    continue
                with_json.add(entry.key)
                try:
                    meta = parse_meta(entry.data, where=f"{entry.key}.json")
                except schema.SampleError as exc:
                    stats.bad_samples += 1
                    self.problems.append(Problem(stats.name, entry.key, str(exc)))
                    continue
                videos.add(meta.video_id)
                stats.words += len(meta.words)
                stats.window_ms += meta.end_ms - meta.start_ms
                self.spans[meta.video_id].append((meta.start_ms, meta.end_ms))
            stats.bytes = scan.size or 0
        except reader.ShardError as exc:
            stats.error = str(exc).removeprefix(f"{url}: ")
            self.problems.append(Problem(stats.name, "", stats.error))
        for key in sorted(keys - with_json):
            stats.bad_samples += 1
            self.problems.append(Problem(stats.name, key, "no .json member"))
        stats.samples = len(keys)
        stats.videos = len(videos)
        return stats


def summarize_manifest(view: ManifestView) -> ManifestSummary:
    statuses: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    ok_ms = 0
    for row in view.state.values():
        statuses[row.status] += 1
        if row.status == "ok":
            ok_ms += row.duration_ms
        else:
            reasons[row.status][f"{row.stage or '?'}/{row.reason or '?'}"] += 1
    return ManifestSummary(
        path=view.path,
        videos=len(view.state),
        statuses=dict(statuses),
        reasons={s: dict(c.most_common()) for s, c in reasons.items()},
        ok_hours=ok_ms / 3_600_000,
    )


def inspect_shards(target: Target, quiet: bool = True) -> Report:
    """Scan every shard of ``target`` and summarize its manifest when there is one."""
    scanner = _Scanner()
    stats = []
    with progress_bar(len(target.urls), "inspect", unit="shard", quiet=quiet) as bar:
        for url in target.urls:
            stats.append(scanner.shard(url))
            bar.update(1, samples=stats[-1].samples)
    summary = None
    if target.root is not None:
        try:
            summary = summarize_manifest(load_manifest(target.root))
        except LocateError as exc:
            scanner.problems.append(Problem("manifest", "", str(exc)))
    video_ms = sum(_union_ms(spans) for spans in scanner.spans.values())
    return Report(
        target.spec, stats, len(scanner.spans), video_ms, summary, scanner.problems,
        selection=not target.whole,
    )  # fmt: skip


# --- Text output ---


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_report(report: Report, table: bool = True) -> str:
    spread = report.size_spread()
    hours = report.video_ms / 3_600_000
    lines = [
        f"{'shards':<9}{len(report.shards):>12,}",
        f"{'samples':<9}{report.samples:>12,}",
        f"{'videos':<9}{report.videos:>12,}",
        f"{'hours':<9}{hours:>12,.2f}   (video covered by the samples)",
        f"{'words':<9}{report.words:>12,}",
        f"{'bytes':<9}{human_bytes(report.bytes):>12}   per shard: mean "
        f"{human_bytes(spread['mean'])}, sd {human_bytes(spread['sd'])}, "
        f"min {human_bytes(spread['min'])}, max {human_bytes(spread['max'])}",
    ]
    m = report.manifest
    lines.append("")
    if m is None:
        lines.append("manifest: none beside the shards")
    else:
        scope = " (the whole folder, not only these shards)" if report.selection else ""
        lines.append(f"manifest: {m.path}: {m.videos:,} videos, {m.ok_hours:,.2f} h ok{scope}")
        for status in ("ok", "skipped", "failed"):
            count = m.statuses.get(status, 0)
            detail = ", ".join(f"{r} {n:,}" for r, n in m.reasons.get(status, {}).items())
            lines.append(f"  {status:<8}{count:>8,}   {detail}".rstrip())
    if table and report.shards:
        lines.append("")
        width = max(len("shard"), *(len(s.name) for s in report.shards))
        lines.append(
            f"{'shard':<{width}}  {'bytes':>9}  {'samples':>7}  {'videos':>6}  "
            f"{'words':>8}  {'hours':>6}  problem"
        )
        for s in report.shards:
            problem = s.error or (f"{s.bad_samples} bad samples" if s.bad_samples else "")
            lines.append(
                f"{s.name:<{width}}  {human_bytes(s.bytes):>9}  {s.samples:>7,}  {s.videos:>6,}  "
                f"{s.words:>8,}  {s.window_ms / 3_600_000:>6.2f}  {problem}".rstrip()
            )
    return "\n".join(lines) + "\n"
