"""Ingest at YouTube scale: worker-hours, storage and wall time from measured costs.

Measured here (bench/bench_scale.py writes them; bench/scale-measured.json is the run the
docs quote): CPU seconds per video-minute end to end, Beam's fixed CPU per run, shard
bytes per video-minute, the largest process's peak memory. Assumed (flags, defaults
below): the corpus, video length, what YouTube lets one IP download, the machine type
and prices. Throughput is the least of three ceilings, and the one that binds is named:

- ``cpu``: workers x vCPUs x utilisation / (CPU s per video-minute);
- ``proxies``: egress IPs x videos per IP-hour x minutes per video;
- ``network``: workers x usable bandwidth / (downloaded MB per video-minute).

Dataflow bills every worker for the wall time, busy or waiting on proxies.

    .venv/bin/python bench/cost_model.py bench/scale-measured.json              # the tables
    .venv/bin/python bench/cost_model.py bench/scale-measured.json --write-doc docs/SCALE.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

BEGIN, END = "<!-- cost-model:begin -->", "<!-- cost-model:end -->"
# (workers, proxies)
GRID = ((10, 100), (10, 1000), (25, 1000), (100, 1000), (100, 10000), (250, 10000))


@dataclass(frozen=True, slots=True)
class Measured:
    cpu_s_per_video_min: float
    fixed_cpu_s_per_run: float
    shard_bytes_per_video_min: float
    max_rss_mb: float

    @classmethod
    def from_bench(cls, path: Path) -> Measured:
        data = json.loads(path.read_text())
        return cls(**{f.name: float(data[f.name]) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class Assumptions:
    videos: float = 20e6
    minutes_per_video: float = 8.0  # mean length after the 20-minute filter
    kept: float = 0.8  # share of listed videos that end ok (the rest: unavailable, no captions)
    download_mb_per_video_min: float = 5.0  # <=360p H.264 + AAC, about 0.7 Mbit/s
    videos_per_ip_hour: float = 60.0  # what one IP keeps up without 429s / sign-in walls
    vcpus_per_worker: int = 4  # n2-standard-4
    memory_gb_per_worker: float = 16.0
    utilisation: float = 0.8  # CPU share doing useful work (Beam, bundles, stragglers)
    usable_mbit_s_per_worker: float = 1000.0
    usd_per_vcpu_hour: float = 0.056  # Dataflow batch list prices (us-central1)
    usd_per_gb_hour: float = 0.003557
    usd_per_gb_month: float = 0.020  # GCS standard storage


@dataclass(frozen=True, slots=True)
class Plan:
    workers: int
    proxies: int
    video_min_per_h: dict[str, float]  # each ceiling
    binding: str
    wall_h: float
    worker_hours: float
    compute_usd: float
    cpu_busy: float  # share of the workers' CPU that the binding ceiling leaves busy


def ceilings(m: Measured, a: Assumptions, workers: int, proxies: int) -> dict[str, float]:
    """Video-minutes per hour that each resource allows."""
    cores = workers * a.vcpus_per_worker * a.utilisation
    mb_per_h = workers * a.usable_mbit_s_per_worker / 8 * 3600
    return {
        "cpu": cores * 3600 / m.cpu_s_per_video_min,
        "proxies": proxies * a.videos_per_ip_hour * a.minutes_per_video,
        "network": mb_per_h / a.download_mb_per_video_min,
    }


def plan(m: Measured, a: Assumptions, workers: int, proxies: int) -> Plan:
    limits = ceilings(m, a, workers, proxies)
    binding = min(limits, key=limits.__getitem__)
    # every listed video is fetched at least as far as its info; the kept ones in full
    video_min = a.videos * a.minutes_per_video * a.kept
    wall_h = video_min / limits[binding]
    worker_hours = workers * wall_h
    per_worker_h = (
        a.vcpus_per_worker * a.usd_per_vcpu_hour + a.memory_gb_per_worker * a.usd_per_gb_hour
    )
    return Plan(
        workers=workers,
        proxies=proxies,
        video_min_per_h=limits,
        binding=binding,
        wall_h=wall_h,
        worker_hours=worker_hours,
        compute_usd=worker_hours * per_worker_h,
        cpu_busy=limits[binding] / limits["cpu"],
    )


def workers_to_keep_up(m: Measured, a: Assumptions, proxies: int) -> int:
    """The fewest workers whose CPU keeps up with what ``proxies`` download."""
    per_worker = ceilings(m, a, 1, proxies)
    return math.ceil(per_worker["proxies"] / min(per_worker["cpu"], per_worker["network"]))


def totals(m: Measured, a: Assumptions) -> dict[str, float]:
    video_min = a.videos * a.minutes_per_video * a.kept
    shard_tb = video_min * m.shard_bytes_per_video_min / 1e12
    return {
        "video_hours": video_min / 60,
        "cpu_core_hours": video_min * m.cpu_s_per_video_min / 3600,
        "shard_tb": shard_tb,
        "storage_usd_month": shard_tb * 1000 * a.usd_per_gb_month,
        "download_tb": video_min * a.download_mb_per_video_min / 1e6,
        "memory_gb_per_worker_used": a.vcpus_per_worker * m.max_rss_mb / 1024,
    }


def tables(m: Measured, a: Assumptions, grid=GRID) -> str:
    t = totals(m, a)
    lines = [
        "| measured (bench/scale-measured.json) | value |",
        "|---|---|",
        f"| CPU per video-minute, end to end (marginal) | {m.cpu_s_per_video_min:.2f} CPU s |",
        f"| Beam's fixed cost per run (start-up, imports, first mel) | {m.fixed_cpu_s_per_run:.1f} CPU s |",
        f"| shards per video-minute | {m.shard_bytes_per_video_min / 1e6:.2f} MB |",
        f"| peak memory of the largest process | {m.max_rss_mb:.0f} MB |",
        "",
        "| corpus | value |",
        "|---|---|",
        f"| videos listed / ending ok | {a.videos / 1e6:.0f} M / {a.videos * a.kept / 1e6:.0f} M |",
        f"| video | {t['video_hours'] / 1e6:.2f} M hours |",
        f"| CPU, all of it | {t['cpu_core_hours']:,.0f} core-hours |",
        f"| downloaded | {t['download_tb']:.0f} TB |",
        f"| shards | {t['shard_tb']:.0f} TB, ${t['storage_usd_month']:,.0f} a month |",
        f"| memory per worker ({a.vcpus_per_worker} processes) | {t['memory_gb_per_worker_used']:.1f} of {a.memory_gb_per_worker:.0f} GB |",
        "",
        "| workers | proxies | binds | wall time | worker-hours | compute | CPU busy | workers the proxies need |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for workers, proxies in grid:
        p = plan(m, a, workers, proxies)
        lines.append(
            f"| {workers} | {proxies} | {p.binding} | {p.wall_h / 24:.1f} days "
            f"| {p.worker_hours / 1e3:.1f} k | ${p.compute_usd:,.0f} | {p.cpu_busy:.0%} "
            f"| {workers_to_keep_up(m, a, proxies)} |"
        )
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, text: str) -> None:
    old = doc.read_text()
    start, end = old.index(BEGIN) + len(BEGIN), old.index(END)
    doc.write_text(old[:start] + "\n" + text + old[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("measured", type=Path, help="bench/bench_scale.py's --out JSON")
    parser.add_argument("--write-doc", type=Path, help="replace the tables in this markdown file")
    defaults = Assumptions()
    for f in fields(Assumptions):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)))
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(Assumptions)}
    a = Assumptions(**{k: v for k, v in given.items() if v is not None})
    text = tables(Measured.from_bench(args.measured), a)
    if args.write_doc:
        write_doc(args.write_doc, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
