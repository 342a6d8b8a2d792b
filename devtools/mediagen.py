"""Synthetic test media: videos whose pictures encode their own time, and captions.

Everything is generated on the fly with the ffmpeg CLI (one ffmpeg call per video)
into a folder the caller chooses (``tmp_path`` in tests); no binary media is
committed. The API is used by tests, benchmarks and the demo, so keep it stable:

- ``make_video(path, duration_s, ...)``: H.264 + AAC mp4. Every frame shows its
  own index as a barcode that survives black-bar trimming, resizing and JPEG;
  ``read_frame_index(jpeg_or_rgb)`` reads it back.
- ``make_words(duration_s, ...)``: deterministic words (``ingest.captions.Word``,
  the type the caption parser returns).
- ``render_auto_vtt`` / ``write_auto_vtt`` (YouTube's ASR layout, the one writer of
  it, also used by the demo corpus), ``write_manual_vtt``, ``write_srt``.
- ``truncate(src, dst, fraction)``: a damaged copy.

The barcode: inside the picture (never in the black bars) a black column spans
35%..65% of the picture width and 10%..90% of its height. It is cut into
``BANDS`` horizontal bands: band 0 is always white (a start marker), bands
1..16 are the frame index's bits (least significant first; white = 1), the
last band is always black (an end marker). Because the bands are horizontal
and centred, a centre crop of the long side keeps the column's middle, and
the bands' vertical positions relative to the picture do not change when the
picture is trimmed and scaled.
"""

from __future__ import annotations

import io
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from ingest.captions import Word

INDEX_BITS = 16  # frame indices up to 65,535 (43 minutes at 25 fps)
BANDS = INDEX_BITS + 2  # start marker + bits + end marker
CODE_X = (0.35, 0.65)  # horizontal extent of the barcode, fraction of the picture width
CODE_Y = (0.10, 0.90)  # vertical extent, fraction of the picture height

# A speech-like signal for aevalsrc: a voiced tone (fundamental gliding around
# 130 Hz, with harmonics) and fricative-like noise bursts, gated into word-like
# bursts of a few hundred ms with syllable modulation and occasional pauses.
_PHASE = "2*PI*(130*t+8*sin(PI*t))"
_VOICE = f"(sin({_PHASE})+0.5*sin(2*{_PHASE})+0.3*sin(3*{_PHASE})+0.15*sin(5*{_PHASE}))"
_WORDS = "gt(sin(2*PI*2.3*t)+0.6*sin(2*PI*0.31*t+1),0.1)"
_SYLLABLES = "(0.55+0.45*sin(2*PI*5.3*t))"
_NOISE = "0.35*(2*random(0)-1)*gt(sin(2*PI*3.1*t+0.5),0.7)"
SPEECH_EXPR = f"0.25*{_WORDS}*({_SYLLABLES}*{_VOICE}+{_NOISE})"

_VOCAB = (
    "the",
    "and",
    "to",
    "of",
    "a",
    "in",
    "that",
    "is",
    "it",
    "you",
    "we",
    "they",
    "this",
    "for",
    "on",
    "with",
    "as",
    "have",
    "be",
    "at",
    "one",
    "now",
    "so",
    "what",
    "about",
    "just",
    "like",
    "going",
    "here",
    "there",
    "make",
    "can",
    "see",
    "really",
    "time",
    "people",
    "video",
    "water",
    "little",
    "bit",
    "right",
    "then",
    "first",
    "know",
    "think",
    "because",
    "when",
    "today",
    "want",
    "need",
    "look",
    "thing",
    "way",
    "out",
    "something",
    "very",
    "good",
    "over",
    "into",
    "these",
    "those",
    "take",
    "back",
    "around",
    "show",
    "start",
    "try",
    "cut",
    "put",
    "next",
    "three",
    "minutes",
    "inside",
)


def _picture_size(width: int, height: int, letterbox: bool, pillarbox: bool) -> tuple[int, int]:
    """Size of the active picture inside a ``width`` x ``height`` frame."""
    pw, ph = width, height
    if letterbox:  # 16:9 frame -> about 2.37:1 picture (640x360 -> 640x270)
        ph = 2 * round(height * 0.75 / 2)
    if pillarbox:  # 4:3 picture (640x360 -> 480x360)
        pw = 2 * round(ph * 4 / 3 / 2)
    return pw, ph


def _barcode_filters(pw: int, ph: int) -> list[str]:
    """drawbox filters that paint the frame index (``n``) as a barcode."""
    x0, x1 = round(CODE_X[0] * pw), round(CODE_X[1] * pw)
    y0, y1 = CODE_Y[0] * ph, CODE_Y[1] * ph
    band_h = (y1 - y0) / BANDS

    def band(i: int) -> tuple[int, int]:
        top = round(y0 + i * band_h)
        return top, round(y0 + (i + 1) * band_h) - top

    t0, h0 = band(0)
    filters = [f"drawbox=x={x0}:y={t0}:w={x1 - x0}:h={round(y1) - t0}:color=black:t=fill"]
    filters.append(f"drawbox=x={x0}:y={t0}:w={x1 - x0}:h={h0}:color=white:t=fill")
    for bit in range(INDEX_BITS):
        t, h = band(bit + 1)
        on = f"eq(mod(floor(n/{2**bit}),2),1)"
        filters.append(f"drawbox=x={x0}:y={t}:w={x1 - x0}:h={h}:color=white:t=fill:enable='{on}'")
    return filters


