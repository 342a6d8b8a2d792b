"""A small corpus of narrated videos whose picture, speech and captions agree.

Nobody can download YouTube here, so ``make demo`` and the learning test use
videos made by this module. Each video shows a sequence of coloured shapes drawn
from ``demo_assets.VOCABULARY``; while an item is on screen a synthetic voice
names it ("here is a red circle on the screen") and auto-captions carry the time
of every word. Item order, phrasing, voice and picture layout come from a seeded
RNG per video, so nothing is learnable from position and the same seed gives the
same corpus.

    python -m devtools.demo_corpus OUT --videos 40 --heldout 8 [--serve]

writes ``OUT/videos/<id>.{mp4,en.vtt,info.json,html}``, ``OUT/index.html``,
``OUT/inputs.csv`` (relative paths) and, last, ``OUT/corpus.json``. With
``--serve`` it serves OUT on 127.0.0.1 and writes ``train.txt`` / ``heldout.txt``
(page URLs for yt-dlp) and ``train.csv`` / ``heldout.csv`` (``url,id,captions``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import html
import io
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devtools.demo_assets import (
    TEMPLATES,
    VOCABULARY,
    VOICES,
    Item,
    assemble_audio,
    draw_item,
    encode_mp4,
    page_html,
    phrase_words,
    spoken_ms,
    spoken_word,
)
from devtools.mediagen import render_auto_vtt
from ingest.captions import Word

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout")


@dataclass(frozen=True, slots=True)
class SpokenItem:
    """One item: on screen over [start_ms, end_ms), named by ``words`` inside that span."""

    colour: str
    shape: str
    start_ms: int
    end_ms: int
    words: tuple[Word, ...]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def phrase(self) -> str:
        return " ".join(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class DemoVideo:
    """Everything known about one generated video; its info.json, typed."""

    id: str
    index: int
    split: str
    title: str
    voice: str
    fps: int
    duration_ms: int
    items: tuple[SpokenItem, ...]

    @property
    def words(self) -> list[Word]:
        return [w for item in self.items for w in item.words]

    def to_info(self) -> dict:
        """The info.json mapping: yt-dlp's field names plus the items and word times."""
        items = [
            {
                "name": i.name,
                **{k: getattr(i, k) for k in ("colour", "shape", "start_ms", "end_ms")},
                "words": [dataclasses.asdict(w) for w in i.words],
            }
            for i in self.items
        ]
        return {
            **{k: getattr(self, k) for k in ("id", "title", "index", "split", "voice", "fps")},
            "description": "A narrator names coloured shapes as they appear on screen.",
            "channel": "Montage demo",
            "duration": self.duration_ms / 1000,
            "duration_ms": self.duration_ms,
            "items": items,
        }

    @classmethod
    def from_info(cls, info: dict) -> DemoVideo:
        items = tuple(
            SpokenItem(
                *(i[k] for k in ("colour", "shape", "start_ms", "end_ms")),
                words=tuple(Word(**w) for w in i["words"]),
            )
            for i in info["items"]
        )
        keys = ("id", "index", "split", "title", "voice", "fps", "duration_ms")
        return cls(**{k: info[k] for k in keys}, items=items)


