"""An output folder made by the real per-video core, shared by the shard-tool tests.

Built once per test session (the first call of :func:`real_output`): generated
media through ``ingest.core.process_video``, written with ``ShardWriter``, rows
for the failures written as the pipeline writes them, then consolidated:

- ``speech``: 22 s with speech-like audio and ASR captions -> 2 windows
- ``silent``: 12 s without an audio stream, manual captions -> 1 window (no mel)
- ``manual``: 16 s with speech, manual captions -> 2 windows (the second: 1 segment)
- ``nocaps``: no caption file -> skipped (captions/no_captions)
- ``broken``: a truncated mp4 -> failed

Windows are 2 segments (10 s); a shard holds at most 2 samples, so each ok
video lands in its own shard (3 shards). Tests must copy before damaging anything;
the helpers at the end rewrite a tar's members, or a manifest, for that.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.config import CoreConfig, FilterConfig, SegmentConfig
from ingest.core import VideoFailure, VideoSource, process_video
from shards import layout, manifest
from shards.manifest import ManifestRow
from shards.writer import ShardLimits, ShardWriter
from tests import mediagen

CFG = CoreConfig(
    filters=FilterConfig(min_words_per_window=5),
    segments=SegmentConfig(window_segments=2, window_stride=2),
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


def rewrite_manifest(out: Path, change: Callable[[list[manifest.ManifestRow]], list]) -> None:
    """A consolidated folder (no _index/), with manifest.parquet's rows changed."""
    fs, root = layout.open_output(str(out))
    rows = manifest.read_rows(fs, str(out / layout.MANIFEST_NAME))
    shutil.rmtree(out / layout.INDEX_DIR)
    manifest.write_rows_atomic(fs, root, layout.MANIFEST_NAME, change(rows))
