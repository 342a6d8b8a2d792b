"""What the demo corpus is made of: its vocabulary, pictures, speech and captions.

The demo corpus (``devtools.demo_corpus``) narrates coloured shapes. This module
holds the pieces one video is assembled from, each a plain function:

* ``VOCABULARY``: 24 items, six colours times four shapes, each with a fixed RGB.
* ``draw_item``: a 640x360 picture of one item on a neutral grey background,
  jittered in position, size, rotation and background level.
* ``spoken_word``: espeak-ng speech of one word, synthesized once per word and
  voice, trimmed to its audible part so that a word's start time is its onset.
* YouTube-style auto-captions come from ``devtools.mediagen.render_auto_vtt``, the
  writer the tests use too; words are ``ingest.captions.Word``, what the parser returns.
* ``encode_mp4``: pictures with durations plus a speech track -> H.264/AAC mp4;
  ``page_html``: the HTML5 page yt-dlp's generic extractor reads.
"""

from __future__ import annotations

import functools
import html
import math
import random
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FFMPEG = "ffmpeg"
SAMPLE_RATE = 22050  # espeak-ng's output rate, and the rate the pipeline decodes at
RATE_WPM = 175  # espeak-ng speaking rate
FRAME_SIZE = (640, 360)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 20),
    "purple": (150, 70, 200),
    "orange": (250, 140, 20),
}
SHAPES = ("circle", "square", "triangle", "star")

# Narration templates; ``{item}`` becomes e.g. "red circle". Each says the item
# once among five to seven words, which keeps the word rate near 2 words/s, above
# Reserve's filter of 50 words in some 30 s window.
TEMPLATES = (
    "now we can see a {item}",
    "here is a {item} on the screen",
    "next comes a {item}",
    "look at this {item} here",
    "this one is a {item}",
    "and now a {item} appears",
    "the next picture shows a {item}",
)

# espeak-ng voices (language + variant); one is drawn per video.
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+f2", "en-us+m3", "en-029")

# Words that espeak-ng reads differently when they stand alone, given as phonemes.
_PHONEMES = {"a": "[[a#]]"}  # alone, "a" is read as the letter name "ay"


@dataclass(frozen=True, slots=True)
class Item:
    """One thing the narrator can show and name."""

    colour: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]


VOCABULARY: tuple[Item, ...] = tuple(Item(c, s) for c in COLOURS for s in SHAPES)


def phrase_words(template: str, item: Item) -> list[str]:
    """The words the narrator says for ``item`` with ``template``, in order."""
    return template.format(item=item.name).split()


def vocabulary_words() -> list[str]:
    """Every distinct word any narration can use, sorted."""
    words = {w for t in TEMPLATES for w in t.replace("{item}", "").split()}
    words.update(COLOURS)
    words.update(SHAPES)
    return sorted(words)


# --- pictures ---------------------------------------------------------------


