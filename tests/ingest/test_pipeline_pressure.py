"""The pipeline against a site under pressure: 429 bursts, then "confirm you're not a bot".

A loopback site of watch pages (HTML with <video> and <track>, read by yt-dlp's own
extractor) pushes back the way YouTube does when an IP asks too much. The run is paced
under its budget, its breaker stops the worker instead of burning through the list, no
video is lost (every input has its row), and ``--retry-failed`` takes every row the
push-back cost once the site is calm again.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from devtools import mediagen
from devtools.localserve import BOT_CHECK, LocalServer
from ingest import __main__ as cli
from shards import layout, manifest
from tests.helpers import write_config

VIDEOS = 6
INTERVAL_S = 1.0  # 3600 videos/hour per IP, one worker


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    mediagen.make_video(root / "clip.mp4", 11.0, audio="speech", width=160, height=90)
    mediagen.write_auto_vtt(root / "clip.en.vtt", mediagen.make_words(11.0, seed=3))
    for i in range(VIDEOS):
        (root / f"watch-v{i}.html").write_text(
            f"<html><head><title>Video {i}</title></head><body><video src='clip.mp4'>"
            "<track kind='subtitles' srclang='en' src='clip.en.vtt'></video></body></html>"
        )
    return root


def config(path: Path) -> Path:
    write_config(path, retries=1)
    raw = yaml.safe_load(path.read_text())
    raw["ingest"]["download"]["pacing"] = {"videos_per_hour_per_ip": 3600.0, "workers": "auto"}
    raw["ingest"]["download"]["breaker"] = {
        "window": 4,
        "min_attempts": 2,
        "max_share": 0.5,
        "backoff_s": 0.2,
        "backoff_max_s": 0.4,
        "max_trips": 3,
    }
    raw["ingest"]["shards"].update(videos_per_group=VIDEOS, min_groups=1)  # one worker's list
    path.write_text(yaml.safe_dump(raw))
    return path


def run(cfg: Path, inputs: Path, out: Path, *extra: str) -> int:
    args = ["--profile", "local", "--config", str(cfg), "--input", str(inputs)]
    return cli.main(["run", *args, "--output", str(out), "--direct_num_workers=1", *extra])


def rows(out: Path) -> dict[str, manifest.ManifestRow]:
    found = manifest.read_rows(*layout.open_output(str(out / "manifest.parquet")))
    return {r.url.rsplit("/", 1)[1]: r for r in found}


def test_pushback_trips_the_breaker_paces_attempts_and_retry_failed_loses_nothing(
    site, tmp_path, capsys
):
    cfg = config(tmp_path / "p.yaml")
    out = tmp_path / "out"
    pages = [f"watch-v{i}.html" for i in range(VIDEOS)]
    with LocalServer(site) as srv:
        (tmp_path / "in.txt").write_text("".join(f"{srv.url(p)}\n" for p in pages))
        srv.push_back(429, times=2)  # a burst of "Too Many Requests"
        srv.push_back(401, times=2, reason=BOT_CHECK)  # then the bot check for a while
        assert run(cfg, tmp_path / "in.txt", out) == 0
        first = rows(out)
        asked = {p: srv.requests(p) for p in pages}
        times = srv.times()
        printed = capsys.readouterr().out

        # every video has its row; the site was asked 4 times, not 12 (6 videos, 1 retry each)
        assert sorted(first) == pages
        reasons = [(first[p].status, first[p].reason) for p in pages]
        assert (
            reasons
            == [("failed", r) for r in ["rate_limited"] + ["sign_in"] * 2]
            + [("failed", "rate_limited")] * 3
        )
        assert sum(asked.values()) == 4 and all(asked[p] == 0 for p in pages[3:])
        assert all("not tried" in first[p].message for p in pages[3:])
        # attempts were spaced by the budget, and further by the breaker's pauses
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(g >= 0.9 * INTERVAL_S for g in gaps[1:]), gaps
        assert "4 attempts, 4 pushed back" in printed and "3 trips, 3 videos left" in printed

        # the site is calm again: --retry-failed takes every row the push-back cost
        assert run(cfg, tmp_path / "in.txt", out, "--retry-failed") == 0
        second = rows(out)
        retry_times = sorted(t for p in pages for t in srv.times(p))[4:]
    assert {p: second[p].status for p in pages} == dict.fromkeys(pages, "ok")
    assert all(second[p].run != first[p].run for p in pages)
    gaps = [b - a for a, b in itertools.pairwise(retry_times)]
    assert len(retry_times) == VIDEOS and all(g >= 0.9 * INTERVAL_S for g in gaps[1:]), gaps
    assert "6 attempts, 0 pushed back" in capsys.readouterr().out


def test_the_summary_shows_the_site_line_only_when_the_site_pushed_back_or_workers_waited(
    tmp_path,
):
    quiet = cli.summary(str(tmp_path), 0.0, {"download_attempts": 5})
    assert "site:" not in quiet
    loud = cli.summary(
        str(tmp_path), 0.0, {"download_attempts": 5, "breaker_trips": 1, "breaker_skipped": 2}
    )
    assert "site: 5 attempts" in loud and "1 trips, 2 videos left for --retry-failed" in loud
