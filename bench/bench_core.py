"""CPU cost of the per-video media work: ours vs the bare-CLI floor.

For generated videos (640x360 H.264, GOP 2 s, speech-like AAC audio; cached in
``--cache``) of 2 and 20 minutes, it measures CPU seconds per video-minute and
peak memory of:

- ``ours``: ``probe`` + ``extract_frames`` at the 5 s segment midpoints +
  ``decode_audio`` + ``log_mel_segments`` + ``quantize`` (the core's media cost);
- ``floor``: the bare ffmpeg CLI decoding the same audio
  (``ffmpeg -i X -ac 1 -ar 22050 -f f32le -``) and the same midpoint frames (one
  process, one ``-ss`` input per frame, raw RGB out), plus
  ``librosa.feature.melspectrogram`` on the whole audio at once;
- ``e2e`` (``--end-to-end``, if ``ingest.core.process_video`` exists): the whole
  core on the video and generated ASR captions.

Every run is a fresh worker process (``--worker``) that first warms up librosa
(numba compiles once per process; ingest workers live across videos), then
reads its own ``getrusage`` for itself and its children around each stage.
Peak memory is the worker's RSS high-water mark plus that of its largest
ffmpeg child (polled ``VmHWM``; an upper bound: they need not peak together). BLAS is limited to
one thread in both variants (see ingest/features.py). Medians of ``--repeats``.

    .venv/bin/python bench/bench_core.py --out /tmp/bench-core.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEGMENT_MS = 5000


def _usage() -> dict[str, float]:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return {
        "self": me.ru_utime + me.ru_stime,
        "children": kids.ru_utime + kids.ru_stime,
        "wall": time.perf_counter(),
    }


class _Stages:
    """CPU (self + children) and wall seconds per named stage."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._last = _usage()

    def mark(self, name: str) -> None:
        now = _usage()
        self.cpu[name] = now["self"] - self._last["self"] + now["children"] - self._last["children"]
        self.wall[name] = now["wall"] - self._last["wall"]
        self._last = now


