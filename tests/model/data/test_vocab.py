"""Transcripts read from shards and the share of sub-segments a tokenizer cuts: on the demo
corpus's narration, the learned BPE cuts fewer than bytes, and within the 5% target."""

from __future__ import annotations

import pytest

from model.config import ModelConfig
from model.data.collate import tokenize_words
from model.data.tokenizer import ByteTokenizer, train_bpe
from model.data.vocab import (
    ReadCount,
    cell_lengths,
    length_keeping,
    truncated_share,
    window_cells,
)
from shards.layout import find_shards
from shards.reader import iter_samples
from tests.helpers import write_narrated_shards

TINY_LEN = ModelConfig.from_name("tiny").max_text_len


@pytest.fixture(scope="module")
def narrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("narrated")
    windows = write_narrated_shards(out, 6)
    return out, windows


def test_the_bpe_cuts_fewer_sub_segments_than_bytes_on_generated_narration(narrated):
    out, windows = narrated
    count = ReadCount()
    cells = [c for window in window_cells(find_shards(str(out)), count) for c in window]
    assert count.windows == windows and count.bad == 0
    assert cells and all(words for words in cells)
    bpe = train_bpe((" " + " ".join(words) for words in cells), vocab_size=2048)
    by_bpe, by_bytes = cell_lengths(cells, bpe), cell_lengths(cells, ByteTokenizer())
    cut_bpe, cut_bytes = truncated_share(by_bpe, TINY_LEN), truncated_share(by_bytes, TINY_LEN)
    assert cut_bpe < cut_bytes, (cut_bpe, cut_bytes)
    assert cut_bpe <= 0.05, f"the tiny preset's max_text_len {TINY_LEN} cuts {cut_bpe:.1%}"
    assert cut_bytes > 0.05, "bytes need more than the tiny preset's length on this corpus"
    assert length_keeping(by_bpe, 0.95) < length_keeping(by_bytes, 0.95)


def test_length_keeping_is_the_shortest_length_within_the_share():
    lengths = [1, 2, 2, 3, 3, 3, 4, 5, 8, 20]
    assert length_keeping(lengths, 0.9) == 8
    assert truncated_share(lengths, 8) <= 0.1 < truncated_share(lengths, 7)
    assert length_keeping(lengths, 1.0) == 20 and truncated_share(lengths, 20) == 0.0
    assert length_keeping([], 0.95) == 1 and truncated_share([], 4) == 0.0


def test_an_unreadable_shard_is_counted_and_the_others_still_read(narrated, tmp_path):
    out, windows = narrated
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 64)
    count = ReadCount()
    read = list(window_cells([str(bad), *find_shards(str(out))], count))
    assert len(read) == count.windows == windows
    assert count.bad >= 1 and count.last_error


def test_the_lengths_measured_are_what_the_loader_keeps(narrated):
    """A cell's measured need, cut at max_text_len, is the number of tokens the loader places."""
    out, _ = narrated
    bpe = train_bpe(["now a red circle appears next comes a blue square"] * 5, vocab_size=300)
    for tok in (ByteTokenizer(), bpe):
        for sample in iter_samples(find_shards(str(out))[0]):
            meta = sample.meta
            cells = {}
            for w in meta.words:
                cells.setdefault((w.segment, w.subsegment), []).append(w.text)
            _, mask = tokenize_words(meta.words, tok, meta.n_segments, TINY_LEN)
            for (seg, sub), words in cells.items():
                (need,) = cell_lengths([words], tok)
                assert mask[seg, sub].sum() == min(need, TINY_LEN)
            assert mask.sum() == sum(min(n, TINY_LEN) for n in cell_lengths(cells.values(), tok))
