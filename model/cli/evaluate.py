"""``python -m model evaluate``: zero-shot retrieval of a checkpoint on held-out shards.

Prints text->video and video->text recall@1/5/10 and median rank (and audio<->video,
text<->audio and text->fused video + audio where the windows have audio and the model
aligns them) over every window of the shards, ranked together. A benchmark
distributed as a CSV of clips (MSR-VTT 1k-A, YouCook2) is first ingested in clip mode
(``python -m ingest.clips``; see the README), then evaluated here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator

from model.cli.common import add_model_arguments, bar, encoder_from
from model.cli.main import CommandError
from model.data.batch import Batch
from model.data.collate import collate, to_example
from model.inference import index
from model.inference.benchmark import evaluate_windows
from shards import layout, schema
from shards.reader import ShardError

log = logging.getLogger(__name__)

HELP = "zero-shot retrieval (recall@1/5/10, median rank) of a checkpoint on held-out shards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="a folder, one shard, a brace pattern, a glob or a URL")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_model_arguments(parser)


def batches(urls: list[str], encoder, counts: dict[str, int]) -> Iterator[Batch]:
    cfg, tok = encoder.loaded.decode, encoder.loaded.tokenizer
    progress = bar(len(urls), "evaluate", "shard")

    def bad(exc: Exception) -> None:
        counts["windows_skipped"] += 1
        log.warning("skipped window: %s", exc)

    for url in urls:
        pending = []
        try:
            for sample in index.read_windows(url, bad):
                try:
                    pending.append(to_example(sample, cfg, tok))
                except schema.SampleError as exc:
                    bad(exc)
                if len(pending) == encoder.batch_size:
                    yield collate(pending)
                    pending = []
        except ShardError as exc:
            counts["shards_skipped"] += 1
            log.warning("skipped shard %s: %s", url, exc)
        if pending:
            yield collate(pending)
        progress.update(1)
    progress.close()


def run(args: argparse.Namespace) -> int:
    try:
        urls = layout.find_shards(args.shards, "shards")
    except layout.NoShards as exc:
        raise CommandError(str(exc)) from None
    encoder = encoder_from(args)
    counts = {"shards_skipped": 0, "windows_skipped": 0}
    try:
        report = evaluate_windows(encoder, batches(urls, encoder, counts))
    except ValueError as exc:
        raise CommandError(f"{args.shards}: {exc}") from None
    if args.json:
        out = {d: s.as_dict() for d, s in report.items()} | counts
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{'direction':<14} {'n':>6} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MedR':>6}")  # noqa: T201
    for d, s in report.items():
        print(  # noqa: T201
            f"{d:<14} {s.n:>6} {100 * s.r1:>6.1f} {100 * s.r5:>6.1f} {100 * s.r10:>6.1f} "
            f"{s.median_rank:>6.1f}"
        )
    if any(counts.values()):
        print(f"skipped: {counts['shards_skipped']} shards, {counts['windows_skipped']} windows")  # noqa: T201
    return 0
