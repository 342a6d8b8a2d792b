"""Probe a video, extract its segment frames as JPEG, decode its audio.

All decoding runs in the ffmpeg CLI (commands built with ffmpeg-python); the
Python side only reads pipes into preallocated buffers, trims black bars,
resizes and encodes JPEG.

Frames: one ffmpeg process per chunk of at most ``MAX_INPUTS_PER_PROCESS``
requested times (so one process for a video of up to 32 segments, 8 for a
20-minute video at 5 s segments). Each time is its own ``-ss`` input (ffmpeg
seeks to the keyframe before it and decodes up to it, accurately); each input
is cut to one frame with ``trim`` and the inputs are joined by ``concat``, so
the frames come out of one raw RGB pipe in order. Of the accurate methods with the
ffmpeg CLI this one costs least (docs/DESIGN.md section 6 has the measurements).
``-ss`` is set half a frame period before the requested time, so the frame
returned is the one nearest to it. Chunks
keep the number of open inputs (and memory) bounded for long videos: every
input holds its own demuxer index and decoder, so one ffmpeg peaked at about
160 MB RSS with 24 inputs on a 2-minute 360p video and 250 MB with 30 inputs
on a 20-minute one (all 240 in one process: 2.1 GB); each extra process
costs about 0.08 CPU s (bench/bench_core.py).

Black bars are detected once per video, on the frames of the first chunk,
which is a stride sample spread over the whole video; every frame of the
video is then cropped the same way.
"""

from __future__ import annotations

import io
import json
import logging
import math
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, TypeVar

import ffmpeg
import numpy as np
from PIL import Image

from ingest.config import FrameConfig
from ingest.deadline import Deadline, kill_at

log = logging.getLogger(__name__)

MAX_INPUTS_PER_PROCESS = 32  # -ss inputs (open decoders) per ffmpeg process
RAW_FRAMES_BUDGET = 64 << 20  # bytes of raw RGB frames held at once (bar detection)
BRIGHT_SHARE = 0.01  # a row/column is picture if more than this share of it is bright
MIN_PICTURE_SHARE = 0.25  # never trim a dimension below this share of the frame
AUDIO_SLACK_S = 1.0  # decoded audio may fall short of the probed duration by this
AUDIO_SLACK_SHARE = 0.01  # ... plus this share of it, before the file counts as truncated

T = TypeVar("T")
Box = tuple[int, int, int, int]  # left, top, right, bottom (pixels, right/bottom exclusive)


class MediaError(RuntimeError):
    """A media file cannot be used: missing, corrupt, truncated, or lacking a stream.

    The message names the file, what is wrong and, where ffmpeg said something,
    the tail of its stderr.
    """


