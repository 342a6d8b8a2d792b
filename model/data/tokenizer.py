"""Tokenizers that work offline: bytes by default, a byte-level BPE from a file optionally.

Every tokenizer here keeps the model's two reserved ids: 0 = PAD and 1 = MASK
(model/config.py). Real tokens start at :data:`FIRST_ID` (2): the byte tokenizer maps
byte b to b + 2 (vocab_size 258); the BPE tokenizer maps its own id i to i + 2.

``build_tokenizer(spec)``:

- ``"bytes"`` (default): UTF-8 bytes, no file, no training. Long but lossless.
- a path to a ``tokenizer.json``: a byte-level BPE in the HF ``tokenizers`` file layout
  (``model.type == "BPE"``, ``model.vocab``, ``model.merges``). :func:`train_bpe` writes one
  from a list of texts in pure Python (no extra package). Files written by HF
  ``tokenizers`` for GPT-2 style byte-level BPEs load too; pre-tokenization here uses a
  Python ``re`` approximation of the GPT-2 split pattern (letters / digits / other runs,
  each with an optional leading space), which agrees with it on ordinary words.

The loader tokenizes each transcript word on its own, with a leading space
(:meth:`Tokenizer.encode_word`), so subword boundaries never cross words.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Protocol

PAD_ID = 0
MASK_ID = 1
FIRST_ID = 2  # first id of a real token

# GPT-2's pre-tokenizer pattern with \p{L} -> [^\W\d_] and \p{N} -> \d (stdlib re has no \p).
_SPLIT_RE = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""", re.UNICODE
)


class Tokenizer(Protocol):
    """What the loader needs from a tokenizer."""

    vocab_size: int  # ids are 0 .. vocab_size - 1, including PAD and MASK
    pad_id: int
    mask_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_word(self, word: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes shifted by two: byte b -> id b + 2."""

    vocab_size = 256 + FIRST_ID
    pad_id = PAD_ID
    mask_id = MASK_ID

    def encode(self, text: str) -> list[int]:
        return [b + FIRST_ID for b in text.encode("utf-8")]

    def encode_word(self, word: str) -> list[int]:
        return self.encode(" " + word)

    def decode(self, ids: list[int]) -> str:
        """Ids back to text; PAD, MASK and ids out of range are dropped (debugging aid)."""
        data = bytes(i - FIRST_ID for i in ids if FIRST_ID <= i < self.vocab_size)
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


# ----------------------------------------------------------------------------- byte-level BPE


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _symbols(piece: str) -> list[str]:
    """A pre-token as a list of byte-level characters."""
    table = byte_to_unicode()
    return [table[b] for b in piece.encode("utf-8")]


def pre_tokenize(text: str) -> list[str]:
    return _SPLIT_RE.findall(text)


def merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """Every non-overlapping occurrence of ``pair`` merged, left to right (GPT-2 rule)."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            out.append(parts[i] + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


class BpeTokenizer:
    """Byte-level BPE: merges applied by rank, ids shifted by two (PAD and MASK reserved)."""

    pad_id = PAD_ID
    mask_id = MASK_ID

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        missing = [c for c in byte_to_unicode().values() if c not in vocab]
        if missing:
            raise ValueError(f"model.vocab lacks {len(missing)} of the 256 byte symbols")
        self.vocab = vocab
        self.inverse = {i: s for s, i in vocab.items()}
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.vocab_size = max(vocab.values()) + 1 + FIRST_ID
        self._cache: dict[str, list[int]] = {}
        self._byte_of = {c: b for b, c in byte_to_unicode().items()}

    @classmethod
    def from_file(cls, path: str | Path) -> BpeTokenizer:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        model = raw.get("model", {})
        if model.get("type") != "BPE":
            raise ValueError(f"{path}: model.type is {model.get('type')!r}, only 'BPE' loads")
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        try:
            return cls(dict(model["vocab"]), merges)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def _bpe(self, piece: str) -> list[int]:
        """One pre-token -> ids (cached: transcripts repeat words a lot)."""
        if piece in self._cache:
            return self._cache[piece]
        parts = _symbols(piece)
        while len(parts) > 1:
            ranked = [(self.ranks[p], p) for p in pairwise(parts) if p in self.ranks]
            if not ranked:
                break
            parts = merge_pair(parts, min(ranked)[1])
        ids = [self.vocab[p] + FIRST_ID for p in parts]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for piece in pre_tokenize(text) for i in self._bpe(piece)]

    def encode_word(self, word: str) -> list[int]:
        return self.encode(" " + word)

    def decode(self, ids: list[int]) -> str:
        chars = "".join(self.inverse.get(i - FIRST_ID, "") for i in ids if i >= FIRST_ID)
        data = bytes(self._byte_of[c] for c in chars)
        return data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"BpeTokenizer(vocab_size={self.vocab_size}, merges={len(self.ranks)})"


