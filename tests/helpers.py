"""Helpers shared by several test files (test files never import one another).

- loopback two-node launches (``run_two_nodes``) for the DDP tests;
- training shards of synthetic samples (``write_shards``, ``write_corrupt_shard``), and
  of the demo corpus's narration (``write_narrated_shards``: its planned words, no media);
- a test-sized ``pipelines.yaml`` (``write_config``);
- ``without_modules``: the environment of a Python in which some modules cannot be imported;
- ``item_batch``: windows whose frames, words and sounds name the same items (retrieval
  that can be learnt); ``direct_span``/``direct_span_with_negatives``: the span loss
  written out term by term; ``on_gloo_ranks``/``average_over_ranks``: a function run in
  several gloo processes on loopback, gradients averaged as DDP does;
- ``stalled_input``: a media path whose reader waits for data that does not come;
- ``http_proxy``: a real HTTP proxy (proxy.py) on loopback, with its access log;
- ``real_output``: an output folder made by the real per-video core, shared by the
  shard-tool tests, and helpers that damage copies of it.

The real output is built once per test session (the first call of
:func:`real_output`): generated media through ``ingest.core.process_video``, written
with ``ShardWriter``, rows for the failures written as the pipeline writes them, then
consolidated:

- ``speech``: 22 s with speech-like audio and ASR captions -> 2 windows
- ``silent``: 12 s without an audio stream, manual captions -> 1 window (no mel)
- ``manual``: 16 s with speech, manual captions -> 2 windows (the second: 1 segment)
- ``nocaps``: no caption file -> skipped (captions/no_captions)
- ``broken``: a truncated mp4 -> failed

Windows are 2 segments (10 s); a shard holds at most 2 samples, so each ok
video lands in its own shard (3 shards). Tests must copy before damaging anything;
the helpers at the end rewrite a tar's members, or a manifest, for that, and craft members
whose headers declare more than they hold (``huge_jpeg``, ``npy_declaring``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from devtools import mediagen
from devtools.samples import make_sample
from ingest.config import CoreConfig, FilterConfig, SegmentConfig
from ingest.core import VideoFailure, VideoSource, process_video
from ingest.download import Downloader
from shards import layout, manifest, schema
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter, encode_video

ROOT = Path(__file__).resolve().parents[1]


# --- two nodes on loopback ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_nodes(cmd: list[str], cwd: Path, timeout: float, **env: str) -> list[str]:
    """Start ``cmd`` twice (MASTER_ADDR/PORT, NODE_RANK, WORLD_SIZE=2, PYTHONPATH set, plus
    ``env``), wait for both, fail with their output unless both exit 0; their logs."""
    port = free_port()
    procs = []
    for node in (0, 1):
        node_env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            NODE_RANK=str(node),
            WORLD_SIZE="2",
            PYTHONPATH=str(ROOT),
            **env,
        )
        procs.append(
            subprocess.Popen(
                cmd, cwd=cwd, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    try:
        logs = [p.communicate(timeout=timeout)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    return logs


# --- training shards of synthetic samples ---

SEGMENTS = 3  # windows in the test shards are shorter than max_segments: padding is exercised
VIDEOS_PER_SHARD = 2
WINDOWS = 3  # per video


def write_shards(out, n_shards: int, prefix: str = "train") -> dict[str, int]:
    """n_shards shards of VIDEOS_PER_SHARD videos x WINDOWS windows; returns key -> shard index."""
    where = {}
    limits = ShardLimits(max_samples=VIDEOS_PER_SHARD * WINDOWS)
    with ShardWriter(str(out), prefix, limits) as writer:
        for v in range(n_shards * VIDEOS_PER_SHARD):
            vid = f"{prefix}{v:03d}"
            samples = [make_sample(vid, w, segments=SEGMENTS) for w in range(WINDOWS)]
            writer.add_video(samples, ManifestRow(video_id=vid, url="u", status="ok"))
            for s in samples:
                where[s.key] = v // VIDEOS_PER_SHARD
    return where


def write_corrupt_shard(path) -> tuple[list[str], list[str]]:
    """A shard with 4 good samples, one with a garbage mel and one without its 01.jpg."""
    good = [make_sample("good", w, segments=SEGMENTS) for w in range(4)]
    bad_mel = make_sample("badmel", 0, segments=SEGMENTS)
    no_jpg = make_sample("nojpg", 0, segments=SEGMENTS)
    members = encode_video(good[:2])
    members += [
        (n, b"garbage" if n.endswith(".mel.npy") else d) for n, d in encode_video([bad_mel])
    ]
    members += encode_video(good[2:])
    members += [(n, d) for n, d in encode_video([no_jpg]) if not n.endswith(".01.jpg")]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return [s.key for s in good], [bad_mel.key, no_jpg.key]


# --- a stalled input ---


@contextlib.contextmanager
def stalled_input(path: Path, release_after_s: float = 60.0) -> Iterator[Path]:
    """A named pipe at ``path``: ffprobe or ffmpeg opening it waits, as on a stalled
    source, until ``release_after_s`` passes; then it gets a few bytes of garbage and
    fails. So code without a deadline fails such a test late instead of hanging it."""
    os.mkfifo(path)
    done = threading.Event()

    def release() -> None:
        if done.wait(release_after_s):
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader left
            return
        with contextlib.suppress(OSError):
            os.write(fd, b"not media")
        os.close(fd)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()


# --- pipelines.yaml for the ingest tests ---


def write_config(path: Path, **download) -> Path:
    """The repo's pipelines.yaml with test-sized windows and filters."""
    cfg = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    ing = cfg["ingest"]
    ing["segments"].update(window_segments=2, window_stride=2, min_segments=1)
    ing["filters"].update(min_words_per_window=5)
    ing["download"].update(backoff_s=0.05, backoff_max_s=0.2, socket_timeout_s=10, **download)
    ing["shards"].update(videos_per_group=2, min_groups=2)
    path.write_text(yaml.safe_dump(cfg))
    return path


