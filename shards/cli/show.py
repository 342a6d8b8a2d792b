"""``show``: one sample as one picture, and (``--wav``) as sound.

The picture has one time axis, the video's, in seconds: the frames in a row,
each over its segment; the log-mel under them; the words at their start times.
Solid lines mark segments, dotted lines the audio sub-segments; a word takes
the colour of the sub-segment it was assigned to, and the band under it is the
sub-segment its time falls in, so an assignment is checked at a glance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shards import reader, schema
from shards.cli.locate import Target
from shards.decode import MemberError, decode_sample, open_frame
from shards.layout import shard_name

log = logging.getLogger(__name__)

SUB_COLOURS = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3")  # words, by sub-segment (cycled)
SUB_TINTS = ("#e8f0f8", "#fbeee4", "#e6f4ef", "#efeef6")  # bands behind them
MAX_ROWS = 9  # rows of word labels, at most
DPI = 100


class ShowError(ValueError):
    """The sample cannot be found or drawn; the message says why."""


# --- Finding the sample ---


class _Picker:
    """A ``TarScan`` want-function: reads the members of the one sample sought.

    It sees every member's key in order, so it counts samples as they pass
    and picks the sample with ``key``, or the one at position ``index``.
    """

    def __init__(self, key: str | None, index: int | None) -> None:
        self.key, self.index = key, index
        self.count = 0  # samples seen so far, over all shards
        self.last: str | None = None
        self.chosen: str | None = None

    def __call__(self, key: str, _suffix: str) -> bool:
        if key != self.last:
            self.last = key
            self.count += 1
            if self.chosen is None and (key == self.key or self.count - 1 == self.index):
                self.chosen = key
        return key == self.chosen


def find_sample(
    target: Target, key: str | None = None, index: int | None = None
) -> tuple[str, schema.Sample]:
    """(shard name, decoded sample) for a key or a 0-based position over all shards."""
    assert (key is None) != (index is None), "give exactly one of key and index"
    pick = _Picker(key, index)
    for url in target.urls:
        pick.last = None
        members: dict[str, bytes] = {}
        whole = False  # the chosen sample's members are all behind us
        try:
            for entry in reader.TarScan(url, want=pick):
                if pick.chosen is not None and entry.key != pick.chosen:
                    whole = True
                    break
                if entry.data is not None:
                    members[entry.suffix] = entry.data
            whole = True
        except reader.ShardError as exc:
            if not whole:
                raise ShowError(str(exc)) from None
        if pick.chosen is not None:
            try:
                return shard_name(url), decode_sample(pick.chosen, members)
            except schema.SampleError as exc:
                raise ShowError(f"{shard_name(url)}: sample is damaged: {exc}") from None
    if key is not None:
        raise ShowError(f"no sample with key {key!r} in {target.spec} ({pick.count} samples)")
    raise ShowError(f"--index {index} is out of range: {target.spec} holds {pick.count} samples")


# --- Drawing ---


def _clock(seconds: float, _pos: object = None) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}" if s != int(s) else f"{int(m)}:{int(s):02d}"


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log = 15.0 + 27.0 * np.log(np.maximum(hz, 1e-9) / 1000.0) / np.log(6.4)
    return np.where(hz >= 1000.0, log, linear)


def _mel_ticks(params: schema.ExtractionParams) -> tuple[list[float], list[str]]:
    """Positions (mel bin) of round frequencies, for the spectrogram's y axis."""
    lo, hi = _hz_to_mel(params.fmin), _hz_to_mel(params.fmax)
    ticks, labels = [], []
    for hz in (100, 250, 500, 1000, 2000, 4000, 8000):
        if params.fmin < hz < params.fmax:
            ticks.append(float((_hz_to_mel(hz) - lo) / (hi - lo) * (params.n_mels + 1) - 1))
            labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    return ticks, labels


def _decode_frame(jpg: bytes, segment: int) -> np.ndarray:
    try:
        with open_frame(jpg) as img:
            return np.asarray(img.convert("RGB"))
    except (MemberError, OSError) as exc:
        raise ShowError(f"frame {segment} does not decode: {exc}") from None


def _boundaries(ax, meta: schema.SampleMeta, colour: str, alpha: float = 1.0) -> None:
    subs = meta.params.subsegments
    for s, e in meta.segments:
        ax.axvline(s / 1000, color=colour, lw=1.3, alpha=alpha, zorder=3)
        for j in range(1, subs):
            x = (s + (e - s) * j / subs) / 1000
            ax.axvline(x, color=colour, lw=0.9, ls=(0, (2, 3)), alpha=0.8 * alpha, zorder=3)
    ax.axvline(meta.segments[-1][1] / 1000, color=colour, lw=1.3, alpha=alpha, zorder=3)


