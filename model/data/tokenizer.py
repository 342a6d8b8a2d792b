"""Tokenizers that work offline: bytes, or a byte-level BPE learned from the transcripts.

Every tokenizer here keeps the model's reserved ids (model/config.py): 0 = PAD, 1 = MASK,
2 = MASKAUDIO. Byte-level symbols start at :data:`FIRST_ID` (2): the byte tokenizer maps
byte b to b + 2 (vocab_size 258); the BPE tokenizer maps its own id i to i + 2, its own
ids 0..255 being the 256 bytes in byte order. Byte 0 (NUL) is dropped from any text, so
id 2 is never emitted and serves as MASKAUDIO.

``build_tokenizer(spec)``:

- ``"bytes"``: UTF-8 bytes, no file, no training. Long but lossless.
- a path or URL of a ``tokenizer.json``: a byte-level BPE in the HF ``tokenizers`` file
  layout (``model.type == "BPE"``, ``model.vocab``, ``model.merges``). :func:`train_bpe`
  learns one with HF ``tokenizers`` (``python -m model tokenizer SHARDS`` writes it beside
  the shards). Encoding is plain Python over the file's merges (JSON only: loading runs no
  code); pre-tokenization uses a ``re`` approximation of the GPT-2 split pattern
  (letters / digits / other runs, each with an optional leading space), which agrees with
  it on ordinary words.

What a run used is :func:`tokenizer_state` (kind, the file's text, its sha256, where it
came from); checkpoints carry it and :func:`from_state` rebuilds the same tokenizer.

The loader tokenizes each transcript word on its own, with a leading space
(:meth:`Tokenizer.encode_word`), so subword boundaries never cross words.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

from model.config import MASK_ID, MASKAUDIO_ID, PAD_ID
from shards.layout import read_whole, write_atomically

FIRST_ID = 2  # id of the first byte-level symbol (byte 0, never emitted: MASKAUDIO_ID)
assert FIRST_ID == MASKAUDIO_ID and max(PAD_ID, MASK_ID) < FIRST_ID
TOKENIZER_FILE = "tokenizer.json"  # what `python -m model tokenizer` writes beside the shards
CHECKPOINT_KEY = "montage_tokenizer"  # where a checkpoint holds tokenizer_state()

# GPT-2's pre-tokenizer pattern with \p{L} -> [^\W\d_] and \p{N} -> \d (stdlib re has no \p).
_SPLIT_RE = re.compile(
    r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""", re.UNICODE
)


class NoTokenizerFile(ValueError):
    """No ``tokenizer.json`` where one was looked for."""


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
        return [b + FIRST_ID for b in text.encode("utf-8") if b]  # NUL dropped (MASKAUDIO)

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
    return _SPLIT_RE.findall(text.replace("\0", ""))  # NUL dropped: its id is MASKAUDIO


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
    """Byte-level BPE: merges applied by rank, ids shifted by two (0, 1, 2 reserved; see the
    module docstring)."""

    pad_id = PAD_ID
    mask_id = MASK_ID

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        table = byte_to_unicode()
        missing = [c for c in table.values() if c not in vocab]
        if missing:
            raise ValueError(f"model.vocab lacks {len(missing)} of the 256 byte symbols")
        if any(vocab[table[b]] != b for b in range(256)):
            raise ValueError(
                "model.vocab: ids 0..255 must be the 256 bytes in byte order "
                "(retrain it with `python -m model tokenizer`)"
            )
        if set(vocab.values()) != set(range(len(vocab))):  # no declared size past the file's
            raise ValueError(f"model.vocab: ids must be 0 .. {len(vocab) - 1}, each once")
        unknown = [m for m in merges if m[0] + m[1] not in vocab]
        if unknown:
            raise ValueError(
                f"model.merges: {' '.join(unknown[0])!r} makes no token of model.vocab"
            )
        self.vocab = vocab
        self.inverse = {i: s for s, i in vocab.items()}
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.vocab_size = max(vocab.values()) + 1 + FIRST_ID
        self._cache: dict[str, list[int]] = {}
        self._byte_of = {c: b for b, c in table.items()}
        self.json_text: str | None = None  # the file it was read from, as written
        self.source: str | None = None  # where that file was

    @classmethod
    def from_file(cls, path: str | Path) -> BpeTokenizer:
        """A ``tokenizer.json`` at a local path or fsspec URL (``shards.layout.read_whole``)."""
        try:
            with read_whole(str(path)) as f:
                data = f.read()
        except FileNotFoundError:
            raise NoTokenizerFile(f"{path}: no such tokenizer file") from None
        tok = cls.from_json(data, where=str(path))
        tok.source = str(path)
        return tok

    @classmethod
    def from_json(cls, data: str | bytes, where: str = "tokenizer.json") -> BpeTokenizer:
        """The tokenizer a ``tokenizer.json`` text describes; ValueError (one line naming
        ``where``) for anything else. Only JSON is read: nothing in it runs."""
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            raw = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"{where}: not a tokenizer.json (JSON does not parse: {first})"
            ) from None
        model = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(model, dict):
            raise ValueError(f"{where}: not a tokenizer.json (no 'model' object)")
        if model.get("type") != "BPE":
            kind = repr(model.get("type"))[:40]
            raise ValueError(f"{where}: model.type is {kind}, only 'BPE' loads")
        vocab, merges = model.get("vocab"), model.get("merges")
        if not isinstance(vocab, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in vocab.items()
        ):
            raise ValueError(f"{where}: model.vocab must map strings to integer ids")
        pairs = []
        for m in merges if isinstance(merges, list) else [None]:
            pair = m.split(" ") if isinstance(m, str) else m
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            ):
                raise ValueError(f"{where}: model.merges must be a list of symbol pairs")
            pairs.append(tuple(pair))
        try:
            tok = cls(dict(vocab), pairs)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        tok.json_text = text
        return tok

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


