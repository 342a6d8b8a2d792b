"""A real shard with one sample whose json or members lie (issue 13, item 6): ``verify``
reports it as damage naming the key and the field, the training loader skips and counts it,
and ``show``, ``sample`` and ``inspect`` say so on one line. Nothing crashes, and no size a
header declares is allocated.

Each case rewrites one member of the first sample (``speech_w0000``: 2 segments with audio)
inside a copy of the real pipeline's shard, in memory; the rest of the shard stays as written.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from model.config import ModelConfig
from model.data.datamodule import ShardDataModule
from shards.cli.locate import locate
from shards.cli.main import main
from shards.cli.verify import verify_shards
from tests.helpers import (
    Members,
    RealOutput,
    edit_json,
    huge_jpeg,
    npy_declaring,
    read_members,
    real_output,
    write_members,
)

SHARD = "shard-test-000.tar"
KEY = "speech_w0000"
TINY = ModelConfig.from_name("tiny", max_segments=4)


def _json(change: Callable[[dict], None]) -> Callable[[Members], Members]:
    return lambda members: edit_json(members, KEY, change)


def _member(suffix: str, rewrite: Callable[[bytes], bytes]) -> Callable[[Members], Members]:
    name = f"{KEY}.{suffix}"
    return lambda members: [(n, rewrite(d) if n == name else d) for n, d in members]


def _word(field: str, value) -> Callable[[dict], None]:
    return lambda meta: meta["words"][0].update({field: value})


def _scale(value) -> Callable[[dict], None]:
    return lambda meta: meta["mel_scale"].__setitem__(1, value)


# case -> (the rewrite, what verify's reason says: the member or field, and what is wrong)
CASES = {
    "word text a number": (_json(_word("text", 7)), "words[0].text must be a string, got 7"),
    "segment index a string": (
        _json(_word("segment", "3")),
        "words[0].segment must be an integer, got '3'",
    ),
    "segment 1.5": (_json(_word("segment", 1.5)), "words[0].segment must be an integer, got 1.5"),
    "mel scale 'x'": (_json(_scale("x")), "mel_scale[1] must be a finite number > 0, got 'x'"),
    "mel scale 0": (_json(_scale(0)), "mel_scale[1] must be a finite number > 0, got 0"),
    "mel scale NaN": (_json(_scale(math.nan)), "mel_scale[1] must be a finite number > 0, got nan"),
    "npy header declaring 10**12 bytes": (
        _member("mel.npy", lambda _d: npy_declaring((10**6, 10**6))),
        ".mel.npy does not load (header declares uint8(1000000, 1000000), 1000000000000 bytes",
    ),
    "jpeg header declaring 30000x30000": (
        _member("01.jpg", huge_jpeg),
        ".01.jpg declares 30000x30000 pixels, more than the",
    ),
}
JSON_CASES = [c for c in CASES if "header" not in c]


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealOutput:
    return real_output(tmp_path_factory)


@pytest.fixture(scope="module")
def damaged(real, tmp_path_factory) -> dict[str, Path]:
    """case -> a copy of the real output whose first shard carries that case."""
    out = {}
    for case, (rewrite, _) in CASES.items():
        copy = Path(shutil.copytree(real.out, tmp_path_factory.mktemp("bad") / "out"))
        shard = copy / SHARD
        members = read_members(shard)
        changed = rewrite(members)
        assert changed != members, f"{case}: the rewrite changed nothing"
        write_members(shard, changed)
        out[case] = copy
    return out


def test_the_jpeg_patched_is_a_real_frame_of_the_shard(real):
    members = dict(read_members(real.out / SHARD))
    frame = members[f"{KEY}.01.jpg"]
    patched = huge_jpeg(frame)
    assert len(patched) == len(frame) and patched[:2] == b"\xff\xd8"
    assert patched != frame


@pytest.mark.parametrize("case", list(CASES))
def test_verify_reports_the_sample_as_damage_naming_the_field(damaged, case, capsys):
    _, reason = CASES[case]
    report = verify_shards(locate(str(damaged[case])))
    found = [(p.shard, p.key, p.reason) for p in report.problems]
    assert any(s == SHARD and k == KEY and reason in r for s, k, r in found), found
    # the other samples are whole; a json that does not read also leaves its window missing
    assert all(s == SHARD and k in (KEY, "speech") for s, k, _ in found), found
    assert report.samples == 5
    assert main(["verify", str(damaged[case]), "-q"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert any(line.startswith(f"{SHARD}: {KEY}: ") and reason in line for line in
               captured.out.splitlines()), captured.out  # fmt: skip


def datamodule(path: Path, **kw) -> ShardDataModule:
    args = dict(
        batch_size=2,
        steps_per_epoch=6,
        num_workers=0,
        shuffle_buffer=0,
        frame_size=TINY.frame_size,
        max_segments=TINY.max_segments,
        max_text_len=TINY.max_text_len,
    )
    return ShardDataModule(str(path), **(args | kw))


@pytest.mark.parametrize("case", list(CASES))
def test_the_loader_skips_and_counts_the_sample(damaged, case):
    copy = damaged[case]
    val = datamodule(copy, val_shards=str(copy), val_batch_size=2)
    batches = list(val.val_dataloader())
    keys = [k for lb in batches for k in lb.keys]
    assert KEY not in keys and len(keys) == 4  # every other sample, once
    assert sum(lb.skipped for lb in batches) == 1
    for lb in batches:  # what got through is finite (no inf or NaN audio)
        assert lb.batch.audio.isfinite().all()
    # training cycles the shards: the bad sample is met, dropped and counted each time
    train = datamodule(copy)
    train_batches = list(train.train_dataloader())
    assert len(train_batches) == 6
    assert KEY not in {k for lb in train_batches for k in lb.keys}
    assert sum(lb.skipped for lb in train_batches) >= 1


@pytest.mark.parametrize("case", list(CASES))
def test_show_says_one_line(damaged, case, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, reason = CASES[case]
    png = tmp_path / "show.png"
    assert main(["show", str(damaged[case]), "--key", KEY, "--out", str(png)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.out + captured.err, captured.err
    assert KEY in lines[0] and reason.split(" (")[0].lstrip(".") in lines[0], lines[0]
    assert not png.exists()


@pytest.mark.parametrize("case", JSON_CASES)
def test_sample_and_inspect_say_one_line_per_bad_json(damaged, case, capsys):
    _, reason = CASES[case]
    assert main(["sample", str(damaged[case]), "-n", "5"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert [line for line in captured.err.splitlines() if reason in line and KEY in line]
    assert "speech_w0001" in captured.out  # the other samples are still printed
    assert main(["inspect", str(damaged[case]), "-q"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert [line for line in captured.err.splitlines() if reason in line and KEY in line]