def _star(cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else 0.5 * r
        theta = angle + math.pi * k / 5 - math.pi / 2
        points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
    return points


def draw_item(item: Item, rng: random.Random, size: tuple[int, int] = FRAME_SIZE) -> Image.Image:
    """A picture of ``item``: one big shape in its colour on a grey background.

    Position, size, rotation and background level vary with ``rng`` so that no
    two pictures of the same item are pixel-identical.
    """
    width, height = size
    grey = rng.randint(112, 144)
    image = Image.new("RGB", size, (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.30, 0.40) * height  # circumradius
    margin = 8
    cx = rng.uniform(r + margin, width - r - margin)
    cy = rng.uniform(r + margin, height - r - margin)
    tilt = rng.uniform(-15.0, 15.0)
    if item.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=item.rgb)
    elif item.shape == "square":
        draw.regular_polygon((cx, cy, r), 4, rotation=45 + tilt, fill=item.rgb)
    elif item.shape == "triangle":
        draw.regular_polygon((cx, cy, r), 3, rotation=tilt, fill=item.rgb)
    elif item.shape == "star":
        draw.polygon(_star(cx, cy, r, math.radians(tilt)), fill=item.rgb)
    else:
        raise ValueError(f"unknown shape {item.shape!r}")
    return image


# --- speech -----------------------------------------------------------------


def _parse_wav(data: bytes) -> np.ndarray:
    """Samples of espeak-ng's ``--stdout`` WAV (its header sizes are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV")
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[pos + 10 : pos + 12], "little")
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
            bits = int.from_bytes(data[pos + 22 : pos + 24], "little")
            if (channels, rate, bits) != (1, SAMPLE_RATE, 16):
                raise ValueError(f"espeak-ng wrote {channels} ch, {rate} Hz, {bits} bit")
        elif chunk == b"data":
            body = data[pos + 8 :]
            return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
        pos += 8 + size
    raise ValueError("espeak-ng WAV has no data chunk")


def trim_silence(samples: np.ndarray, rel_threshold: float = 0.02, pad: int = 44) -> np.ndarray:
    """The audible part of ``samples``: from first to last sample above the threshold.

    ``pad`` samples (2 ms) are kept either side so onsets are not clipped.
    """
    level = np.abs(samples.astype(np.int32))
    loud = np.flatnonzero(level > rel_threshold * max(int(level.max()), 1))
    if loud.size == 0:
        raise ValueError("synthesized word is silent")
    start = max(int(loud[0]) - pad, 0)
    stop = min(int(loud[-1]) + 1 + pad, samples.size)
    return samples[start:stop]


@functools.lru_cache(maxsize=4096)
def spoken_word(word: str, voice: str) -> np.ndarray:
    """``word`` said alone by espeak-ng in ``voice``, trimmed: read-only int16 at SAMPLE_RATE.

    Cached per process: each distinct (word, voice) is synthesized once.
    """
    text = _PHONEMES.get(word, word)
    cmd = ["espeak-ng", "--stdout", "-s", str(RATE_WPM), "-v", voice, text]
    done = subprocess.run(cmd, capture_output=True, check=True)
    samples = trim_silence(_parse_wav(done.stdout)).copy()
    samples.flags.writeable = False
    return samples


def spoken_ms(word: str, voice: str) -> int:
    """How long ``spoken_word`` lasts, in whole milliseconds rounded up."""
    return -(-spoken_word(word, voice).size * 1000 // SAMPLE_RATE)


def assemble_audio(
    placed: Sequence[tuple[int, np.ndarray]], duration_ms: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """One int16 track of ``duration_ms``: each clip at its start (ms), silence elsewhere."""
    track = np.zeros(duration_ms * sample_rate // 1000, dtype=np.int16)
    for start_ms, clip in placed:
        pos = start_ms * sample_rate // 1000
        if pos + clip.size > track.size:
            raise ValueError(f"clip at {start_ms} ms runs past the {duration_ms} ms track")
        track[pos : pos + clip.size] = clip
    return track


# --- the video file and its page ---------------------------------------------


def _ffmpeg_command(listing: Path, wav: Path, out: Path, fps: int, total_ms: int) -> list[str]:
    # The fps filter (not -r) keeps each picture on its own first frame; converting
    # to yuv420p before it converts each picture once, not once per frame.
    return [
        *(FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0"),
        *("-i", str(listing), "-i", str(wav), "-map", "0:v", "-map", "1:a"),
        *("-vf", f"format=yuv420p,fps={fps}", "-t", f"{total_ms / 1000:.3f}"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-threads", "1"),
        *("-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k"),  # twoloop is 5x slower
        *("-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"),
        *("-map_metadata", "-1", "-movflags", "+faststart", str(out)),
    ]


def encode_mp4(
    pictures: Sequence[tuple[Image.Image, int]], audio: np.ndarray, out: Path, fps: int = 25
) -> None:
    """An H.264 + AAC mp4 showing each picture for its duration (ms) over ``audio``.

    Durations must be whole frames, so each picture starts exactly on a frame;
    ``audio`` (int16 at ``SAMPLE_RATE``) must last as long as the pictures.
    """
    frame_ms = 1000 // fps
    if 1000 % fps or any(ms <= 0 or ms % frame_ms for _, ms in pictures):
        raise ValueError(f"picture durations must be positive multiples of {frame_ms} ms")
    total_ms = sum(ms for _, ms in pictures)
    if audio.size != total_ms * SAMPLE_RATE // 1000:
        raise ValueError(f"audio has {audio.size} samples for {total_ms} ms of pictures")
    with tempfile.TemporaryDirectory(prefix=".encode.", dir=out.parent) as work:
        tmp = Path(work)
        lines = ["ffconcat version 1.0"]
        for k, (picture, ms) in enumerate(pictures):
            picture.save(tmp / f"{k:04d}.png", compress_level=1)
            lines += [f"file '{k:04d}.png'", f"duration {ms / 1000:.3f}"]
        lines.append(f"file '{len(pictures) - 1:04d}.png'")  # the last duration needs a successor
        (tmp / "pictures.ffconcat").write_text("\n".join(lines) + "\n")
        with wave.open(str(tmp / "speech.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(audio.astype("<i2").tobytes())
        cmd = _ffmpeg_command(tmp / "pictures.ffconcat", tmp / "speech.wav", out, fps, total_ms)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"ffmpeg failed ({done.returncode}) on {out.name}: {done.stderr[-800:]}"
            )


def page_html(video_id: str, title: str) -> str:
    """The page yt-dlp's generic extractor reads: an HTML5 video with a subtitle track."""
    title = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>\n<body><h1>{title}</h1>\n"
        f'<video controls src="{video_id}.mp4">'
        f'<track kind="subtitles" srclang="en" label="English" src="{video_id}.en.vtt">'
        "</video>\n</body></html>\n"
    )
