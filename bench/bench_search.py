"""Search and embedding costs: query latency exact vs approximate, recall, index size, throughput.

    python bench/bench_search.py                          # 10^4 and 10^6 rows, dim 256
    python bench/bench_search.py --rows 10000 --dim 768   # Reserve Base's embedding width

Measured in one run (medians over ``--repeats``):

- query latency for ``--queries`` text queries at each size: exact (blocked matrix product,
  model/inference/search.py, the baseline) and approximate (faiss IVF-flat, nprobe 16), and
  the approximate index's build time;
- recall@10 of approximate against exact search, on synthetic vectors drawn around
  ``--clusters`` centres (real embeddings cluster by topic; uniformly random vectors are
  the worst case for an inverted file and are reported beside);
- index size per video-hour: the Parquet bytes ``embed`` writes for one hour of video
  (45 windows of 16 five-second segments, 720 segment rows, ~2.5 words/s of transcript)
  at the model's vector width;
- embedding throughput of the tiny model on one CPU thread: windows/s (with their
  segments, as ``embed`` does) per core.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script too

from model.inference.index import to_table
from model.inference.search import ApproximateIndex, ExactIndex, recall_at_k

WORDS = [
    "we",
    "take",
    "the",
    "pan",
    "and",
    "heat",
    "some",
    "oil",
    "then",
    "add",
    "the",
    "onions",
    "and",
    "stir",
    "for",
    "three",
    "minutes",
]


def vectors(n: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    if clusters <= 0:
        return rng.standard_normal((n, dim), dtype=np.float32)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):  # in blocks: memory holds one block of noise
        m = min(100_000, n - i)
        out[i : i + m] = centres[rng.integers(0, clusters, m)]
        out[i : i + m] += 0.6 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def search_rows(n: int, args: argparse.Namespace, clusters: int) -> dict:
    rng = np.random.default_rng(args.seed)
    x = vectors(n, args.dim, clusters, rng)
    q = x[rng.choice(n, args.queries, replace=False)] + 0.3 * rng.standard_normal(
        (args.queries, args.dim), dtype=np.float32
    )
    flat = ExactIndex(x)
    exact_s, exact = timed(lambda: flat.search(q, 10), args.repeats)
    t = time.perf_counter()
    ann = ApproximateIndex.build(x, nprobe=args.nprobe, seed=args.seed)
    build_s = time.perf_counter() - t
    approx_s, approx = timed(lambda: ann.search(q, 10), args.repeats)
    return {
        "rows": n, "clusters": clusters, "exact_ms_per_query": 1e3 * exact_s / args.queries,
        "approx_ms_per_query": 1e3 * approx_s / args.queries, "build_s": build_s,
        "recall@10": recall_at_k(approx.ids, exact.ids),
    }  # fmt: skip


def index_bytes_per_hour(dim: int, rng: np.random.Generator) -> int:
    rows = []
    for w in range(45):  # 45 windows x 80 s = one hour
        for seg in [-1, *range(16)]:
            n_words = 200 if seg < 0 else 12
            text = " ".join(WORDS[i % len(WORDS)] for i in rng.integers(0, 99, n_words))
            row = {"key": f"vid{w:03d}_w{w:04d}", "video_id": "abcdefghijk",
                   "url": "https://www.youtube.com/watch?v=abcdefghijk", "title": "A video",
                   "level": "window" if seg < 0 else "segment", "window": w, "segment": seg,
                   "start_ms": w * 80_000, "end_ms": w * 80_000 + 5000, "text": text,
                   "shard": "gs://bucket/shards/shard-abc-000"}  # fmt: skip
            for name in (
                "text-video/text",
                "text-video/video",
                "audio-video/audio",
                "audio-video/video",
            ):
                row[name] = rng.standard_normal(dim).astype(np.float32)
            rows.append(row)
    names = ["text-video/text", "text-video/video", "audio-video/audio", "audio-video/video"]
    table = to_table(rows, names, dim, "0" * 64)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return len(buf.getvalue())


def embed_throughput(windows: int, repeats: int) -> float:
    import torch

    from model.config import ModelConfig
    from model.data.batch import random_batch
    from model.data.collate import DecodeConfig
    from model.data.tokenizer import ByteTokenizer
    from model.inference import Encoder, Loaded
    from model.objectives.reserve import Reserve

    torch.set_num_threads(1)
    cfg = ModelConfig.from_name("tiny", vocab_size=258)
    model = Reserve(cfg).eval()
    dec = DecodeConfig(
        cfg.frame_size, cfg.max_segments, cfg.max_text_len, cfg.audio_frames, cfg.n_mels
    )
    enc = Encoder(Loaded(model, ByteTokenizer(), dec, "tiny", ""), "cpu", batch_size=8)
    batch = random_batch(cfg, windows, generator=torch.Generator().manual_seed(0))
    seconds, _ = timed(lambda: enc.encode_windows(batch), repeats)
    return windows / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--windows", type=int, default=16, help="windows for the throughput run")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(
        f"{'rows':>9} {'vectors':>9} {'exact ms/q':>11} {'approx ms/q':>12} {'build s':>8} {'recall@10':>10}"
    )
    for n in args.rows:
        for clusters in (args.clusters, 0):
            r = search_rows(n, args, clusters)
            kind = "clustered" if clusters else "uniform"
            print(f"{n:>9,} {kind:>9} {r['exact_ms_per_query']:>11.3f} {r['approx_ms_per_query']:>12.3f} "
                  f"{r['build_s']:>8.1f} {r['recall@10']:>10.3f}")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    for dim in (64, 768):
        mb = index_bytes_per_hour(dim, rng) / 1e6
        print(f"index size: {mb:.2f} MB per video-hour at {dim}-d vectors (4 vectors per row)")
    wps = embed_throughput(args.windows, args.repeats)
    print(
        f"embedding throughput (tiny, 16-segment windows with their segments): {wps:.2f} windows/s per core"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