@dataclass(frozen=True, slots=True)
class CorpusIndex:
    """The generated corpus: where it is and what each video holds."""

    root: Path
    seed: int
    videos: tuple[DemoVideo, ...]

    def split(self, name: str) -> list[DemoVideo]:
        """The videos of one split ("train", "heldout"), or all of them for "all"."""
        if name not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {name!r}")
        return [v for v in self.videos if name in ("all", v.split)]

    def save(self) -> Path:
        data = {"seed": self.seed, "videos": [v.to_info() for v in self.videos]}
        return _write_atomic(self.root / "corpus.json", json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> CorpusIndex:
        data = json.loads((Path(root) / "corpus.json").read_text())
        videos = tuple(DemoVideo.from_info(v) for v in data["videos"])
        return cls(root=Path(root), seed=data["seed"], videos=videos)


# --- planning: what is said and shown when ----------------------------------


def video_id(seed: int, index: int) -> str:
    return f"shapes-s{seed}-{index:04d}"


def _item_sequence(rng: random.Random) -> Iterator[Item]:
    """Endless item order: shuffled passes over the vocabulary, no item twice in a row."""
    last = None
    while True:
        block = list(VOCABULARY)
        rng.shuffle(block)
        if block[0] == last:
            block[0], block[-1] = block[-1], block[0]
        yield from block
        last = block[-1]


def _ceil_to(ms: int, step: int) -> int:
    return -(-ms // step) * step


def plan_video(seed: int, index: int, split: str, duration_ms: int, fps: int = 25) -> DemoVideo:
    """Lay out one video: items, their on-screen spans and each word's time.

    An item's span starts on a frame boundary; its phrase starts 80-200 ms in,
    with 30-90 ms between words, and is followed by a 250-600 ms pause before the
    next item. Items are added while they fit in ``duration_ms`` (at least one);
    the last stays on screen to the end, so the video lasts ``duration_ms`` rounded
    down to a whole frame (or, if that is too short for one item, as long as it).
    """
    rng = random.Random(f"montage-demo:{seed}:{index}")
    voice = rng.choice(VOICES)
    sequence = _item_sequence(rng)
    items: list[SpokenItem] = []
    slot = 0
    while True:
        item, template = next(sequence), rng.choice(TEMPLATES)
        t = slot + rng.randrange(80, 220, 20)
        words = []
        for k, text in enumerate(phrase_words(template, item)):
            t += rng.randrange(30, 100, 10) if k else 0
            words.append(Word(text, t, t + spoken_ms(text, voice)))
            t = words[-1].end_ms
        end = _ceil_to(t + rng.randrange(250, 650, 50), 1000 // fps)
        if items and end > duration_ms:
            break
        items.append(SpokenItem(item.colour, item.shape, slot, end, tuple(words)))
        slot = end
    last = items[-1]
    end = max(last.end_ms, duration_ms // (1000 // fps) * (1000 // fps))
    items[-1] = SpokenItem(last.colour, last.shape, last.start_ms, end, last.words)
    title = f"Shapes and colours, episode {index + 1}"
    vid = video_id(seed, index)
    return DemoVideo(vid, index, split, title, voice, fps, end, tuple(items))


# --- rendering: files on disk -----------------------------------------------


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_video(video: DemoVideo, videos_dir: Path) -> None:
    """Write ``<id>.mp4``, ``.en.vtt``, ``.html`` and, last, ``.info.json`` into videos_dir.

    Everything is made in a hidden temporary folder and renamed into place when
    whole, so a failure leaves no file of this video visible.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{video.id}.", dir=videos_dir))
    try:
        placed = [(w.start_ms, spoken_word(w.text, video.voice)) for w in video.words]
        rng = random.Random(f"montage-demo-pictures:{video.id}")
        pictures = [
            (draw_item(Item(i.colour, i.shape), rng), i.end_ms - i.start_ms) for i in video.items
        ]
        encode_mp4(
            pictures, assemble_audio(placed, video.duration_ms), tmp / "video.mp4", video.fps
        )
        (tmp / "captions.vtt").write_text(render_auto_vtt(video.words), encoding="utf-8")
        (tmp / "page.html").write_text(page_html(video.id, video.title), encoding="utf-8")
        (tmp / "info.json").write_text(json.dumps(video.to_info(), indent=1), encoding="utf-8")
        for name, final in (
            ("video.mp4", f"{video.id}.mp4"),
            ("captions.vtt", f"{video.id}.en.vtt"),
            ("page.html", f"{video.id}.html"),
            ("info.json", f"{video.id}.info.json"),  # last: marks the video complete
        ):
            os.replace(tmp / name, videos_dir / final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_rendered(video: DemoVideo, videos_dir: Path) -> bool:
    """True when a previous run left this exact video (same plan) complete on disk."""
    info = videos_dir / f"{video.id}.info.json"
    if not info.is_file():
        return False
    same = json.loads(info.read_text()) == video.to_info()
    return same and all((videos_dir / f"{video.id}{ext}").is_file() for ext in (".mp4", ".en.vtt"))


def _write_listings(index: CorpusIndex) -> None:
    """``inputs.csv`` (relative paths) and ``index.html`` (links to every page)."""
    rows = [f"videos/{v.id}.mp4,{v.id},videos/{v.id}.en.vtt\n" for v in index.videos]
    _write_atomic(index.root / "inputs.csv", "url,id,captions\n" + "".join(rows))
    links = "".join(
        f'<li><a href="videos/{v.id}.html">{html.escape(v.title)}</a> ({v.split})</li>\n'
        for v in index.videos
    )
    head = "<!DOCTYPE html>\n<html><head><title>Montage demo corpus</title></head>"
    _write_atomic(index.root / "index.html", f"{head}\n<body><ul>\n{links}</ul></body></html>\n")


def generate_corpus(
    out: Path,
    n_videos: int,
    seed: int = 0,
    duration_s: float = 60.0,
    heldout: int = 0,
    workers: int = 2,
    fps: int = 25,
    progress: Callable[[DemoVideo], None] | None = None,
) -> CorpusIndex:
    """Generate ``n_videos`` narrated videos under ``out``; the last ``heldout`` are held out.

    Videos already on disk from an identical plan are kept, not re-rendered.
    ``progress`` is called once per finished video (from worker threads).
    """
    if n_videos < 1 or not 0 <= heldout <= n_videos:
        raise ValueError(
            f"need n_videos >= 1 and 0 <= heldout <= n_videos, got {n_videos}, {heldout}"
        )
    if fps < 1 or 1000 % fps:
        raise ValueError(f"fps must divide 1000 so frames fall on whole ms, got {fps}")
    out = Path(out)
    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def make(index: int) -> DemoVideo:
        split = "heldout" if index >= n_videos - heldout else "train"
        video = plan_video(seed, index, split, round(duration_s * 1000), fps)
        started = time.perf_counter()
        if _is_rendered(video, videos_dir):
            log.info("%s: already complete, kept", video.id)
        else:
            render_video(video, videos_dir)
            log.info(
                "%s: %d items, %.1f s, %s, rendered in %.2f s",
                *(video.id, len(video.items), video.duration_ms / 1000, video.voice),
                time.perf_counter() - started,
            )
        if progress is not None:
            with lock:
                progress(video)
        return video

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        videos = tuple(pool.map(make, range(n_videos)))
    index = CorpusIndex(root=out, seed=seed, videos=videos)
    _write_listings(index)
    index.save()  # last: marks the corpus complete
    return index


def write_inputs(out: Path, base_url: str, split: str = "train", fmt: str = "txt") -> Path:
    """Write the URL list of one split of the corpus at ``out``, served at ``base_url``.

    ``fmt="txt"``: ``<split>.txt``, one page URL per line (yt-dlp finds the video
    and its subtitle track on the page). ``fmt="csv"``: ``<split>.csv`` with
    ``url,id,captions`` columns: the mp4 URL, the video id and the VTT URL.
    ``fmt="pages"``: ``<split>.pages.csv`` with ``url,id`` columns: the page URL and the
    corpus's own id, so the ids (and a resumed run's manifest) do not depend on the port
    the corpus is served at.
    """
    index = CorpusIndex.load(out)
    base = base_url.rstrip("/")
    videos = index.split(split)
    name = f"{split}.{fmt}"
    if fmt == "txt":
        text = "".join(f"{base}/videos/{v.id}.html\n" for v in videos)
    elif fmt in ("csv", "pages"):
        if fmt == "csv":
            rows = [["url", "id", "captions"]] + [
                [f"{base}/videos/{v.id}.mp4", v.id, f"{base}/videos/{v.id}.en.vtt"] for v in videos
            ]
        else:
            rows = [["url", "id"]] + [[f"{base}/videos/{v.id}.html", v.id] for v in videos]
            name = f"{split}.pages.csv"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        text = buf.getvalue()
    else:
        raise ValueError(f"fmt must be 'txt', 'csv' or 'pages', got {fmt!r}")
    return _write_atomic(Path(out) / name, text)


# --- command line -----------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        "python -m devtools.demo_corpus", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--videos", type=int, required=True, help="number of videos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=float, default=60.0, help="length of each video")
    p.add_argument("--heldout", type=int, default=0, help="videos kept aside (the last ones)")
    p.add_argument("--workers", type=int, default=2, help="videos rendered at once")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--serve", action="store_true", help="serve OUT on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=0, help="port for --serve (0: any free one)")
    return p.parse_args(argv)


def serve(out: Path, port: int = 0) -> None:
    """Serve ``out``, write its URL lists, and block until Ctrl-C or SIGTERM (main thread only).

    Both signals raise KeyboardInterrupt in the main thread, which leaves the
    server's ``with`` block wherever it was and so always stops the server.
    """
    from devtools.localserve import LocalServer

    index = CorpusIndex.load(out)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with LocalServer(out, port=port) as server:
            for split in SPLITS:
                for fmt in ("txt", "csv") if index.split(split) else ():
                    log.info("wrote %s", write_inputs(out, server.base_url, split, fmt))
            print(f"serving {out} at {server.base_url}", flush=True)  # noqa: T201
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopped serving")
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    started = time.perf_counter()
    with tqdm(total=args.videos, unit="video") as bar, logging_redirect_tqdm():
        index = generate_corpus(
            args.out,
            args.videos,
            seed=args.seed,
            duration_s=args.duration_s,
            heldout=args.heldout,
            workers=args.workers,
            fps=args.fps,
            progress=lambda _video: bar.update(),
        )
    minutes = sum(v.duration_ms for v in index.videos) / 60_000
    elapsed = time.perf_counter() - started
    log.info("%d videos, %.1f min of video in %.1f s", len(index.videos), minutes, elapsed)
    print(f"wrote {len(index.videos)} videos to {index.root}", flush=True)  # noqa: T201
    if args.serve:
        serve(args.out, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