def _error(path: str | Path, reason: str, stderr: bytes | str = b"") -> MediaError:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", errors="replace")
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-4:] if line.strip())
    return MediaError(f"{path}: {reason}" + (f" (ffmpeg: {tail[-600:]})" if tail else ""))


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``probe`` learns about a file.

    ``width``/``height`` are the display size of the first video stream (sample
    aspect ratio and rotation applied; 0 without video); ``fps`` its average
    frame rate (0 when unknown). ``duration_ms`` is the container's duration;
    ``video_duration_ms``/``audio_duration_ms`` the streams' own, when the
    container states them (frame times are clamped to the video's end; the
    decoded audio is checked against the audio's).
    """

    duration_ms: int
    width: int
    height: int
    fps: Fraction
    has_video: bool
    has_audio: bool
    video_duration_ms: int | None = None
    audio_duration_ms: int | None = None


def _seconds_to_ms(value: Any) -> int | None:
    try:
        ms = round(Fraction(str(value)) * 1000)
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return ms if ms > 0 else None


def _rate(value: Any) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def _display_size(stream: dict[str, Any]) -> tuple[int, int]:
    width, height = int(stream.get("width", 0)), int(stream.get("height", 0))
    sar = _rate(str(stream.get("sample_aspect_ratio", "1:1")).replace(":", "/"))
    if sar > 0 and sar != 1:  # anamorphic: square the pixels (keep the height)
        width = 2 * round(width * sar / 2)
    rotation = 0.0
    for side in stream.get("side_data_list", []):
        rotation = float(side.get("rotation", rotation))
    rotation = float(stream.get("tags", {}).get("rotate", rotation))
    if round(abs(rotation)) % 180 == 90:  # ffmpeg autorotates when decoding
        width, height = height, width
    return width, height


def probe(path: str | Path, deadline: Deadline | None = None) -> MediaInfo:
    """Probe ``path`` with ffprobe; raise ``MediaError`` if it is not usable media
    (``DeadlineExceeded`` when ffprobe is still running at ``deadline``)."""
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with kill_at(proc, deadline, f"{path}: ffprobe"):
        out, err = proc.communicate()
    if proc.returncode != 0:
        reason = "ffprobe cannot read it (corrupt, truncated or not media)"
        raise _error(path, reason, err)
    try:
        data = json.loads(out)
    except ValueError:
        raise _error(path, "ffprobe gave no readable description", err) from None
    streams = data.get("streams", [])
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos and not audios:
        raise _error(path, "no video or audio stream")
    video_ms = _seconds_to_ms(videos[0].get("duration")) if videos else None
    audio_ms = _seconds_to_ms(audios[0].get("duration")) if audios else None
    duration_ms = _seconds_to_ms(data.get("format", {}).get("duration"))
    duration_ms = duration_ms or max(video_ms or 0, audio_ms or 0)
    if not duration_ms:
        raise _error(path, "unknown or zero duration")
    width = height = 0
    fps = Fraction(0)
    if videos:
        width, height = _display_size(videos[0])
        fps = _rate(videos[0].get("avg_frame_rate")) or _rate(videos[0].get("r_frame_rate"))
        if width <= 0 or height <= 0:
            raise _error(path, f"video stream has no frame size ({width}x{height})")
    return MediaInfo(
        duration_ms=duration_ms,
        width=width,
        height=height,
        fps=fps,
        has_video=bool(videos),
        has_audio=bool(audios),
        video_duration_ms=video_ms,
        audio_duration_ms=audio_ms,
    )


# ---------------------------------------------------------------- frames


def _read_exactly(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; return the bytes read (short only at EOF)."""
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _stderr_tail(stderr: IO[bytes]) -> bytes:
    stderr.seek(0, io.SEEK_END)
    stderr.seek(max(0, stderr.tell() - 4000))
    return stderr.read()


def _seek_times(times_ms: Sequence[int], info: MediaInfo) -> list[str]:
    """``-ss`` values: half a frame before each time, clamped into the video stream."""
    period = 1 / info.fps if info.fps > 0 else Fraction(1, 30)  # unknown rate: guess 30 fps
    last = Fraction(info.video_duration_ms or info.duration_ms, 1000) - period
    out = []
    for t_ms in times_ms:
        t = min(Fraction(t_ms, 1000), last) - period / 2
        out.append(f"{float(max(t, Fraction(0))):.6f}")
    return out


class _MissingFrames(Exception):
    """ffmpeg ended cleanly but gave fewer frames than requested."""


def _run_chunk(
    path: str | Path,
    seeks: Sequence[str],
    info: MediaInfo,
    handle: Callable[[np.ndarray], T],
    deadline: Deadline | None = None,
) -> list[T]:
    """One ffmpeg process: one frame per ``-ss`` value, in order, each passed to ``handle``."""
    w, h = info.width, info.height
    parts = [ffmpeg.input(str(path), ss=ss, threads=1)["V:0"].trim(end_frame=1) for ss in seeks]
    joined = parts[0] if len(parts) == 1 else ffmpeg.concat(*parts, v=1, a=0)
    cmd = (
        joined.filter("scale", w, h)  # a no-op resize that pins the size, plus the RGB conversion
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
        .global_args("-nostdin", "-v", "error", "-filter_complex_threads", "1")
        .compile()
    )
    log.debug("frames: %s", " ".join(cmd))
    results: list[T] = []
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        assert proc.stdout is not None
        with kill_at(proc, deadline, f"{path}: ffmpeg extracting frames"):
            try:
                for _ in seeks:
                    frame = np.empty((h, w, 3), dtype=np.uint8)
                    if _read_exactly(proc.stdout, memoryview(frame).cast("B")) < frame.nbytes:
                        break
                    results.append(handle(frame))
                extra = proc.stdout.read(1)
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc != 0:
                reason = f"ffmpeg failed extracting frames (exit {rc})"
                raise _error(path, reason, _stderr_tail(stderr))
            if extra:
                raise _error(path, "ffmpeg gave more frames than requested", _stderr_tail(stderr))
            if len(results) < len(seeks):
                raise _MissingFrames(_stderr_tail(stderr).decode("utf-8", errors="replace"))
    return results


def _grab(
    path: str | Path,
    seeks: Sequence[str],
    info: MediaInfo,
    handle: Callable[[np.ndarray], T],
    deadline: Deadline | None = None,
) -> list[T]:
    """``_run_chunk``, falling back to one process per frame to find a missing one."""
    try:
        return _run_chunk(path, seeks, info, handle, deadline)
    except _MissingFrames as missing:
        if len(seeks) == 1:
            raise _error(
                path, f"no frame at {seeks[0]} s (truncated or corrupt video)", str(missing)
            ) from None
        log.warning(
            "%s: a chunk of %d frames came back short; retrying one by one", path, len(seeks)
        )
        return [_grab(path, [ss], info, handle, deadline)[0] for ss in seeks]


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma, 0..255, as uint16."""
    r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
    return (r * 77 + g * 150 + b * 29) >> 8


def content_box(frames: Sequence[np.ndarray], threshold: int) -> Box:
    """The smallest box holding every frame's picture (black bars outside it).

    A row (column) is picture in a frame if more than ``BRIGHT_SHARE`` of its
    pixels are brighter than ``threshold``; the box spans the rows and columns
    that are picture in any frame, so a dark scene does not crop the video. A
    dimension is left whole if all frames are black in it or it would shrink
    below ``MIN_PICTURE_SHARE`` (a bright logo on a black screen).
    """
    h, w = frames[0].shape[:2]
    rows = np.zeros(h, dtype=bool)
    cols = np.zeros(w, dtype=bool)
    for rgb in frames:
        bright = _luma(rgb) > threshold
        rows |= bright.sum(axis=1) > BRIGHT_SHARE * w
        cols |= bright.sum(axis=0) > BRIGHT_SHARE * h

    def span(mask: np.ndarray) -> tuple[int, int]:
        idx = np.flatnonzero(mask)
        if idx.size == 0 or idx[-1] + 1 - idx[0] < MIN_PICTURE_SHARE * mask.size:
            return 0, mask.size
        return int(idx[0]), int(idx[-1]) + 1

    (top, bottom), (left, right) = span(rows), span(cols)
    return left, top, right, bottom


def output_geometry(box: Box, cfg: FrameConfig) -> tuple[tuple[int, int], tuple[float, ...]]:
    """Output size and the source region it shows, for a picture in ``box``.

    Scale so the shorter side is ``cfg.short_side``; if the longer side then
    exceeds ``cfg.max_long_side``, keep its centre only. Returns
    ``((out_w, out_h), (x0, y0, x1, y1))`` with the region in source pixels.
    """
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    scale = cfg.short_side / min(w, h)
    out_w = min(max(1, round(w * scale)), cfg.max_long_side)
    out_h = min(max(1, round(h * scale)), cfg.max_long_side)
    keep_w, keep_h = min(w, out_w / scale), min(h, out_h / scale)
    x0, y0 = left + (w - keep_w) / 2, top + (h - keep_h) / 2
    return (out_w, out_h), (x0, y0, x0 + keep_w, y0 + keep_h)


def _jpeg(rgb: np.ndarray, box: Box, cfg: FrameConfig) -> bytes:
    size, region = output_geometry(box, cfg)
    # PIL's bilinear filter is antialiased when shrinking; 1.5 ms/frame cheaper than bicubic
    image = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, box=region)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=cfg.jpeg_quality)
    return buf.getvalue()


def extract_frames(
    path: str | Path,
    times_ms: Sequence[int],
    cfg: FrameConfig,
    info: MediaInfo | None = None,
    deadline: Deadline | None = None,
) -> list[bytes]:
    """JPEG frames nearest to ``times_ms`` (one per time, in the given order).

    Times past the end of the video stream give its last frame. Raises
    ``MediaError`` if there is no video stream or a frame cannot be decoded,
    ``DeadlineExceeded`` if an ffmpeg process still runs at ``deadline``.
    """
    info = info or probe(path, deadline)
    if not info.has_video:
        raise _error(path, "no video stream")
    if not times_ms:
        return []
    wanted = _seek_times(times_ms, info)  # clamping can map several times to one seek
    seeks = sorted(set(wanted), key=float)
    per_process = MAX_INPUTS_PER_PROCESS
    per_process = max(1, min(per_process, RAW_FRAMES_BUDGET // (info.width * info.height * 3)))
    n_chunks = math.ceil(len(seeks) / per_process)
    chunks = [range(c, len(seeks), n_chunks) for c in range(n_chunks)]  # strided samples

    first = _grab(path, [seeks[i] for i in chunks[0]], info, lambda rgb: rgb, deadline)
    box: Box = (0, 0, info.width, info.height)
    if cfg.trim_black_bars:
        box = content_box(first, cfg.black_threshold)
        if box != (0, 0, info.width, info.height):
            log.debug("%s: picture box %s in %dx%d", path, box, info.width, info.height)
    jpegs: dict[int, bytes] = {
        i: _jpeg(rgb, box, cfg) for i, rgb in zip(chunks[0], first, strict=True)
    }
    del first

    def encode(rgb: np.ndarray) -> bytes:
        return _jpeg(rgb, box, cfg)

    for chunk in chunks[1:]:
        done = _grab(path, [seeks[i] for i in chunk], info, encode, deadline)
        jpegs.update(zip(chunk, done, strict=True))
    index = {ss: i for i, ss in enumerate(seeks)}
    return [jpegs[index[ss]] for ss in wanted]


# ---------------------------------------------------------------- audio


def decode_audio(
    path: str | Path,
    sample_rate: int,
    info: MediaInfo | None = None,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """The first audio stream as mono float32 at ``sample_rate``.

    ffmpeg resamples and downmixes (``-threads 1``) into a pipe that is read
    straight into one preallocated buffer sized from the probed duration (the
    audio is never held twice). Raises ``MediaError`` without an audio stream,
    when ffmpeg fails, or when the decoded audio falls well short of the probed
    duration (a truncated file: ffmpeg reports "partial file" and exits 0);
    ``DeadlineExceeded`` if ffmpeg still runs at ``deadline``.
    """
    info = info or probe(path, deadline)
    if not info.has_audio:
        raise _error(path, "no audio stream")
    expected_ms = info.audio_duration_ms or info.duration_ms
    expected = math.ceil(expected_ms * sample_rate / 1000)
    cmd = (
        ffmpeg.input(str(path), threads=1)["a:0"]
        .output("pipe:", format="f32le", ac=1, ar=sample_rate)
        .global_args("-nostdin", "-v", "error")
        .compile()
    )
    log.debug("audio: %s", " ".join(cmd))
    audio = np.empty(expected + sample_rate, dtype=np.float32)  # one second of slack
    filled = 0
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        assert proc.stdout is not None
        with kill_at(proc, deadline, f"{path}: ffmpeg decoding audio"):
            try:
                while True:
                    with memoryview(audio).cast("B") as view:
                        filled += _read_exactly(proc.stdout, view[filled:])
                        full = filled == len(view)
                    if not full:
                        break
                    audio.resize(len(audio) + len(audio) // 4 + sample_rate, refcheck=False)
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc != 0:
                reason = f"ffmpeg failed decoding audio (exit {rc})"
                raise _error(path, reason, _stderr_tail(stderr))
        n = filled // 4
        slack = sample_rate * AUDIO_SLACK_S + AUDIO_SLACK_SHARE * expected
        if n < expected - slack:
            raise _error(
                path,
                f"audio truncated: decoded {n / sample_rate:.2f} s of {expected_ms / 1000:.2f} s",
                _stderr_tail(stderr),
            )
        tail = _stderr_tail(stderr)
        if tail.strip():
            log.warning("%s: ffmpeg reported while decoding audio: %s", path, tail[-300:])
    audio.resize(n, refcheck=False)
    return audio