# --- a Python without some modules ---

# Loaded at interpreter start-up (from PYTHONPATH): imports of the modules named in
# MONTAGE_TEST_BLOCK fail as if they were not installed.
_BLOCKER = """
import os, sys

_BLOCKED = [b for b in os.environ.get("MONTAGE_TEST_BLOCK", "").split(",") if b]


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in _BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
"""


def without_modules(tmp_path: Path, *modules: str) -> dict[str, str]:
    """os.environ for a subprocess whose Python cannot import ``modules`` (nor their
    submodules), with the checkout first on its path."""
    site = tmp_path / "site-blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_BLOCKER)
    return dict(
        os.environ,
        PYTHONPATH=f"{site}{os.pathsep}{ROOT}",
        MONTAGE_TEST_BLOCK=",".join(modules),
    )


# --- the real output folder ---

CFG = CoreConfig(
    filters=FilterConfig(min_words_per_window=5),
    segments=SegmentConfig(window_segments=2, window_stride=2, min_segments=1),
)
TITLES = {
    "speech": "How to fold a paper crane, step by step",
    "silent": "Silent timelapse",
    "manual": "Knife skills for beginners",
    "nocaps": "No captions here",
    "broken": "A broken download",
}


@dataclass(frozen=True, slots=True)
class RealOutput:
    out: Path  # the output folder (shards, _index/, manifest.parquet)
    rows: dict[str, ManifestRow]  # video id -> its row as consolidated

    @property
    def shards(self) -> list[Path]:
        return sorted(self.out.glob("*.tar"))


_BUILT: dict[str, RealOutput] = {}


def _media(root: Path) -> dict[str, tuple[Path, Path | None]]:
    made: dict[str, tuple[Path, Path | None]] = {}
    video = mediagen.make_video(root / "speech.mp4", 22, audio="speech", width=320, height=180)
    made["speech"] = (video, mediagen.write_auto_vtt(root / "speech.vtt", mediagen.make_words(22)))
    video = mediagen.make_video(root / "silent.mp4", 12, audio=None, width=320, height=180)
    words = mediagen.make_words(12, seed=2)
    made["silent"] = (video, mediagen.write_manual_vtt(root / "silent.vtt", words))
    video = mediagen.make_video(root / "manual.mp4", 16, audio="speech", width=320, height=180)
    words = mediagen.make_words(16, seed=3)
    made["manual"] = (video, mediagen.write_manual_vtt(root / "manual.vtt", words))
    video = mediagen.make_video(root / "nocaps.mp4", 12, audio="speech", width=320, height=180)
    made["nocaps"] = (video, None)
    whole = mediagen.make_video(root / "whole.mp4", 12, audio="speech", width=320, height=180)
    broken = mediagen.truncate(whole, root / "broken.mp4", 0.02)
    made["broken"] = (broken, mediagen.write_auto_vtt(root / "broken.vtt", words))
    return made