def make_video(
    path: str | Path,
    duration_s: float = 12.0,
    *,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    audio: Literal["tone", "speech", None] = "tone",
    letterbox: bool = False,
    gop_s: float = 2.0,
    pillarbox: bool = False,
    faststart: bool = True,
    sample_rate: int = 44100,
) -> Path:
    """Write an H.264 (+ AAC) mp4 whose frame ``n`` shows ``n`` as a barcode.

    The picture is ffmpeg's moving ``testsrc2`` with the barcode on top (see the
    module docstring). ``letterbox`` pads a ~2.37:1 picture with black bars top
    and bottom (640x270 in 640x360); ``pillarbox`` pads a 4:3 picture with bars
    left and right (480x360 in 640x360); both together give a window box.
    ``audio``: ``"tone"`` (440 Hz sine), ``"speech"`` (word-like bursts of a
    voiced tone and noise) or ``None`` (no audio stream). Keyframes every
    ``gop_s`` seconds exactly. ``faststart`` puts the moov atom first (as
    YouTube does), so a truncated copy still probes.
    """
    path = Path(path)
    if (int(duration_s * fps) + 1).bit_length() > INDEX_BITS:
        raise ValueError(f"{duration_s} s at {fps} fps needs more than {INDEX_BITS} index bits")
    pw, ph = _picture_size(width, height, letterbox, pillarbox)
    chain = [f"testsrc2=size={pw}x{ph}:rate={fps}:duration={duration_s}"]
    chain += _barcode_filters(pw, ph)
    if (pw, ph) != (width, height):
        chain.append(f"pad={width}:{height}:{(width - pw) // 2}:{(height - ph) // 2}:color=black")
    chain.append("format=yuv420p")
    graph = ",".join(chain) + "[v]"
    maps = ["-map", "[v]"]
    if audio == "tone":
        graph += f";sine=frequency=440:sample_rate={sample_rate}:duration={duration_s}[a]"
    elif audio == "speech":
        graph += f";aevalsrc=exprs='{SPEECH_EXPR}':s={sample_rate}:d={duration_s}[a]"
    elif audio is not None:
        raise ValueError(f"audio must be 'tone', 'speech' or None, got {audio!r}")
    if audio is not None:
        maps += ["-map", "[a]", "-c:a", "aac", "-b:a", "96k"]
    gop = max(1, round(gop_s * fps))
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-filter_complex", graph, *maps,
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
    ]  # fmt: skip
    if faststart:
        cmd += ["-movflags", "+faststart"]
    cmd.append(str(path))
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def _luma(image: bytes | bytearray | np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"), dtype=np.float32)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr


def read_frame_index(jpeg_or_rgb: bytes | np.ndarray | Image.Image) -> int:
    """Decode the barcode of one frame (JPEG/PNG bytes, an RGB array or an image).

    The frame may have been trimmed of black bars, scaled and centre-cropped on
    its long side, but must show exactly the picture (no bars, no vertical
    crop). Raises ``ValueError`` when the markers are not where they should be.
    """
    luma = _luma(jpeg_or_rgb)
    h, w = luma.shape
    y0, y1 = CODE_Y[0] * h, CODE_Y[1] * h
    band_h = (y1 - y0) / BANDS
    xa, xb = round(w * 0.47), round(w * 0.53) + 1  # the column's middle
    levels = []
    for i in range(BANDS):
        centre = y0 + (i + 0.5) * band_h
        ya, yb = round(centre - band_h / 4), round(centre + band_h / 4) + 1
        levels.append(float(luma[ya:yb, xa:xb].mean()))
    bits = [level > 128 for level in levels]
    if not bits[0] or bits[-1]:
        raise ValueError(f"no barcode found (band levels {[round(v) for v in levels]})")
    return sum(1 << i for i, bit in enumerate(bits[1:-1]) if bit)


def make_words(duration_s: float, *, words_per_s: float = 2.5, seed: int = 0) -> list[Word]:
    """Deterministic words at about ``words_per_s``.

    Words are sorted, do not overlap, lie in ``[0, duration_s)``, and now and
    then a sentence pause (0.8..1.6 s) interrupts them, as in real narration.
    """
    rng = random.Random(seed)
    period = 1000.0 / words_per_s
    limit = int(duration_s * 1000) - 50
    words: list[Word] = []
    t = 250.0
    while True:
        text = rng.choice(_VOCAB)
        length = period * rng.uniform(0.6, 0.9)
        start, end = round(t), round(t + length)
        if end > limit:
            return words
        words.append(Word(text, start, end))
        t += period * rng.uniform(0.9, 1.1)
        if rng.random() < 0.04:
            t += rng.uniform(800, 1600)


def _ts(ms: int, sep: str = ".") -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _asr_lines(words: Sequence[Word], max_chars: int, pause_ms: int) -> list[list[Word]]:
    """Group words into ASR display lines: at most ``max_chars`` wide, and a new line
    after a pause longer than ``pause_ms``."""
    lines: list[list[Word]] = []
    for word in words:
        line = lines[-1] if lines else None
        if (
            line is None
            or len(" ".join(w.text for w in [*line, word])) > max_chars
            or word.start_ms - line[-1].end_ms > pause_ms
        ):
            lines.append([word])
        else:
            line.append(word)
    return lines


def render_auto_vtt(words: Sequence[Word], max_chars: int = 32, pause_ms: int = 1500) -> str:
    """YouTube's ASR auto-caption WebVTT for ``words`` (in spoken order).

    As in real files: a ``Kind: captions`` / ``Language: en`` header; words grouped
    into display lines (``_asr_lines``). Each line gets a cue from its first word's
    time to 10 ms before the next line's, showing the previous line plain above it
    (a single space above the very first) and the line itself below, where the first
    word is untimed (it starts at the cue) and every other word carries a
    ``<time><c> word</c>`` tag. Between lines a 10 ms cue shows the finished line
    alone above a line holding one space, as YouTube's rolling layout does.
    """
    cue = "{} --> {} align:start position:0%\n{}\n{}\n"
    blocks = ["WEBVTT\nKind: captions\nLanguage: en\n"]
    lines = _asr_lines(words, max_chars, pause_ms)
    above = " "
    for i, line in enumerate(lines):
        start = line[0].start_ms
        nxt = lines[i + 1][0].start_ms if i + 1 < len(lines) else None
        end = nxt - 10 if nxt is not None else line[-1].end_ms
        if end <= line[-1].start_ms:
            raise ValueError(f"caption line at {start} ms leaves no room for its transition cue")
        tagged = line[0].text + "".join(f"<{_ts(w.start_ms)}><c> {w.text}</c>" for w in line[1:])
        blocks.append(cue.format(_ts(start), _ts(end), above, tagged))
        above = " ".join(w.text for w in line)
        if nxt is not None:
            blocks.append(cue.format(_ts(end), _ts(nxt), above, " "))
    return "\n".join(blocks)


def write_auto_vtt(path: str | Path, words: Sequence[Word]) -> Path:
    """Write ``render_auto_vtt(words)`` to ``path``."""
    path = Path(path)
    path.write_text(render_auto_vtt(words), encoding="utf-8")
    return path


def _cues(words: Sequence[Word], words_per_cue: int) -> list[tuple[int, int, str]]:
    groups = [words[i : i + words_per_cue] for i in range(0, len(words), words_per_cue)]
    return [(g[0].start_ms, g[-1].end_ms, " ".join(w.text for w in g)) for g in groups]


def write_manual_vtt(path: str | Path, words: Sequence[Word], words_per_cue: int = 6) -> Path:
    """Write uploader-style WebVTT: cues of ``words_per_cue`` words, cue times only."""
    out = ["WEBVTT", "Kind: captions", "Language: en", ""]
    for start, end, text in _cues(words, words_per_cue):
        out += [f"{_ts(start)} --> {_ts(end)}", text, ""]
    path = Path(path)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def write_srt(path: str | Path, words: Sequence[Word], words_per_cue: int = 6) -> Path:
    """Write SubRip: numbered cues of ``words_per_cue`` words, ``,`` before the ms."""
    out = []
    for n, (start, end, text) in enumerate(_cues(words, words_per_cue), start=1):
        out += [str(n), f"{_ts(start, ',')} --> {_ts(end, ',')}", text, ""]
    path = Path(path)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def truncate(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a damaged file)."""
    dst = Path(dst)
    size = Path(src).stat().st_size
    with open(src, "rb") as fin:
        dst.write_bytes(fin.read(int(size * fraction)))
    return dst


def cached_speech_video(cache: str | Path, seconds: int) -> Path:
    """A 640x360 speech video of ``seconds`` with its ASR captions (``.en.vtt`` beside it),
    made once into ``cache`` and reused (the benchmarks' input)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    video = cache / f"speech-{seconds}s.mp4"
    if not video.exists():
        partial = cache / f".partial-{seconds}s.mp4"
        make_video(partial, float(seconds), audio="speech", fps=25, gop_s=2.0)
        partial.rename(video)
    captions = video.with_suffix(".en.vtt")
    if not captions.exists():
        write_auto_vtt(captions, make_words(float(seconds), seed=seconds))
    return video
