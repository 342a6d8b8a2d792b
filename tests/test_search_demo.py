"""Search finds what the held-out demo videos say: a phrase spoken in them returns, among
its top moments, segments whose transcripts contain it, far above a random ranking.

The demo narrates 24 coloured shapes ("red circle", ...). Each name spoken in the held-out
videos is a query against the segments of the held-out index; precision@10 is the share of
the 10 best segments whose words contain the name, and a random ranking's precision is the
share of all segments that do. Reuses `make demo`'s output when its receipt matches (see
tests/test_learning.py), else runs the shortened demo once.
"""

from __future__ import annotations

import numpy as np
import pytest

from devtools.demo_assets import VOCABULARY
from model.cli.main import main
from model.inference import Encoder, index, load_checkpoint
from model.inference.search import exact_top_k
from tests.test_learning import demo_run  # noqa: F401  (the fixture)

K = 10
FACTOR = 3.0  # precision@10 must reach this many times a random ranking's
TARGET = "text-video/video"


def precision_at_k(texts: list[str], hits: np.ndarray, queries: list[str]) -> np.ndarray:
    return np.array(
        [np.mean([q in texts[i] for i in row]) for q, row in zip(queries, hits, strict=True)]
    )


@pytest.mark.slow
def test_a_spoken_phrase_finds_moments_that_say_it_far_above_a_random_ranking(demo_run, tmp_path):  # noqa: F811
    ckpt = demo_run / "runs" / "checkpoints" / "last.ckpt"
    out = tmp_path / "index"
    assert (
        main(
            [
                "embed",
                str(demo_run / "shards" / "heldout"),
                "--out",
                str(out),
                "--checkpoint",
                str(ckpt),
            ]
        )
        == 0
    )
    idx = index.load_index(str(out), "segment", [TARGET])
    texts = idx.meta["text"]
    queries = [it.name for it in VOCABULARY if sum(it.name in t for t in texts) >= 2]
    assert len(queries) >= 8, f"the held-out videos speak only {queries}"
    vectors = Encoder(load_checkpoint(str(ckpt))).encode_text(queries)["text-video/text"].numpy()
    hits = exact_top_k(vectors, idx.vectors[TARGET], K, idx.present[TARGET]).ids
    found = precision_at_k(texts, hits, queries)
    chance = np.array([np.mean([q in t for t in texts]) for q in queries])
    summary = (
        f"precision@{K} {found.mean():.3f}, random {chance.mean():.3f}, {len(queries)} phrases"
    )
    assert found.mean() >= FACTOR * chance.mean(), summary
