"""bench/bench_learning.py: its --run syntax and the rows it turns validation logs into."""

from __future__ import annotations

import argparse

import pytest

from bench.bench_learning import DEFAULT_RUNS, ROOT, parse_run, span_terms, speed, table


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
    (row,) = span_terms("span", logged)  # only the terms with a chance logged
    assert row == {
        "run": "span",
        "step": 200,
        "term": "frame",
        "value": 3.25,
        "chance": 4.5,
        "below_chance": 1.25,
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