def _draw_frames(fig, ax, sample: schema.Sample) -> None:
    meta = sample.meta
    t0, t1 = meta.start_ms / 1000, meta.end_ms / 1000
    box = ax.get_position()
    width_in, height_in = box.width * fig.get_figwidth(), box.height * fig.get_figheight()
    sec_per_in = (t1 - t0) / width_in
    for i, ((s, e), jpg) in enumerate(zip(meta.segments, sample.frames, strict=True)):
        img = _decode_frame(jpg, i)
        aspect = img.shape[1] / img.shape[0]
        w_in = min((e - s) / 1000 / sec_per_in * 0.96, height_in * aspect)
        h_frac = w_in / aspect / height_in
        mid = (s + e) / 2000
        half = w_in * sec_per_in / 2
        extent = (mid - half, mid + half, 0.5 - h_frac / 2, 0.5 + h_frac / 2)
        ax.imshow(img, extent=extent, aspect="auto", interpolation="antialiased", zorder=2)
        ax.text(
            mid - half + 0.01 * (t1 - t0) / len(meta.segments),
            0.5 + h_frac / 2 - 0.04,
            f"{i}",
            color="white",
            fontsize=8,
            va="top",
            zorder=4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "black", "ec": "none", "alpha": 0.55},
        )
    ax.set_ylim(0, 1)
    ax.set_axis_off()


