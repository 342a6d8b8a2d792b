"""bench/bench_learning.py: its --run syntax and the rows it turns validation logs into."""

from __future__ import annotations

import argparse

import pytest

from bench.bench_learning import (
    DEFAULT_RUNS,
    ROOT,
    RUNS,
    chance_losses,
    objective_rows,
    parse_run,
    span_terms,
    speed,
    table,
)


def test_run_names_configs_from_the_repository_root_in_order():
    name, configs = parse_run("tiny=configs/tiny.yaml+configs/demo.yaml")
    assert name == "tiny"
    assert configs == (ROOT / "configs" / "tiny.yaml", ROOT / "configs" / "demo.yaml")


@pytest.mark.parametrize(
    "text", ["configs/tiny.yaml", "=configs/tiny.yaml", "tiny=", "x=nope.yaml"]
)
def test_run_without_name_or_with_a_missing_config_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_run(text)


def test_rows_count_steps_from_one_and_recall_in_multiples_of_chance():
    logged = {"step": 99.0, "val/n": 64.0, "val/t2v_r1": 0.125, "val/t2v_medr": 6.0}
    (row,) = table({"tiny": [logged]})  # no audio directions logged: no rows for them
    assert row == {
        "run": "tiny",
        "step": 100,
        "direction": "text->video",
        "windows": 64,
        "r1": 0.125,
        "r1_vs_chance": 8.0,
        "median_rank": 6.0,
    }


def test_a_named_run_reads_the_configs_of_runs():
    assert parse_run("merlot") == ("merlot", RUNS["merlot"])
    assert RUNS["merlot"][-1] == ROOT / "configs" / "merlot.yaml"
    assert all(p.is_file() for configs in RUNS.values() for p in configs)


def test_objective_rows_give_the_first_training_value_then_each_validation():
    logged = [
        {"step": 19.0, "train/merlot/order_acc": 0.45, "train/merlot/mlm": 6.2},
        {"step": 39.0, "train/merlot/order_acc": 0.55},
        {"step": 49.0, "val/merlot/order_acc": 0.7, "val/merlot/mlm": 4.0, "val/t2v_r1": 0.1},
    ]
    rows = objective_rows({"merlot": logged})
    got = [(r["step"], r["split"], r["metric"], r["value"], r["chance"]) for r in rows]
    assert got == [
        (20, "train", "merlot/mlm", 6.2, ""),
        (50, "val", "merlot/mlm", 4.0, ""),
        (20, "train", "merlot/order_acc", 0.45, 0.5),
        (50, "val", "merlot/order_acc", 0.7, 0.5),
    ]
    assert objective_rows({"tiny": [{"step": 1.0, "val/t2v_r1": 0.5}]}) == []


def test_still_frame_rows_count_chance_over_stills_and_new_directions_get_rows():
    logged = {
        "step": 49.0,
        "val/n": 64.0,
        "val/n_stills": 200.0,
        "val/t2va_r1": 0.25,
        "val/t2va_medr": 3.0,
        "val/i2t_r1": 0.05,
        "val/i2t_medr": 20.0,
    }
    rows = {r["direction"]: r for r in table({"fac": [logged]})}
    assert set(rows) == {"text->fused", "image->text"}
    assert (rows["text->fused"]["windows"], rows["text->fused"]["r1_vs_chance"]) == (64, 16.0)
    assert (rows["image->text"]["windows"], rows["image->text"]["r1_vs_chance"]) == (200, 10.0)


def test_losses_with_a_chance_term_are_listed_beside_it():
    logged = {"step": 199.0, "val/fac": 4.5, "val/fac/chance": 9.0, "val/span/frame": 1.0}
    assert chance_losses({"fac": [logged]}) == [("fac", 200, "fac", 4.5, 9.0)]


def test_default_rows_are_the_four_span_comparison_configs_and_exist():
    assert list(DEFAULT_RUNS) == ["span", "span-legacy", "combinatorial", "span+combinatorial"]
    for configs in DEFAULT_RUNS.values():
        assert all(p.is_file() for p in configs)


def test_span_terms_come_from_the_last_validation_beside_chance():
    logged = [
        {"step": 99.0, "val/span/frame": 4.0, "val/span/chance/frame": 4.5},
        {"step": 199.0, "train/span/frame": 1.0},
        {"step": 199.0, "val/span/frame": 3.25, "val/span/chance/frame": 4.5},
    ]
    logged[-1] |= {"val/span/cos/query/frame": 0.25, "val/span/cos/target/frame": 0.9999}
    (row,) = span_terms("span", logged)  # only the terms with a chance logged
    assert row == {
        "run": "span",
        "step": 200,
        "term": "frame",
        "value": 3.25,
        "chance": 4.5,
        "below_chance": 1.25,
        "query_cos": 0.25,
        "target_cos": 1.0,
    }
    assert span_terms("combinatorial", [{"step": 5.0, "val/t2v_r1": 0.1}]) == []


def test_speed_is_the_median_logged_step_time_and_cpu_seconds_per_step():
    logged = [{"perf/step_s": v} for v in (0.5, 3.0, 0.75)] + [{"step": 3.0}]
    assert speed("x", logged, 12.0, 8) == {
        "run": "x",
        "steps": 8,
        "wall_s_per_step": 0.75,
        "cpu_s_per_step": 1.5,
    }
    assert speed("x", logged, None, 8)["cpu_s_per_step"] == ""
