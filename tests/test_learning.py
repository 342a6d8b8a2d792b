"""Montage learns: `make demo`, shortened, retrieves held-out text->video far above chance.

One run of the whole path: narrated videos generated and served on 127.0.0.1, downloaded
by yt-dlp inside the Beam pipeline, aligned into shards, the tiny model trained on them by
`train.py fit` (configs/tiny.yaml + configs/demo.yaml) on the CPU. The held-out videos are
never trained on; on their windows, text->video recall@1 must reach 5x chance. The span
objective, trained on the same shards, must learn too.

It takes minutes, so it is marked slow; CI runs it. In CI it examines the run that
`make demo` just made (600 steps) rather than training again.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import demo
from devtools.demo_assets import VOCABULARY
from model.cli.main import main as model_main
from model.data.datamodule import ShardDataModule
from model.eval.evaluation import evaluate
from model.inference import Encoder, index, load_checkpoint
from model.inference.search import exact_top_k
from model.train.module import ReserveModule
from shards.manifest import load_state

VIDEOS, HELDOUT, STEPS = demo.DEFAULT_VIDEOS, demo.DEFAULT_HELDOUT, 400
REPO_OUT = demo.ROOT / "demo-out"  # where `make demo` writes
DURATION_S = 80.0  # demo's default video length
WINDOWS_PER_VIDEO = 4  # 80 s videos cut into 20 s windows
FACTOR = 5.0  # required text->video recall@1, in multiples of chance


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The output of a whole `make demo` run made from this very source.

    `make demo` writes ``demo-out/`` with a receipt (the source's commit and changes,
    the sizes): when it matches, as in CI where `make demo` runs just before `make
    test`, that run is the one examined here, so CI trains once; otherwise the demo runs
    here, shortened to 400 steps."""
    receipt = demo.read_receipt(REPO_OUT)
    sizes = (VIDEOS, HELDOUT, DURATION_S)
    if receipt and (receipt["videos"], receipt["heldout"], receipt["duration_s"]) == sizes:
        return REPO_OUT
    out = tmp_path_factory.mktemp("demo")
    rc = demo.main(["--out", str(out), "--steps", str(STEPS)])
    assert rc == 0, "make demo failed; its stages are printed above"
    assert demo.read_receipt(out) is not None or demo.source_state() is None
    return out


@pytest.mark.slow
def test_demo_trains_only_on_videos_it_does_not_evaluate_on(demo_run):
    states = {s: load_state(str(demo_run / "shards" / s)) for s in ("train", "heldout")}
    for split, want in (("train", VIDEOS - HELDOUT), ("heldout", HELDOUT)):
        assert sum(r.status == "ok" for r in states[split].values()) == want, split
    assert not set(states["train"]) & set(states["heldout"])