def _draw_mel(ax, sample: schema.Sample) -> None:
    meta = sample.meta
    mel = sample.mel_float()
    if mel is None:
        ax.set_facecolor("#f2f2f2")
        ax.text(0.5, 0.5, "no audio", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        _boundaries(ax, meta, "#bbbbbb")
        return
    n_mels = meta.params.n_mels
    vmax = max(float(np.percentile(mel, 99.5)), 1e-3)
    for (s, e), block in zip(meta.segments, mel, strict=True):
        extent = (s / 1000, e / 1000, -0.5, n_mels - 0.5)
        ax.imshow(
            block, extent=extent, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=vmax
        )
    ticks, labels = _mel_ticks(meta.params)
    ax.set_yticks(ticks, labels)
    ax.set_ylim(-0.5, n_mels - 0.5)
    ax.set_ylabel("log-mel (Hz)")
    _boundaries(ax, meta, "white", alpha=0.85)


def _layout_words(
    widths: Sequence[float], starts: Sequence[float], rows: int, gap: float
) -> tuple[list[int], bool]:
    """Row of each label: the first row free at its start; (rows, every label fitted)."""
    ends = [-math.inf] * rows
    placed, fitted = [], True
    for start, width in zip(starts, widths, strict=True):
        free = [r for r in range(rows) if ends[r] + gap <= start]
        row = free[0] if free else min(range(rows), key=lambda r: ends[r])
        fitted = fitted and bool(free)
        ends[row] = start + width
        placed.append(row)
    return placed, fitted


@dataclass(slots=True)
class _WordPlan:
    size: float  # font size, points
    rows: list[int]  # row of each word, 0 = top
    n_rows: int


def _plan_words(meta: schema.SampleMeta, width_in: float, dpi: float) -> _WordPlan:
    """The largest font at which the labels fit in at most MAX_ROWS rows without overlap."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    if not meta.words:
        return _WordPlan(10, [], 2)
    renderer = RendererAgg(10, 10, dpi)
    sec_per_px = (meta.end_ms - meta.start_ms) / 1000 / (width_in * dpi)
    starts = [max(w.start_ms, meta.start_ms) / 1000 for w in meta.words]
    for size in (10, 9, 8, 7):
        font = FontProperties(size=size)
        widths = [
            renderer.get_text_width_height_descent(w.text, font, ismath=False)[0] * sec_per_px
            for w in meta.words
        ]
        for n_rows in range(2, MAX_ROWS + 1):
            rows, fitted = _layout_words(widths, starts, n_rows, gap=6 * sec_per_px)
            if fitted:
                return _WordPlan(size, rows, n_rows)
    return _WordPlan(size, rows, n_rows)  # the densest speech: some labels touch


def _draw_words(ax, meta: schema.SampleMeta, plan: _WordPlan) -> None:
    subs = meta.params.subsegments
    for s, e in meta.segments:  # bands: where each sub-segment's time lies
        for j in range(subs):
            a, b = s + (e - s) * j / subs, s + (e - s) * (j + 1) / subs
            ax.axvspan(a / 1000, b / 1000, color=SUB_TINTS[j % len(SUB_TINTS)], lw=0, zorder=0)
    _boundaries(ax, meta, "#555555")
    ax.set_yticks([])
    ax.set_ylim(0, plan.n_rows)
    if not meta.words:
        ax.text(0.5, 0.5, "no words", transform=ax.transAxes, ha="center", va="center")
        return
    for w, row in zip(meta.words, plan.rows, strict=True):
        colour = SUB_COLOURS[w.subsegment % len(SUB_COLOURS)]
        x = max(w.start_ms, meta.start_ms) / 1000
        y = plan.n_rows - row - 0.5
        ax.text(x, y + 0.08, w.text, fontsize=plan.size, color=colour, va="center", zorder=5)
        bar = [x, w.end_ms / 1000]
        ax.plot(bar, [y - 0.3] * 2, color=colour, lw=1.6, solid_capstyle="butt", zorder=4)


def _frame_height_in(sample: schema.Sample, width_in: float) -> float:
    """Height of the frames row: a frame as wide as its segment, within sensible bounds."""
    with open_frame(sample.frames[0]) as img:
        aspect = img.width / img.height if img.height else 16 / 9
    seg_in = width_in / sample.meta.n_segments
    return min(max(seg_in * 0.96 / aspect, 0.75), 2.3)


def render(sample: schema.Sample, out: str | Path, shard: str = "") -> Path:
    """Draw ``sample`` into the PNG ``out``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    meta = sample.meta
    t0, t1 = meta.start_ms / 1000, meta.end_ms / 1000
    width, left, right = 16.0, 0.8, 0.2  # inches
    try:
        frames_in = _frame_height_in(sample, width - left - right)
    except (MemberError, OSError) as exc:
        raise ShowError(f"frame 0 does not decode: {exc}") from None
    plan = _plan_words(meta, width - left - right, DPI)
    heights = [frames_in, 2.4, max(1.2, 0.1 + 0.27 * plan.n_rows)]  # frames, log-mel, words
    top, bottom, gap = 0.95, 0.75, 0.08
    height = top + sum(heights) + 2 * gap + bottom
    fig = plt.figure(figsize=(width, height), dpi=DPI, facecolor="white")
    try:
        grid = fig.add_gridspec(
            3, 1, height_ratios=heights, hspace=gap / (sum(heights) / 3),
            left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
        )  # fmt: skip
        ax_f = fig.add_subplot(grid[0])
        ax_m = fig.add_subplot(grid[1], sharex=ax_f)
        ax_w = fig.add_subplot(grid[2], sharex=ax_f)
        x0 = left / width
        title = meta.title or "(untitled)"
        if len(title) > 110:
            title = title[:107] + "..."
        fig.text(x0, 1 - 0.32 / height, title, fontsize=16, weight="bold", va="center")
        facts = [
            meta.video_id,
            f"window {meta.window}",
            f"{_clock(t0)} – {_clock(t1)}",
            f"{meta.n_segments} segments × {meta.params.segment_ms / 1000:g} s",
            f"{len(meta.words)} words ({meta.caption_kind} captions)",
        ]
        if meta.non_speech:
            facts.append(" ".join(meta.non_speech))
        y_facts = 1 - 0.66 / height
        fig.text(x0, y_facts, "   ·   ".join(facts), fontsize=10.5, color="#444444", va="center")
        where = f"{shard}:{meta.key}" if shard else meta.key
        fig.text(
            1 - right / width,
            y_facts,
            where,
            fontsize=8.5,
            color="#888888",
            ha="right",
            va="center",
        )
        ax_f.set_xlim(t0, t1)
        _draw_frames(fig, ax_f, sample)
        _draw_mel(ax_m, sample)
        ax_m.tick_params(labelbottom=False)
        _draw_words(ax_w, meta, plan)
        ax_w.set_xlim(t0, t1)
        ax_w.xaxis.set_major_locator(MaxNLocator(nbins=16, steps=[1, 2, 2.5, 5, 10]))
        ax_w.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax_w.set_xlabel("video time (m:ss)")
        fig.text(
            1 - right / width, 0.12 / height,
            "solid: segments (one frame each)   dotted: audio sub-segments   "
            "word colour: its audio sub-segment   bar: its span",
            fontsize=8, color="#777777", ha="right",
        )  # fmt: skip
        out = Path(out)
        fig.savefig(out, format="png", facecolor="white")
    finally:
        plt.close(fig)
    return out


# --- Listening ---


def synthesize(sample: schema.Sample, n_iter: int = 32) -> tuple[np.ndarray, int]:
    """The audio the model hears: Griffin-Lim of each segment's log-mel, (samples,) float32.

    Each segment is inverted on its own (they were computed on their own) and
    padded or cut to the segment's length, so the sound keeps the video's time.
    """
    from shards.mel import log_mel_to_audio

    mel_log = sample.mel_float()
    if mel_log is None:
        raise ShowError(f"{sample.key}: has no audio to synthesize")
    p = sample.meta.params
    seg_len = p.sample_rate * p.segment_ms // 1000
    out = []
    for block in mel_log:  # (n_mels, frames)
        wav = log_mel_to_audio(block, p, n_iter)
        out.append(np.pad(wav, (0, max(0, seg_len - len(wav))))[:seg_len])
    audio = np.concatenate(out).astype(np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio *= 0.9 / peak
    return audio, p.sample_rate


def write_wav(sample: schema.Sample, out: str | Path, n_iter: int = 32) -> Path:
    import soundfile

    audio, rate = synthesize(sample, n_iter)
    out = Path(out)
    soundfile.write(out, audio, rate, subtype="PCM_16")
    return out
