"""bench/cost_model.py: its tables in docs/SCALE.md are the ones it prints from the
committed bench run, and its arithmetic binds the right resource."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import cost_model as cm
from tests.helpers import ROOT

MEASURED = cm.Measured(
    cpu_s_per_video_min=2.0, fixed_cpu_s_per_run=10.0, shard_bytes_per_video_min=5e5, max_rss_mb=512
)


def test_docs_scale_holds_the_tables_the_model_prints_from_the_committed_bench_run(tmp_path):
    doc = (ROOT / "docs" / "SCALE.md").read_text()
    measured = cm.Measured.from_bench(ROOT / "bench" / "scale-measured.json")
    expected = cm.tables(measured, cm.Assumptions())
    inside = doc[doc.index(cm.BEGIN) + len(cm.BEGIN) : doc.index(cm.END)]
    assert inside.strip() == expected.strip(), (
        "regenerate: python bench/cost_model.py bench/scale-measured.json --write-doc docs/SCALE.md"
    )
    copy = tmp_path / "SCALE.md"
    copy.write_text(doc.replace(inside, "\nstale\n"))
    assert cm.main([str(ROOT / "bench" / "scale-measured.json"), "--write-doc", str(copy)]) == 0
    assert copy.read_text() == doc, "--write-doc rewrites only the tables"


def test_few_proxies_bind_before_cpu_and_the_workers_wait_on_them():
    a = cm.Assumptions()
    starved = cm.plan(MEASURED, a, workers=1000, proxies=10)
    assert starved.binding == "proxies" and starved.cpu_busy < 0.05
    more = cm.plan(MEASURED, a, workers=1000, proxies=20)
    assert more.wall_h == pytest.approx(starved.wall_h / 2), "twice the IPs, half the time"
    assert more.compute_usd == pytest.approx(starved.compute_usd / 2), "idle workers are billed"


def test_with_ips_to_spare_cpu_binds_and_doubling_workers_halves_wall_time_at_equal_cost():
    a = cm.Assumptions()
    one = cm.plan(MEASURED, a, workers=50, proxies=100_000)
    two = cm.plan(MEASURED, a, workers=100, proxies=100_000)
    assert one.binding == two.binding == "cpu" and one.cpu_busy == 1.0
    assert two.wall_h == pytest.approx(one.wall_h / 2)
    assert two.worker_hours == pytest.approx(one.worker_hours)
    video_min = a.videos * a.minutes_per_video * a.kept
    cores = 50 * a.vcpus_per_worker * a.utilisation
    assert one.wall_h == pytest.approx(video_min * MEASURED.cpu_s_per_video_min / cores / 3600)


def test_the_workers_the_proxies_need_are_the_fewest_that_keep_up():
    a = cm.Assumptions()
    need = cm.workers_to_keep_up(MEASURED, a, proxies=1000)
    assert cm.plan(MEASURED, a, need, 1000).binding == "proxies"
    assert cm.plan(MEASURED, a, need - 1, 1000).binding == "cpu"


def test_storage_scales_with_the_measured_bytes_and_the_kept_videos():
    a = cm.Assumptions()
    t = cm.totals(MEASURED, a)
    assert t["shard_tb"] == pytest.approx(20e6 * 8 * 0.8 * 5e5 / 1e12)
    halved = cm.totals(MEASURED, dataclasses.replace(a, kept=0.4))
    assert halved["shard_tb"] == pytest.approx(t["shard_tb"] / 2)


def test_the_committed_bench_run_is_bench_scale_output():
    data = json.loads((ROOT / "bench" / "scale-measured.json").read_text())
    assert {f.name for f in dataclasses.fields(cm.Measured)} <= set(data)
    assert {"small", "local", "s3"} == set(data["runs"])
    assert all(run["rc"] == 0 and run["videos_ok"] for run in data["runs"].values())