def train_bpe(texts: list[str], vocab_size: int, path: str | Path | None = None) -> BpeTokenizer:
    """Learn a byte-level BPE with ``vocab_size`` ids in all (PAD and MASK included).

    Counts pairs over distinct pre-tokens weighted by frequency and merges the most
    frequent pair (ties: the smallest pair) until the vocabulary is full or no pair
    occurs twice. Writes an HF-layout ``tokenizer.json`` to ``path`` when given.
    """
    n_merges = vocab_size - FIRST_ID - 256
    if n_merges < 0:
        raise ValueError(f"vocab_size: {vocab_size} < {FIRST_ID + 256} (specials + bytes)")
    counts = Counter(piece for text in texts for piece in pre_tokenize(text))
    words = [_symbols(w) for w in counts]
    freqs = list(counts.values())
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for wi, sym in enumerate(words):
        for p in pairwise(sym):
            pairs[p] += freqs[wi]
            where.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    vocab = {c: i for i, c in enumerate(sorted(byte_to_unicode().values()))}
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and heap:
        neg, best = heapq.heappop(heap)
        if pairs.get(best, 0) != -neg:  # stale heap entry
            continue
        if -neg < 2:
            break
        merges.append(best)
        vocab.setdefault(best[0] + best[1], len(vocab))
        for wi in list(where.pop(best, ())):
            _merge_word(words, freqs, wi, best, pairs, where, heap)
        pairs.pop(best, None)
    tok = BpeTokenizer(vocab, merges)
    if path is not None:
        save_bpe(tok, path)
    return tok


def _merge_word(words, freqs, wi, pair, pairs, where, heap) -> None:
    """Apply one merge to word ``wi`` and update the pair counts it touched."""
    old = words[wi]
    new = merge_pair(old, pair)
    f = freqs[wi]
    for p in pairwise(old):
        pairs[p] -= f
    for p in pairwise(new):
        pairs[p] += f
        where.setdefault(p, set()).add(wi)
    for p in set(pairwise(new)) | set(pairwise(old)):
        if p != pair and pairs[p] > 0:
            heapq.heappush(heap, (-pairs[p], p))
    words[wi] = new


def save_bpe(tok: BpeTokenizer, path: str | Path) -> None:
    """Write the HF ``tokenizers`` JSON layout (byte-level pre-tokenizer and decoder)."""
    merges = sorted(tok.ranks, key=tok.ranks.__getitem__)
    doc = {
        "version": "1.0",
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": True,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": tok.vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    Path(path).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def build_tokenizer(spec: str = "bytes") -> Tokenizer:
    """``"bytes"`` or a path to a byte-level BPE ``tokenizer.json``."""
    if spec == "bytes":
        return ByteTokenizer()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"tokenizer {spec!r}: not 'bytes' and no such file (hub names do not load offline)"
        )
    return BpeTokenizer.from_file(path)