def train_bpe(
    texts: Iterable[str], vocab_size: int, path: str | Path | None = None
) -> BpeTokenizer:
    """Learn a byte-level BPE with at most ``vocab_size`` ids in all (reserved ids included)
    with HF ``tokenizers``; merging stops early when no pair occurs twice. Writes the
    ``tokenizer.json`` to ``path`` (atomically) when given.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    n_merges = vocab_size - FIRST_ID - 256
    if n_merges < 0:
        raise ValueError(f"vocab_size: {vocab_size} < {FIRST_ID + 256} (reserved ids + bytes)")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=256 + n_merges,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator((t.replace("\0", "") for t in texts), trainer=trainer)
    learned = json.loads(hf.to_str())["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned]
    # Montage's id order: the 256 bytes in byte order, then each merge's token in merge order
    vocab = {c: b for b, c in byte_to_unicode().items()}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = BpeTokenizer(vocab, merges)  # type: ignore[arg-type]
    tok.json_text = to_json(tok)
    if path is not None:
        save_bpe(tok, path)
    return tok


def to_json(tok: BpeTokenizer) -> str:
    """The HF ``tokenizers`` JSON layout (byte-level pre-tokenizer and decoder)."""
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
    return json.dumps(doc, ensure_ascii=False)


def save_bpe(tok: BpeTokenizer, path: str | Path) -> None:
    """Write ``tok`` as a ``tokenizer.json`` at a local path or fsspec URL, whole or not at all."""
    text = tok.json_text or to_json(tok)
    write_atomically(str(path), lambda f: f.write(text.encode("utf-8")))
    tok.json_text, tok.source = text, str(path)


# ----------------------------------------------------------------------------- a run's record


def tokenizer_state(tok: Tokenizer) -> dict[str, Any]:
    """What a checkpoint records of the tokenizer a run used (plain values only)::

    {"kind": "bytes" | "bpe", "json": tokenizer.json text or None, "sha256": of that text
     or None, "source": where the file was, or None}
    """
    if isinstance(tok, ByteTokenizer):
        return {"kind": "bytes", "json": None, "sha256": None, "source": None}
    if isinstance(tok, BpeTokenizer):
        text = tok.json_text or to_json(tok)
        return {"kind": "bpe", "json": text, "sha256": sha256(text), "source": tok.source}
    raise TypeError(f"no state for a {type(tok).__name__}")


def from_state(state: dict[str, Any] | None) -> Tokenizer:
    """The tokenizer :func:`tokenizer_state` recorded (None: bytes, what runs before the
    record used). ValueError, one line, for a record that is not one."""
    if state is None:
        return ByteTokenizer()
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "bytes":
        return ByteTokenizer()
    if kind != "bpe":
        raise ValueError(f"checkpoint tokenizer: kind {kind!r}, expected 'bytes' or 'bpe'")
    text = state.get("json")
    if not isinstance(text, str):
        raise ValueError("checkpoint tokenizer: kind 'bpe' without its tokenizer.json text")
    if state.get("sha256") not in (None, sha256(text)):
        raise ValueError("checkpoint tokenizer: its tokenizer.json does not match its sha256")
    tok = BpeTokenizer.from_json(text, where="checkpoint tokenizer")
    tok.source = state.get("source") if isinstance(state.get("source"), str) else None
    return tok


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_tokenizer(spec: str = "bytes") -> Tokenizer:
    """``"bytes"`` or the path (or fsspec URL) of a byte-level BPE ``tokenizer.json``."""
    if spec == "bytes":
        return ByteTokenizer()
    try:
        return BpeTokenizer.from_file(spec)
    except NoTokenizerFile:
        raise ValueError(
            f"tokenizer {spec!r}: not 'bytes' and no such file (hub names do not load offline)"
        ) from None


def find_beside(shard_urls: list[str]) -> Tokenizer:
    """``auto``: the ``tokenizer.json`` in the folder of the first shard, else bytes."""
    folder = shard_urls[0].rsplit("/", 1)[0] if "/" in shard_urls[0] else "."
    try:
        return BpeTokenizer.from_file(f"{folder}/{TOKENIZER_FILE}")
    except NoTokenizerFile:
        return ByteTokenizer()
