"""`python -m model tokenizer`: learns a BPE from shards, writes it beside them, reports
truncation; training's `data.tokenizer: auto` then takes it; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.cli.main import main
from model.data.datamodule import ShardDataModule
from model.data.tokenizer import BpeTokenizer, ByteTokenizer, build_tokenizer
from tests.helpers import ROOT, write_narrated_shards


@pytest.fixture(scope="module")
def narrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("narrated") / "train"
    write_narrated_shards(out, 4)
    return out


def test_it_writes_tokenizer_json_beside_the_shards_and_reports_truncation(
    narrated, tmp_path, capsys
):
    out = tmp_path / "train"
    out.mkdir()
    for shard in narrated.glob("*.t*"):
        (out / shard.name).write_bytes(shard.read_bytes())
    assert not (out / "tokenizer.json").exists()
    assert isinstance(ShardDataModule(train_shards=str(out)).tokenizer, ByteTokenizer)

    assert main(["tokenizer", str(out), "--vocab-size", "600", "--max-text-len", "8"]) == 0
    printed = capsys.readouterr().out
    saved = out / "tokenizer.json"
    tok = build_tokenizer(str(saved))
    assert isinstance(tok, BpeTokenizer) and tok.vocab_size <= 600
    assert f"wrote {saved}" in printed and "windows" in printed
    bpe_line = next(line for line in printed.splitlines() if line.strip().startswith("bpe:"))
    bytes_line = next(line for line in printed.splitlines() if line.strip().startswith("bytes:"))
    assert "max_text_len 8 cuts" in bpe_line and "keeps 95% whole" in bpe_line

    def share(line: str) -> float:
        return float(line.split(" cuts ")[1].split("%")[0])

    assert share(bpe_line) < share(bytes_line)
    assert not list(out.glob("tokenizer.json.tmp-*")), "written under a temporary name, renamed"

    data = ShardDataModule(train_shards=str(out))  # tokenizer: auto (the default)
    assert isinstance(data.tokenizer, BpeTokenizer)
    assert data.vocab_size == tok.vocab_size and data.tokenizer_state()["source"] == str(saved)
    assert isinstance(
        ShardDataModule(train_shards=str(out), tokenizer="bytes").tokenizer, ByteTokenizer
    )


def test_out_puts_the_file_elsewhere(narrated, tmp_path, capsys):
    target = tmp_path / "elsewhere" / "tok.json"
    assert main(["tokenizer", str(narrated), "--out", str(target), "--vocab-size", "300"]) == 0
    assert json.loads(target.read_text())["model"]["type"] == "BPE"
    assert not (narrated / "tokenizer.json").exists()


def test_shards_without_words_or_a_missing_folder_fail_in_one_line(tmp_path, capsys):
    assert main(["tokenizer", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err and err.startswith("python -m model tokenizer")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.tar").write_bytes(b"no tar here" * 100)
    assert main(["tokenizer", str(junk)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no transcript words" in err and "unreadable" in err


def test_a_malformed_tokenizer_beside_the_shards_stops_auto_in_one_line(narrated, tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    for shard in narrated.glob("*.t*"):
        (out / shard.name).write_bytes(shard.read_bytes())
    (out / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merg')
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a tokenizer\.json") as info:
        _ = ShardDataModule(train_shards=str(out)).vocab_size
    assert "\n" not in str(info.value)


def test_the_command_line_runs_it():
    done = subprocess.run(
        [sys.executable, "-m", "model", "tokenizer", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.returncode == 0 and "--vocab-size" in done.stdout and "--max-text-len" in done.stdout
    )