@pytest.mark.slow
def test_text_to_video_recall_at_1_on_held_out_videos_is_5x_chance(demo_run):
    logged = demo.last_validation(demo_run / "runs")
    n = logged["val/n"]
    assert n == HELDOUT * WINDOWS_PER_VIDEO
    table = demo.retrieval_table(logged)
    assert logged["val/t2v_r1"] >= FACTOR / n, f"text->video below {FACTOR}x chance:\n{table}"
    # the figure the trainer logged is what the saved model scores, recomputed here
    module = ReserveModule.load_from_checkpoint(
        demo_run / "runs" / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    cfg = module.model_config
    data = ShardDataModule(
        val_shards=str(demo_run / "shards" / "heldout"),
        tokenizer=str(demo_run / "shards" / "train" / "tokenizer.json"),  # the run's, learnt
        batch_size=16,
        num_workers=0,
        frame_size=cfg.frame_size,
        max_segments=cfg.max_segments,
        max_text_len=cfg.max_text_len,
        audio_frames=cfg.audio_frames,
        n_mels=cfg.n_mels,
        rank=0,
        world_size=1,
    )
    data.setup("validate")
    with torch.inference_mode():
        scores = evaluate(module.model, data.val_dataloader())
    assert scores["text->video"].r1 == pytest.approx(logged["val/t2v_r1"])
    assert scores["video->text"].r1 == pytest.approx(logged["val/v2t_r1"])


# The span objective with Reserve's recipe on the demo's shards (bench/configs/span.yaml,
# each segment its own joint sequence). bench/bench_learning.py measured, held out, 300 of
# 600 steps: each term 0.59 to 0.97 nats below chance, query cosines 0.03 to 0.22,
# text->video 7x chance. Read as one joint sequence per window instead, every term stays
# within 0.02 nats of chance with its queries' cosines near 1 (collapsed).
SPAN_STEPS, SPAN_BELOW_CHANCE, SPAN_MAX_QUERY_COS = 300, 0.3, 0.5


@pytest.mark.slow
def test_the_span_objective_learns_on_the_demo_corpus_without_collapsing(demo_run, tmp_path):
    configs = (*demo.DEMO_CONFIGS, demo.ROOT / "bench" / "configs" / "span.yaml")
    extra = (f"--trainer.val_check_interval={SPAN_STEPS}",)  # one validation, at the end
    assert demo.train(demo_run / "shards", tmp_path, SPAN_STEPS, configs, extra) == 0
    logged = demo.last_validation(tmp_path)
    for term in ("frame", "audio", "text"):
        below = logged[f"val/span/chance/{term}"] - logged[f"val/span/{term}"]
        query_cos = logged[f"val/span/cos/query/{term}"]
        assert below >= SPAN_BELOW_CHANCE, f"span/{term}: {below:.3f} nats below chance"
        assert query_cos <= SPAN_MAX_QUERY_COS, f"span/{term}: queries alike, cos {query_cos:.3f}"
    assert logged["val/t2v_r1"] * logged["val/n"] >= 2.0, demo.retrieval_table(logged)


@pytest.mark.slow
def test_demo_writes_the_picture_and_audio_of_a_held_out_window(demo_run):
    png, wav = demo_run / "sample.png", demo_run / "sample.wav"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 44


def test_a_demo_receipt_counts_only_for_the_source_it_was_made_from(tmp_path):
    if demo.source_state() is None:
        pytest.skip("not a git checkout: no run is ever reused")
    sizes = argparse.Namespace(videos=VIDEOS, heldout=HELDOUT, steps=600, duration_s=80.0, seed=0)
    demo.write_receipt(tmp_path, sizes)
    assert demo.read_receipt(tmp_path)["steps"] == 600
    receipt = json.loads((tmp_path / demo.RECEIPT).read_text())
    receipt["source"] = "0" * 64  # made from another commit or other changes
    (tmp_path / demo.RECEIPT).write_text(json.dumps(receipt))
    assert demo.read_receipt(tmp_path) is None
    assert demo.read_receipt(tmp_path / "nothing") is None


SEARCH_K = 10
# precision@10 must reach this many times a random ranking's. Measured on the demo corpus
# (24 phrases, 256 held-out segments; a random ranking gives 0.056), training seeds 0 and 1:
# after 400 steps 0.250 (4.5x) and 0.237 (4.2x); after 200 steps 0.167 (3.0x) and 0.217
# (3.9x). At window level the margin is smaller (1.7x), so segments are ranked.
SEARCH_FACTOR = 2.5
TARGET = "text-video/video"


def precision_at_k(texts: list[str], hits: np.ndarray, queries: list[str]) -> np.ndarray:
    return np.array(
        [np.mean([q in texts[i] for i in row]) for q, row in zip(queries, hits, strict=True)]
    )


@pytest.mark.slow
def test_a_spoken_phrase_finds_moments_that_say_it_far_above_a_random_ranking(demo_run, tmp_path):
    """The demo narrates 24 coloured shapes ("red circle", ...). Each name spoken at least
    twice in the held-out videos is a query against the held-out segments; precision@10
    is the share of its 10 best segments whose words contain the name, a random
    ranking's is the share of all segments that do."""
    ckpt = demo_run / "runs" / "checkpoints" / "last.ckpt"
    out = tmp_path / "index"
    heldout = str(demo_run / "shards" / "heldout")
    assert model_main(["embed", heldout, "--out", str(out), "--checkpoint", str(ckpt)]) == 0
    idx = index.load_index(str(out), "segment", [TARGET])
    texts = idx.meta["text"]
    queries = [it.name for it in VOCABULARY if sum(it.name in t for t in texts) >= 2]
    assert len(queries) >= 8, f"the held-out videos speak only {queries}"
    sentences = [f"a {q}" for q in queries]  # as the narration says them
    vectors = Encoder(load_checkpoint(str(ckpt))).encode_text(sentences)["text-video/text"].numpy()
    hits = exact_top_k(vectors, idx.vectors[TARGET], SEARCH_K, idx.present[TARGET]).ids
    found = precision_at_k(texts, hits, queries)
    chance = np.array([np.mean([q in t for t in texts]) for q in queries])
    summary = f"precision@{SEARCH_K} {found.mean():.3f}, random {chance.mean():.3f}, {len(queries)} phrases"
    assert found.mean() >= SEARCH_FACTOR * chance.mean(), summary
