"""``search --png``: one row per query, one frame per hit with its score and words.

The frames are read back from the shards the index was made from (the ``shard`` column);
matplotlib is an optional dependency (``pip install 'montage[tools]'``).
"""

from __future__ import annotations

import io
import textwrap

from PIL import Image

from model.cli.main import CommandError, MissingExtra
from shards import reader as shard_reader
from shards.decode import decode_sample


def frames_of(wanted: set[tuple[str, str, int]]) -> dict[tuple[str, int], bytes]:
    """(shard, key, segment) -> the JPEG of that segment (window rows: segment 0)."""
    by_shard: dict[str, set[str]] = {}
    for shard, key, _ in wanted:
        by_shard.setdefault(shard, set()).add(key)
    out = {}
    for shard, keys in by_shard.items():
        try:
            for raw in shard_reader.iter_raw(shard):
                if raw.key in keys:
                    sample = decode_sample(raw.key, raw.members)
                    for i, jpeg in enumerate(sample.frames):
                        out[(raw.key, i)] = jpeg
        except (OSError, ValueError) as exc:
            raise CommandError(f"--png: {shard}: cannot read its frames ({exc})") from None
    return out


def draw(results: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise MissingExtra("--png needs matplotlib (pip install 'montage[tools]')") from None
    wanted = {(m["shard"], m["key"], max(m["segment"], 0)) for r in results for m in r["moments"]}
    frames = frames_of(wanted)
    cols = max(1, max(len(r["moments"]) for r in results))
    fig, axes = plt.subplots(
        len(results), cols, figsize=(3.2 * cols, 3.0 * len(results)), squeeze=False
    )
    for row, r in zip(axes, results, strict=True):
        row[0].set_title(r["query"][:60], loc="left", fontsize=9, fontweight="bold", pad=18)
        for ax, m in zip(row, r["moments"] + [None] * cols, strict=False):
            ax.axis("off")
            if m is None:
                continue
            jpeg = frames.get((m["key"], max(m["segment"], 0)))
            if jpeg is not None:
                ax.imshow(Image.open(io.BytesIO(jpeg)).convert("RGB"))
            words = textwrap.fill(m["text"][:120], 34)
            ax.text(0, -0.02, f"{m['score']:.3f} {m['video_id']} @{m['start_ms'] // 1000}s\n{words}",
                    transform=ax.transAxes, va="top", fontsize=7)  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    from shards.layout import write_atomically

    write_atomically(path, lambda f: f.write(buf.getvalue()))