def _midpoints(duration_ms: int) -> list[int]:
    return [k * SEGMENT_MS + SEGMENT_MS // 2 for k in range(duration_ms // SEGMENT_MS)]


def _warm_up() -> None:
    import numpy as np

    from ingest.config import AudioConfig
    from ingest.features import log_mel_segments

    log_mel_segments(np.zeros(22050, dtype=np.float32), 1, SEGMENT_MS, AudioConfig())


def _run_ours(video: Path, stages: _Stages) -> None:
    from ingest.config import AudioConfig, FrameConfig
    from ingest.features import log_mel_segments
    from ingest.media import decode_audio, extract_frames, probe
    from shards.schema import quantize_mel as quantize

    audio_cfg = AudioConfig()
    info = probe(video)
    stages.mark("probe")
    times = _midpoints(info.duration_ms)
    frames = extract_frames(video, times, FrameConfig(), info)
    assert len(frames) == len(times)
    stages.mark("frames")
    audio = decode_audio(video, audio_cfg.sample_rate, info)
    stages.mark("audio")
    mel = log_mel_segments(audio, len(times), SEGMENT_MS, audio_cfg)
    quantize(mel, audio_cfg.quantile)
    stages.mark("mel")


def _run_floor(video: Path, stages: _Stages) -> None:
    import librosa
    import numpy as np
    from threadpoolctl import threadpool_limits

    from ingest.config import AudioConfig
    from ingest.media import probe

    cfg = AudioConfig()
    times = _midpoints(probe(video).duration_ms)
    stages.mark("probe")
    cmd = ["ffmpeg", "-nostdin", "-v", "error"]
    for t in times:
        cmd += ["-threads", "1", "-ss", f"{t / 1000:.3f}", "-i", str(video)]
    for i in range(len(times)):
        cmd += [
            "-map",
            f"{i}:v:0",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]
    raw = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
    assert len(raw) == len(times) * 640 * 360 * 3, len(raw)
    del raw
    stages.mark("frames")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-threads", "1", "-i", str(video)]
    cmd += ["-ac", "1", "-ar", str(cfg.sample_rate), "-f", "f32le", "-"]
    audio = np.frombuffer(
        subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout, np.float32
    )
    stages.mark("audio")
    with threadpool_limits(limits=1, user_api="blas"):
        librosa.feature.melspectrogram(
            y=audio,
            sr=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=cfg.fmax,
        )
    stages.mark("mel")


def _run_e2e(video: Path, stages: _Stages) -> None:
    from ingest.config import CoreConfig
    from ingest.core import VideoSource, process_video

    captions = video.with_suffix(".en.vtt")
    result = process_video(video, captions, CoreConfig(), VideoSource(video_id="bench"))
    assert result.samples
    stages.mark("core")


def _hwm_kb(pid: int | str) -> int:
    """VmHWM (peak RSS) of a live ffmpeg/ffprobe process, in kB; 0 if it is gone.

    Until it calls ``exec`` a child still shows the parent's memory, so only a
    child that already runs ffmpeg counts.
    """
    try:
        with open(f"/proc/{pid}/comm") as f:
            if not f.read().startswith("ff"):
                return 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _ChildPeak(threading.Thread):
    """Polls the peak RSS of this process's children (the ffmpeg runs).

    ``RUSAGE_CHILDREN.ru_maxrss`` cannot be used: a child forked from a large
    Python process carries the parent's RSS into its high-water mark across
    ``exec``. ``VmHWM`` belongs to the new address space, so it is ffmpeg's own.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval_s, self.peak_kb, self._done = interval_s, 0, threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._done.wait(self.interval_s):
            for task in os.listdir(f"/proc/{me}/task"):
                try:
                    with open(f"/proc/{me}/task/{task}/children") as f:
                        pids = f.read().split()
                except OSError:
                    continue
                for pid in pids:
                    self.peak_kb = max(self.peak_kb, _hwm_kb(pid))

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak_kb


def worker(variant: str, video: Path) -> dict[str, Any]:
    _warm_up()
    poller = _ChildPeak()
    poller.start()
    stages = _Stages()
    {"ours": _run_ours, "floor": _run_floor, "e2e": _run_e2e}[variant](video, stages)
    child_kb = poller.stop()
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "cpu": stages.cpu,
        "wall": stages.wall,
        "cpu_total": sum(stages.cpu.values()),
        "wall_total": sum(stages.wall.values()),
        "peak_self_mb": self_kb / 1024,
        "peak_child_mb": child_kb / 1024,
        "peak_mb": (self_kb + child_kb) / 1024,
    }


def run_worker(variant: str, video: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--video",
        str(video),
    ]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    stages = runs[0]["cpu"].keys()
    return {
        "cpu": {s: statistics.median(r["cpu"][s] for r in runs) for s in stages},
        "cpu_total": med("cpu_total"),
        "wall_total": med("wall_total"),
        "peak_mb": med("peak_mb"),
        "peak_self_mb": med("peak_self_mb"),
        "peak_child_mb": med("peak_child_mb"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--minutes", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/montage-bench"))
    parser.add_argument("--end-to-end", action="store_true", help="also bench ingest.core")
    parser.add_argument("--worker", choices=["ours", "floor", "e2e"], help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.video)))
        return

    variants = ["ours", "floor"]
    if args.end_to_end:
        try:
            from ingest.core import process_video  # noqa: F401
        except ImportError:
            print("ingest.core.process_video not found; skipping --end-to-end")
        else:
            variants.append("e2e")
    results: dict[str, Any] = {"machine": _machine(), "repeats": args.repeats, "videos": {}}
    for minutes in args.minutes:
        from devtools.mediagen import cached_speech_video

        print(f"preparing the {minutes}-minute test video in {args.cache} ...", flush=True)
        video = cached_speech_video(args.cache, minutes * 60)
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for repeat in range(args.repeats):
            for variant in variants:  # interleaved, so drifting machine load hits both
                runs[variant].append(run_worker(variant, video))
                print(
                    f"  {minutes} min {variant} #{repeat + 1}: {runs[variant][-1]['cpu_total']:.2f} CPU s"
                )
        medians = {v: _median_run(r) for v, r in runs.items()}
        results["videos"][f"{minutes}min"] = {
            "path": str(video),
            "minutes": minutes,
            "runs": runs,
            "median": medians,
            "ratio_ours_floor": medians["ours"]["cpu_total"] / medians["floor"]["cpu_total"],
        }
    print(_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


def _machine() -> dict[str, Any]:
    ffmpeg_version = subprocess.run(
        ["ffmpeg", "-version"], stdout=subprocess.PIPE, text=True
    ).stdout
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "ffmpeg": ffmpeg_version.splitlines()[0],
    }


def _table(results: dict[str, Any]) -> str:
    head = (
        f"{'video':>6} {'variant':>7} | {'probe':>6} {'frames':>6} {'audio':>6} {'mel':>6} {'total':>6}"
        f" | {'CPU s/min':>9} {'wall s':>7} {'peak MB':>8} {'(self+child)':>13}"
    )
    lines = ["CPU seconds (medians); per video-minute in 'CPU s/min'", head, "-" * len(head)]
    for name, video in results["videos"].items():
        for variant, m in video["median"].items():
            cpu = m["cpu"]
            lines.append(
                f"{name:>6} {variant:>7} | {cpu.get('probe', 0):6.2f} {cpu.get('frames', 0):6.2f} {cpu.get('audio', 0):6.2f}"
                f" {cpu.get('mel', 0):6.2f} {m['cpu_total']:6.2f} | {m['cpu_total'] / video['minutes']:9.3f}"
                f" {m['wall_total']:7.2f} {m['peak_mb']:8.0f} {m['peak_self_mb']:6.0f}+{m['peak_child_mb']:<6.0f}"
            )
        lines.append(f"{name:>6} ratio ours/floor (CPU): {video['ratio_ours_floor']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
