"""Offline tokenizers: bytes by default, a byte-level BPE trained and loaded from a file."""

from __future__ import annotations

import json

import pytest

from model.data.tokenizer import (
    FIRST_ID,
    MASK_ID,
    PAD_ID,
    BpeTokenizer,
    ByteTokenizer,
    build_tokenizer,
    byte_to_unicode,
    train_bpe,
)

WORDS = [
    "today",
    "we",
    "will",
    "cut",
    "the",
    "onions",
    "into",
    "small",
    "pieces",
    "then",
    "put",
    "them",
    "in",
    "the",
    "pan",
    "for",
    "three",
    "minutes",
    "and",
    "stir",
    "until",
    "golden",
    "next",
    "take",
    "the",
    "garlic",
    "and",
    "press",
    "it",
    "so",
    "the",
    "flavour",
    "goes",
    "into",
    "the",
    "oil",
]
CORPUS = [" ".join(WORDS[i % 20 : i % 20 + 12]) for i in range(300)]
ODD = "naïve café 東京 emoji 🎬 tab\tand 'quotes' don't 12345"


def test_default_is_bytes_with_pad_and_mask_reserved():
    tok = build_tokenizer()
    assert isinstance(tok, ByteTokenizer)
    assert (tok.pad_id, tok.mask_id, tok.vocab_size) == (PAD_ID, MASK_ID, 256 + FIRST_ID)
    ids = tok.encode(ODD)
    assert min(ids) >= FIRST_ID and max(ids) < tok.vocab_size
    assert tok.decode(ids) == ODD
    assert tok.encode_word("hi") == [ord(" ") + 2, ord("h") + 2, ord("i") + 2]


def test_bpe_learns_frequent_words_as_single_tokens_and_round_trips(tmp_path):
    path = tmp_path / "tokenizer.json"
    tok = train_bpe(CORPUS, vocab_size=600, path=path)
    assert tok.vocab_size <= 600
    assert len(tok.encode_word("minutes")) == 1, "a frequent word becomes one token"
    assert len(tok.encode_word("minutes")) < len(ByteTokenizer().encode_word("minutes"))
    for text in (ODD, CORPUS[3], " leading and trailing "):
        ids = tok.encode(text)
        assert min(ids) >= FIRST_ID and max(ids) < tok.vocab_size
        assert tok.decode(ids) == text
    loaded = build_tokenizer(str(path))
    assert isinstance(loaded, BpeTokenizer) and loaded.vocab_size == tok.vocab_size
    assert [loaded.encode(t) for t in CORPUS[:20]] == [tok.encode(t) for t in CORPUS[:20]]


def test_bpe_file_has_the_hf_tokenizers_layout(tmp_path):
    path = tmp_path / "tokenizer.json"
    tok = train_bpe(CORPUS, vocab_size=300, path=path)
    doc = json.loads(path.read_text())
    assert doc["model"]["type"] == "BPE" and doc["pre_tokenizer"]["type"] == "ByteLevel"
    assert len(doc["model"]["merges"]) == len(doc["model"]["vocab"]) - 256
    assert all(len(m.split(" ")) == 2 for m in doc["model"]["merges"])
    assert tok.vocab_size == len(doc["model"]["vocab"]) + FIRST_ID


def test_bpe_applies_merges_by_rank():
    vocab = {c: i for i, c in enumerate(sorted(byte_to_unicode().values()))}
    vocab["ab"], vocab["bc"] = len(vocab), len(vocab) + 1
    ab_first = BpeTokenizer(vocab, [("a", "b"), ("b", "c")])
    bc_first = BpeTokenizer(vocab, [("b", "c"), ("a", "b")])
    assert ab_first.encode("abc") == [vocab["ab"] + FIRST_ID, vocab["c"] + FIRST_ID]
    assert bc_first.encode("abc") == [vocab["a"] + FIRST_ID, vocab["bc"] + FIRST_ID]


def test_unknown_spec_fails_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match=r"roberta-base.*no such file"):
        build_tokenizer("roberta-base")
    wordpiece = tmp_path / "wp.json"
    wordpiece.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(ValueError, match="only 'BPE' loads"):
        build_tokenizer(str(wordpiece))
