"""`python -m model evaluate`: the recall validation logged, from the checkpoint alone."""

from __future__ import annotations

import json

import pytest

from model.cli.main import main
from model.eval.evaluation import SHORT as ALL

# the window directions (still frames are validation's own pass, not the command's)
SHORT = {d: s for d, s in ALL.items() if d not in ("image->text", "text->image")}


def logged_directions(logged: dict) -> dict[str, str]:
    return {d: s for d, s in SHORT.items() if f"val/{s}_r1" in logged}


def test_evaluate_reports_what_validation_logged_for_the_same_windows(trained_run, capsys):
    code = main(["evaluate", str(trained_run.val), "--checkpoint", str(trained_run.checkpoint),
                 "--json", "--batch-size", "5"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    logged = trained_run.last_validation()
    directions = logged_directions(logged)
    assert {"text->video", "audio->video"} <= set(directions)
    assert set(directions) == set(report) - {"shards_skipped", "windows_skipped"}
    for direction, short in directions.items():
        got = report[direction]
        assert got["n"] == logged["val/n"]
        for metric, key in (("r1", "r1"), ("r5", "r5"), ("r10", "r10"), ("median_rank", "medr")):
            assert got[metric] == pytest.approx(logged[f"val/{short}_{key}"], abs=1e-6), (
                direction,
                metric,
            )
    assert report["shards_skipped"] == 0


def test_evaluate_prints_a_table(trained_run, capsys):
    assert (
        main(["evaluate", str(trained_run.val), "--checkpoint", str(trained_run.checkpoint)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["direction", "n", "R@1", "R@5", "R@10", "MedR"]
    assert [ln.split()[0] for ln in lines[1:]] == list(
        logged_directions(trained_run.last_validation())
    )


def test_clip_mode_evaluation_equals_validation_on_the_same_windows(trained_run, tmp_path, capsys):
    from devtools import mediagen
    from ingest import clips
    from model.train.cli import main as train_main

    video = mediagen.make_video(tmp_path / "v.mp4", 20.0, audio="speech", width=320, height=180)
    sentences = ["a man slices an onion", "pour the milk slowly", "the dog runs outside",
                 "stir the soup well", "open the red door", "paint the fence white"]  # fmt: skip
    rows = [f"{video},{2 * i},{2 * i + 4 + i % 3},{s}\n" for i, s in enumerate(sentences)]
    (tmp_path / "clips.csv").write_text("video,start,end,sentence\n" + "".join(rows))
    out = tmp_path / "shards"
    assert clips.main([str(tmp_path / "clips.csv"), "--output", str(out)]) == 0
    capsys.readouterr()
    code = main(["evaluate", str(out), "--checkpoint", str(trained_run.checkpoint), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    cli = train_main(["validate", "--config", str(trained_run.root / "tiny.yaml"),
                      "--data.val_shards", str(out), "--ckpt_path", str(trained_run.checkpoint)])  # fmt: skip
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    assert logged["val/n"] == report["text->video"]["n"] == len(sentences)
    assert set(logged_directions(logged)) == set(report) - {"shards_skipped", "windows_skipped"}
    for direction, short in logged_directions(logged).items():
        for metric, key in (("r1", "r1"), ("r5", "r5"), ("r10", "r10"), ("median_rank", "medr")):
            got = report[direction][metric]
            assert got == pytest.approx(logged[f"val/{short}_{key}"], abs=1e-6), (direction, metric)