def build(root: Path) -> RealOutput:
    out = root / "out"
    failures: list[ManifestRow] = []
    with ShardWriter(str(out), "shard-test", ShardLimits(max_samples=2)) as writer:
        for vid, (video, captions) in _media(root / "media").items():
            url = f"http://127.0.0.1/{vid}.mp4"
            source = VideoSource(video_id=vid, url=url, title=TITLES[vid])
            try:
                result = process_video(video, captions, CFG, source)
            except VideoFailure as exc:
                failures.append(
                    ManifestRow(vid, url, exc.status, exc.stage, exc.reason, exc.message, run="t")
                )
                continue
            row = ManifestRow(
                video_id=vid, url=url, status="ok", title=TITLES[vid],
                duration_ms=result.duration_ms, segments=result.segments,
                windows=len(result.samples), words=result.words,
                caption_kind=result.caption_kind, has_audio=result.has_audio, run="t",
            )  # fmt: skip
            writer.add_video(result.samples, row)
    fs, path = layout.open_output(str(out))
    manifest.write_rows_atomic(fs, path, f"{layout.INDEX_DIR}/rows-t-0.parquet", failures)
    rows = manifest.consolidate(str(out), "t")
    return RealOutput(out, {r.video_id: r for r in rows})


def real_output(tmp_path_factory) -> RealOutput:
    """The shared output folder, built on first use in this session."""
    if "out" not in _BUILT:
        (root := tmp_path_factory.mktemp("real_shards")).joinpath("media").mkdir()
        _BUILT["out"] = build(root)
    return _BUILT["out"]


# --- Damaged copies: tar members rewritten in memory, never extracted ---

Members = list[tuple[str, bytes]]


def read_members(path: Path) -> Members:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def write_members(path: Path, members: Members) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def edit_json(members: Members, key: str, change: Callable[[dict], None]) -> Members:
    out = []
    for name, data in members:
        if name == f"{key}.json":
            meta = json.loads(data)
            change(meta)
            data = json.dumps(meta).encode()
        out.append((name, data))
    return out


def huge_jpeg(data: bytes, width: int = 30000, height: int = 30000) -> bytes:
    """A real JPEG whose SOF0 header declares width x height; the scan data is unchanged."""
    at = 2  # after SOI; each header segment: FF, marker, length (2, counting itself), body
    while data[at + 1] != 0xC0:  # SOF0 body: precision (1), height (2), width (2), ...
        assert data[at] == 0xFF and data[at + 1] != 0xDA, "a baseline JPEG has SOF0 before SOS"
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def npy_declaring(shape: tuple[int, ...], descr: str = "|u1", payload: bytes = bytes(64)) -> bytes:
    """A .npy header declaring ``shape`` of ``descr``, followed by ``payload`` only."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def rewrite_manifest(out: Path, change: Callable[[list[manifest.ManifestRow]], list]) -> None:
    """A consolidated folder (no _index/), with manifest.parquet's rows changed."""
    fs, root = layout.open_output(str(out))
    rows = manifest.read_rows(fs, str(out / layout.MANIFEST_NAME))
    shutil.rmtree(out / layout.INDEX_DIR)
    manifest.write_rows_atomic(fs, root, layout.MANIFEST_NAME, change(rows))


# --- training runs (train.py tests) ---


