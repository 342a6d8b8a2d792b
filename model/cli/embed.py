"""``python -m model embed``: shards + checkpoint -> an embedding index (Parquet).

One Parquet file per input shard, written whole under its final name only when the
shard is done, so a run that is stopped resumes where it was: shards whose file exists
are skipped (after checking that it came from the same weights). A shard that cannot be
read is skipped and counted, and so is each window that does not decode. The summary
``index.json`` is written last. Layout and columns: model/inference/index.py.
"""

from __future__ import annotations

import argparse
import logging
import sys

from model.cli.common import add_model_arguments, bar, encoder_from
from model.cli.main import CommandError
from model.inference import index
from shards import layout
from shards.reader import ShardError

log = logging.getLogger(__name__)

HELP = "embed every window and segment of some shards into a Parquet index"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", help="a folder, one shard, a brace pattern, a glob or a URL")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the index folder (local or fsspec URL); an existing one is resumed")  # fmt: skip
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        urls = layout.find_shards(args.shards, "shards")
    except layout.NoShards as exc:
        raise CommandError(str(exc)) from None
    encoder = encoder_from(args)
    digest = encoder.loaded.digest
    fs, root = layout.open_output(args.out)
    fs.makedirs(root, exist_ok=True)
    done = resumed = windows = rows = skipped_samples = 0
    bad_shards: list[str] = []
    progress = bar(len(urls), "embed", "shard")
    for url in urls:
        target = layout.join(args.out, index.part_name(url))
        if fs.exists(target):
            if index.file_digest(target) != digest:
                raise CommandError(f"{target}: made with other weights than {args.checkpoint}")
            resumed += 1
            progress.update(1)
            continue
        try:
            table, result = index.embed_shard(encoder, url, args.batch_size)
        except ShardError as exc:
            log.warning("skipped shard %s: %s", url, exc)
            bad_shards.append(layout.shard_name(url))
            progress.update(1)
            continue
        skipped_samples += result.skipped_samples
        for e in result.errors[:3]:
            log.warning("skipped window: %s", e)
        if table is not None:
            index.write_table(table, target)
        done, windows, rows = done + 1, windows + result.windows, rows + result.rows
        progress.update(1)
        progress.set_postfix(windows=windows, refresh=False)
    progress.close()
    index.write_summary(
        args.out,
        {
            "checkpoint": str(args.checkpoint),
            "digest": digest,
            "embed_dim": encoder.embed_dim,
            "shards": len(urls),
            "shards_skipped": sorted(bad_shards),
            "windows_skipped": skipped_samples,
        },
    )
    print(  # noqa: T201
        f"{args.out}: {done} shards embedded ({windows} windows, {rows} rows), "
        f"{resumed} already done, {len(bad_shards)} unreadable shards skipped, "
        f"{skipped_samples} bad windows skipped",
        file=sys.stdout,
    )
    return 0
