"""``python -m model search``: text (or a picture) against an index -> the best moments.

Each hit: the video id, start and end, a link that opens the video at that moment
(``https://www.youtube.com/watch?v=ID&t=Ns`` for YouTube, ``URL#t=N`` otherwise), the
transcript around it and the cosine score. Text queries are matched against the video
side of the text <-> video space; a picture (``--image``) or a video (``--video``, the
mean of its segments' unit vectors) goes through the video pathway and is matched
against the same column, video to video. Search is exact (a matrix
product, in blocks) unless ``--approximate`` or the index is larger than
``--exact-limit`` rows; then faiss IVF (see model/inference/search.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from model.cli.common import add_model_arguments, encoder_from
from model.cli.main import CommandError, MissingExtra
from model.inference import index as index_io
from model.inference.search import ApproximateIndex, Hits, exact_top_k

HELP = "find the moments of an index that best match a sentence or a picture"
TARGET = "text-video/video"
YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
YOUTUBE_HOSTS = re.compile(r"^https?://(www\.|m\.)?(youtube\.com|youtu\.be)/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", help="an index folder written by `python -m model embed`")
    parser.add_argument("queries", nargs="*", metavar="TEXT", help="sentences to look for")
    parser.add_argument("--image", action="append", default=[], metavar="FILE",
                        help="a picture to look for (through the video pathway); repeatable")  # fmt: skip
    parser.add_argument("--video", action="append", default=[], metavar="FILE",
                        help="a video file or URL to look for (its segments' mean); repeatable")  # fmt: skip
    parser.add_argument("-k", type=int, default=5, help="moments per query (default 5)")
    parser.add_argument("--level", choices=index_io.LEVELS, default="segment",
                        help="rank segments (default) or whole windows")  # fmt: skip
    parser.add_argument("--approximate", action="store_true",
                        help="use faiss IVF even when exact search would fit")  # fmt: skip
    parser.add_argument("--exact-limit", type=int, default=2_000_000, metavar="N",
                        help="above this many rows search is approximate (default 2,000,000)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--png", metavar="FILE",
                        help="also draw a contact sheet of the hits' frames and words")  # fmt: skip
    add_model_arguments(parser)


def moment_link(url: str, video_id: str, start_ms: int) -> str:
    """A link that opens the video at ``start_ms`` (whole seconds)."""
    s = start_ms // 1000
    if YOUTUBE_HOSTS.match(url or "") or (not url and YOUTUBE_ID.match(video_id)):
        return f"https://www.youtube.com/watch?v={video_id}&t={s}s"
    return f"{url}#t={s}"


def context(idx: index_io.Index, row: int, lookup: dict[tuple[str, int], int]) -> str:
    """The words of the row's segment with those of its neighbours in the window."""
    key, seg = idx.meta["key"][row], idx.meta["segment"][row]
    if seg < 0:
        return idx.meta["text"][row]
    parts = [
        idx.meta["text"][lookup[(key, s)]] for s in (seg - 1, seg, seg + 1) if (key, s) in lookup
    ]
    return " ".join(p for p in parts if p)


def search(idx: index_io.Index, queries: np.ndarray, k: int, approximate: bool) -> Hits:
    valid = idx.present[TARGET]
    if not approximate:
        return exact_top_k(queries, idx.vectors[TARGET], k, valid)
    rows = np.flatnonzero(valid)
    try:
        ann = ApproximateIndex.build(idx.vectors[TARGET][rows])
    except ModuleNotFoundError:
        raise MissingExtra("approximate search needs faiss-cpu (pip install faiss-cpu)") from None
    hits = ann.search(queries, k)
    return Hits(hits.scores, np.where(hits.ids >= 0, rows[np.maximum(hits.ids, 0)], -1))


def run(args: argparse.Namespace) -> int:
    if not args.queries and not args.image and not args.video:
        raise CommandError("nothing to look for: give a sentence, --image FILE or --video FILE")
    if args.k < 1:
        raise CommandError(f"-k must be at least 1, got {args.k}")
    images = []
    for path in args.image:
        try:
            images.append(Path(path).read_bytes())
        except OSError as exc:
            raise CommandError(f"--image {path}: {exc.strerror or exc}") from None
    idx = index_io.load_index(args.index, args.level, [TARGET])
    if len(idx) == 0 or not idx.present[TARGET].any():
        raise CommandError(f"{args.index}: no {args.level} rows with {TARGET} vectors")
    encoder = encoder_from(args)
    labels, vectors = [], []
    if args.queries:
        vectors.append(encoder.encode_text(args.queries)["text-video/text"].numpy())
        labels += args.queries
    if images:
        try:
            vectors.append(encoder.encode_images(images)[TARGET].numpy())
        except ValueError as exc:
            raise CommandError(f"--image: {exc}") from None
        labels += [f"image {p}" for p in args.image]
    for video in args.video:
        try:
            got = encoder.encode_video(video)
        except ValueError as exc:
            raise CommandError(f"--video {exc}") from None
        seg = got.vectors.segments[TARGET][got.vectors.segment_present[TARGET]]  # (n, E)
        vectors.append(index_io.normalized(seg.numpy()).mean(0, keepdims=True))
        labels.append(f"video {video}")
    approximate = args.approximate or len(idx) > args.exact_limit
    hits = search(idx, np.concatenate(vectors), args.k, approximate)
    lookup = {
        (key, s): i
        for i, (key, s) in enumerate(zip(idx.meta["key"], idx.meta["segment"], strict=True))
    }
    results = []
    for q, label in enumerate(labels):
        moments = []
        for score, row in zip(hits.scores[q], hits.ids[q], strict=True):
            if row < 0:
                continue
            m = {
                c: idx.meta[c][row]
                for c in ("video_id", "key", "segment", "start_ms", "end_ms", "title")
            }
            m["link"] = moment_link(idx.meta["url"][row], m["video_id"], m["start_ms"])
            m["text"] = idx.meta["text"][row]
            m["context"] = context(idx, row, lookup)
            m["score"] = round(float(score), 6)
            m["shard"] = idx.meta["shard"][row]
            moments.append(m)
        results.append({"query": label, "moments": moments})
    if args.png:
        from model.cli.contact_sheet import draw  # matplotlib: an optional dependency

        draw(results, args.png)
    if args.json:
        json.dump({"index": args.index, "level": args.level, "approximate": approximate,
                   "results": results}, sys.stdout, indent=1)  # fmt: skip
        sys.stdout.write("\n")
        return 0
    for r in results:
        print(f"{r['query']}")  # noqa: T201
        for i, m in enumerate(r["moments"], 1):
            span = f"{_clock(m['start_ms'])}-{_clock(m['end_ms'])}"
            print(f"  {i}. {m['score']:.3f}  {m['video_id']} {span}  {m['link']}")  # noqa: T201
            print(f"     {m['context'][:160]}")  # noqa: T201
    return 0


def _clock(ms: int) -> str:
    s = ms // 1000
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