def tiny_config(out: Path, every: int = 2, callbacks: list[dict] | None = None) -> Path:
    """configs/tiny.yaml with outputs under `out`, small test windows and fast settings."""
    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    trainer = cfg["trainer"]
    trainer["default_root_dir"] = str(out / "runs")  # checkpoints/, tensorboard/, csv/
    (ckpt,) = [c for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    ckpt["init_args"].update(every_n_train_steps=every)
    trainer["callbacks"] += callbacks or []
    trainer.update(enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    cfg["model"].update(config={"max_segments": 4}, warmup_steps=2)
    cfg["data"].update(batch_size=3, steps_per_epoch=4, num_workers=0, shuffle_buffer=4)
    path = out / "tiny.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def recorder(out: Path) -> dict:
    return {"class_path": "model.train.callbacks.KeyRecorder", "init_args": {"dirpath": str(out)}}


def steps_of(out: Path, rank: int = 0) -> list[dict]:
    """KeyRecorder's rows: one per training step, {"step", "epoch", "keys"}."""
    lines = (out / f"keys-rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


# --- downloads (YouTube cannot be reached from tests) ---


class YoutubeShaped(Downloader):
    """A Downloader whose site answers every URL with one YouTube-shaped info dict
    (``info``, settable; None: ask the real extractor). Everything after that answer, the
    format and caption choice and every download, is the production path."""

    def __init__(self, info: dict | None, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.info = info

    def extract_info(self, url: str) -> dict:
        return dict(self.info) if self.info is not None else super().extract_info(url)


def write_narrated_shards(out, n_videos: int, segments: int = 4) -> int:
    """Shards whose words are the demo corpus's narration of ``n_videos`` 40 s videos (as
    ``devtools.demo_corpus`` plans them, nothing rendered), placed in the (segment,
    sub-segment) of their start time; windows of ``segments``. Returns the window count."""
    from dataclasses import replace

    from devtools.demo_corpus import plan_video

    seg_ms = make_sample().meta.params.segment_ms
    windows = 0
    limits = ShardLimits(max_samples=4 * 40_000 // (segments * seg_ms))
    with ShardWriter(str(out), "narrated", limits) as writer:
        for v in range(n_videos):
            video = plan_video(0, v, "train", 40_000)
            samples = []
            for w in range(40_000 // (segments * seg_ms)):
                sample = make_sample(f"narr{v:03d}", w, segments=segments)
                start = sample.meta.start_ms
                words = [
                    schema.WordRecord(
                        x.text,
                        x.start_ms,
                        x.end_ms,
                        (x.start_ms - start) // seg_ms,
                        min(2, (x.start_ms - start) % seg_ms * 3 // seg_ms),
                    )
                    for x in video.words
                    if start <= x.start_ms and x.end_ms <= start + segments * seg_ms
                ]
                samples.append(replace(sample, meta=replace(sample.meta, words=words)))
            writer.add_video(samples, ManifestRow(video_id=f"narr{v:03d}", url="u", status="ok"))
            windows += len(samples)
    return windows


# --- a real HTTP proxy on loopback (proxy.py) ---


@contextlib.contextmanager
def http_proxy(folder: Path) -> Iterator[tuple[str, Path]]:
    """A proxy.py HTTP proxy on 127.0.0.1: (its URL, its access log). Stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file, log_file = folder / "port", folder / "access.log"
    proxy = Path(sys.executable).with_name("proxy")
    cmd = [str(proxy), "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    cmd += ["--log-file", str(log_file), "--log-level", "INFO", "--num-workers", "1", "--threaded"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, f"proxy.py exited with {proc.returncode}"
            assert time.monotonic() < deadline, "proxy.py did not start in 60 s"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass  # listening
        yield f"http://127.0.0.1:{port}", log_file
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- windows whose frames, words and sounds name the same items (retrieval that can learn) ---

ITEMS = 6  # items: each has its own colour, word and sound


def item_batch(batch_size: int, generator, config=None):
    """Windows of 4 segments, each showing, naming and sounding one of ITEMS items at
    random (``config``: a tiny ModelConfig with 4 segments when None)."""
    import torch

    from model.config import SUBSEGMENTS, ModelConfig
    from model.data.batch import Batch

    cfg = config or ModelConfig.from_name("tiny", max_segments=4)
    B, S, L = batch_size, 4, 4
    H, W = cfg.frame_size
    items = torch.randint(0, ITEMS, (B, S), generator=generator)  # (B, S)
    palette = torch.tensor(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
        dtype=torch.uint8,
    )
    frames = palette[items][..., None, None].expand(B, S, 3, H, W).contiguous()
    bands = torch.arange(cfg.n_mels) // (cfg.n_mels // ITEMS)  # (M,) item of each mel band
    audio = 5.0 * (bands == items[..., None, None, None]).float()  # (B, S, 1, 1, M)
    audio = audio.expand(B, S, SUBSEGMENTS, cfg.audio_frames, cfg.n_mels).contiguous()
    text = torch.zeros(B, S, SUBSEGMENTS, L, dtype=torch.long)
    text[..., 0] = 3 + items[..., None]  # past PAD, MASK and MASKAUDIO
    text_mask = text > 0
    segment_mask = torch.ones(B, S, dtype=torch.bool)
    return Batch(frames, audio, text, text_mask, segment_mask, torch.ones(B, dtype=torch.bool))


# --- the span loss written out term by term (docs/DESIGN.md section 3.1) ---


def direct_span(x, y, valid, s):
    """The term of docs/DESIGN.md section 3.1:
    1/2 [mean_l (LSE_v xh_l.yh_v - xh_l.yh_l) + mean_l (LSE_v yh_l.xh_v - yh_l.xh_l)]."""
    import torch

    rows = [i for i in range(x.shape[0]) if valid[i]]
    c = torch.exp(torch.clamp(s, max=math.log(100.0)) / 2)
    xh = [x[i] / torch.sqrt((x[i] ** 2).sum() + 1e-5) * c for i in rows]
    yh = [y[i] / torch.sqrt((y[i] ** 2).sum() + 1e-5) * c for i in rows]
    n = len(rows)
    a = sum(
        torch.logsumexp(torch.stack([xh[q] @ yh[v] for v in range(n)]), 0) - xh[q] @ yh[q]
        for q in range(n)
    )
    b = sum(
        torch.logsumexp(torch.stack([yh[q] @ xh[v] for v in range(n)]), 0) - yh[q] @ xh[q]
        for q in range(n)
    )
    return 0.5 * (a / n + b / n)


def direct_span_with_negatives(x, y, valid, negatives, s):
    """Reserve's audio term: a query l is scored against the valid targets and every extra
    negative (targets with no query); a target l against the valid queries only."""
    import torch

    c = torch.exp(torch.clamp(s, max=math.log(100.0)) / 2)

    def unit(v):
        return v / torch.sqrt((v**2).sum() + 1e-5) * c

    rows = [i for i in range(x.shape[0]) if valid[i]]
    columns = [i for i in range(x.shape[0]) if valid[i] or negatives[i]]
    a = sum(
        torch.logsumexp(torch.stack([unit(x[q]) @ unit(y[v]) for v in columns]), 0)
        - unit(x[q]) @ unit(y[q])
        for q in rows
    )
    b = sum(
        torch.logsumexp(torch.stack([unit(y[q]) @ unit(x[u]) for u in rows]), 0)
        - unit(y[q]) @ unit(x[q])
        for q in rows
    )
    return 0.5 * (a / len(rows) + b / len(rows))


# --- several gloo processes on loopback (gathered losses, averaged gradients) ---


def on_gloo_ranks(fn, world: int, out: Path) -> dict:
    """Run ``fn(rank, world)`` in ``world`` processes joined by gloo on 127.0.0.1; what
    rank 0 returns (a dict of tensors) is saved to ``out`` and returned. ``fn`` must be a
    module-level function (the processes are spawned)."""
    import torch
    import torch.multiprocessing as mp

    mp.spawn(_gloo_rank, args=(world, free_port(), fn, str(out)), nprocs=world, join=True)
    return torch.load(out)


def _gloo_rank(rank: int, world: int, port: int, fn, out: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        result = fn(rank, world)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def average_over_ranks(grads) -> None:
    """What DDP does to parameter gradients: each becomes its mean over the ranks, in place."""
    import torch.distributed as dist

    for g in grads:
        dist.all_reduce(g)
        g /= dist.get_world_size()
