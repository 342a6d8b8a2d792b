"""Offline tokenizers: bytes, a byte-level BPE trained, saved and loaded from a file, the
reserved ids, and the record a checkpoint keeps of them."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch

from model.config import MASKAUDIO_ID
from model.data.tokenizer import (
    CHECKPOINT_KEY,
    FIRST_ID,
    MASK_ID,
    PAD_ID,
    BpeTokenizer,
    ByteTokenizer,
    build_tokenizer,
    byte_to_unicode,
    from_state,
    to_json,
    tokenizer_state,
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
    vocab = {c: b for b, c in byte_to_unicode().items()}
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


def test_reserved_ids_are_never_emitted_even_for_a_nul_in_the_text():
    assert MASKAUDIO_ID == 2 and len({PAD_ID, MASK_ID, MASKAUDIO_ID}) == 3
    bpe = train_bpe(CORPUS, vocab_size=400)
    for tok in (ByteTokenizer(), bpe):
        ids = tok.encode("nul\0 inside " + ODD) + tok.encode_word("x\0y")
        assert not {PAD_ID, MASK_ID, MASKAUDIO_ID} & set(ids), tok
        assert tok.decode(tok.encode("a\0b")) == "ab"
        assert min(ids) > MASKAUDIO_ID and max(ids) < tok.vocab_size


def test_a_trained_file_saves_loads_and_its_state_rebuilds_identical_encodings(tmp_path):
    path = tmp_path / "tokenizer.json"
    tok = train_bpe(CORPUS, vocab_size=500, path=path)
    loaded = build_tokenizer(str(path))
    state = tokenizer_state(loaded)
    assert state["kind"] == "bpe" and state["source"] == str(path)
    assert state["json"] == path.read_text(encoding="utf-8")
    assert state["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # what a checkpoint stores survives torch's weights-only loader as plain values
    buf = io.BytesIO()
    torch.save({CHECKPOINT_KEY: state}, buf)
    buf.seek(0)
    back = from_state(torch.load(buf, weights_only=True)[CHECKPOINT_KEY])
    assert isinstance(back, BpeTokenizer) and back.vocab_size == tok.vocab_size
    for text in [*CORPUS[:30], ODD]:
        assert back.encode(text) == loaded.encode(text) == tok.encode(text)
    assert tokenizer_state(back)["sha256"] == state["sha256"]


def test_bytes_state_and_no_state_rebuild_the_byte_tokenizer_and_a_forged_one_is_refused():
    assert isinstance(from_state(None), ByteTokenizer)
    assert isinstance(from_state(tokenizer_state(ByteTokenizer())), ByteTokenizer)
    state = tokenizer_state(train_bpe(CORPUS, vocab_size=300))
    with pytest.raises(ValueError, match="does not match its sha256"):
        from_state({**state, "json": state["json"].replace('"BPE"', '"BPE" ')})
    with pytest.raises(ValueError, match="kind 'wordpiece'"):
        from_state({**state, "kind": "wordpiece"})


def _valid_doc() -> dict:
    return json.loads(to_json(train_bpe(CORPUS, vocab_size=300)))


def _sorted_base(doc: dict) -> dict:
    vocab = doc["model"]["vocab"]
    base = sorted(k for k, v in vocab.items() if v < 256)
    doc["model"]["vocab"] = {**vocab, **{k: i for i, k in enumerate(base)}}
    return doc


def _gap(doc: dict) -> dict:
    doc["model"]["vocab"]["far"] = 10**12  # a file may not declare a vocabulary this large
    return doc


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (lambda: '{"model": {"type": "BPE", "vocab": {', "JSON does not parse"),
        (lambda: b"\xff\xfe not text", "JSON does not parse"),
        (lambda: "[1, 2]", "no 'model' object"),
        (
            lambda: json.dumps(
                {**_valid_doc(), "model": {"type": "BPE", "vocab": [], "merges": []}}
            ),
            "model.vocab must map",
        ),
        (
            lambda: json.dumps(_valid_doc() | {"model": {**_valid_doc()["model"], "merges": [1]}}),
            "model.merges must be",
        ),
        (lambda: json.dumps(_sorted_base(_valid_doc())), "bytes in byte order"),
        (lambda: json.dumps(_gap(_valid_doc())), "ids must be 0 .. "),
    ],
)
def test_a_malformed_tokenizer_json_is_a_one_line_error_naming_the_file(tmp_path, content, says):
    path = tmp_path / "tokenizer.json"
    data = content()
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(ValueError) as info:
        build_tokenizer(str(path))
    message = str(info.value)
    assert says in message and str(path) in message and "\n" not in message
