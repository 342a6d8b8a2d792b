"""``python -m model tokenizer SHARDS``: learn a byte-level BPE from the shards' transcripts.

Reads every window's words (as the loader reads shards), learns a BPE of at most
``--vocab-size`` ids with HF ``tokenizers``, and writes it as ``tokenizer.json`` beside
the shards (or at ``--out``), whole or not at all. Training with ``data.tokenizer: auto``
then uses it. Prints how many sub-segments ``--max-text-len`` tokens cut, with the BPE and
with bytes, and the lengths that keep 95% and 99% of them whole.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from tqdm import tqdm

from model.cli.main import CommandError, MissingExtra
from model.config import ModelConfig
from model.data.tokenizer import TOKENIZER_FILE, ByteTokenizer, Tokenizer, train_bpe
from model.data.vocab import (
    ReadCount,
    cell_lengths,
    length_keeping,
    truncated_share,
    window_cells,
)
from shards.layout import find_shards, join

HELP = "learn a byte-level BPE tokenizer from the transcripts of shards"
DEFAULT_VOCAB = 8192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", metavar="SHARDS", help="folder, pattern or URL of the shards")
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB,
        metavar="N",
        help=f"most ids in all, reserved ones included (default {DEFAULT_VOCAB})",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help=f"where to write it (default: {TOKENIZER_FILE} in the folder of the first shard)",
    )
    parser.add_argument(
        "--max-text-len",
        type=int,
        default=ModelConfig.max_text_len,
        metavar="L",
        help="tokens per sub-segment to report truncation at (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("tokenizers") is None:
        raise MissingExtra("learning a tokenizer needs HF tokenizers: install the 'train' extra")
    if args.max_text_len < 1:
        raise CommandError(f"--max-text-len: must be >= 1, got {args.max_text_len}")
    urls = find_shards(args.shards, "SHARDS")
    out = args.out or join(urls[0].rsplit("/", 1)[0] if "/" in urls[0] else ".", TOKENIZER_FILE)
    count = ReadCount()
    with tqdm(
        desc="reading transcripts",
        unit="window",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    ) as bar:
        windows = list(window_cells(urls, count, progress=bar.update))
    cells = [words for window in windows for words in window]
    if not cells:
        why = f" ({count.bad} unreadable; last: {count.last_error})" if count.bad else ""
        raise CommandError(f"{args.shards}: no transcript words in {len(urls)} shard(s){why}")
    bad = f", {count.bad} samples or shards unreadable" if count.bad else ""
    say(
        f"read {count.windows:,} windows ({len(cells):,} sub-segments with words) "
        f"from {len(urls)} shard(s){bad}"
    )
    texts = (" " + " ".join(words) for words in cells)  # as the loader encodes: " word" each
    bpe = train_bpe(texts, args.vocab_size, path=out)
    say(f"wrote {out}: {bpe.vocab_size:,} ids ({len(bpe.ranks):,} merges)")
    say(report(cells, {"bpe": bpe, "bytes": ByteTokenizer()}, args.max_text_len))
    return 0


def report(cells: list[list[str]], tokenizers: dict[str, Tokenizer], max_len: int) -> str:
    """Truncation at ``max_len`` and the lengths that keep 95% / 99% whole, per tokenizer."""
    lines = []
    for name, tok in tokenizers.items():
        lengths = cell_lengths(cells, tok)
        lines.append(
            f"{name:>5}: max_text_len {max_len} cuts {truncated_share(lengths, max_len):.1%} "
            f"of sub-segments; {length_keeping(lengths, 0.95)} keeps 95% whole, "
            f"{length_keeping(lengths, 0.99)} keeps 99%"
        )
    return "\n".join(lines)


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
