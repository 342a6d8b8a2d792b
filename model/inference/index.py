"""An embedding index: one Parquet file per input shard, a row per window and per segment.

    OUT/<shard name>.parquet    the rows of one shard, written whole or not at all
    OUT/index.json              written last: the checkpoint, its weights' digest, the totals

Columns: ``key`` (the window's sample key), ``video_id``, ``url``, ``title``, ``level``
(``window`` or ``segment``), ``window``, ``segment`` (-1 on a window row), ``start_ms``,
``end_ms``, ``text`` (the words spoken in the row's span), ``shard`` (its URL), and one float32
list column per vector (``text-video/video``, ...; null where the row lacks that
modality). Each file's Parquet metadata records the weights' digest, so a resumed run
never mixes two models in one index.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from model.data.collate import collate, to_example
from model.inference.encoder import Encoder, WindowVectors
from shards import layout, schema
from shards import reader as shard_reader
from shards.decode import decode_sample

SUMMARY = "index.json"
DIGEST_KEY = b"montage_digest"
LEVELS = ("window", "segment")
META_COLUMNS = (
    "key", "video_id", "url", "title", "level", "window", "segment",
    "start_ms", "end_ms", "text", "shard",
)  # fmt: skip


@dataclass
class ShardResult:
    rows: int = 0
    windows: int = 0
    skipped_samples: int = 0
    errors: list[str] = field(default_factory=list)


def part_name(shard_url: str) -> str:
    """`OUT/<this>` holds the rows of the shard at ``shard_url``."""
    stem, _ = posixpath.splitext(layout.shard_name(shard_url))
    return stem + ".parquet"


def read_windows(url: str, on_bad: Callable[[Exception], None]) -> Iterator[schema.Sample]:
    """Decoded samples of one shard; a sample that does not decode goes to ``on_bad``.
    Damage to the shard itself raises ShardError."""
    for raw in shard_reader.iter_raw(url):
        try:
            yield decode_sample(raw.key, raw.members)
        except schema.SampleError as exc:
            on_bad(exc)


def _rows(
    samples: list[schema.Sample], vecs: WindowVectors, shard: str, max_segments: int
) -> list[dict]:
    rows = []
    for i, s in enumerate(samples):
        m = s.meta
        base = {"key": m.key, "video_id": m.video_id, "url": m.url, "title": m.title,
                "window": m.window, "shard": shard}  # fmt: skip
        words = " ".join(w.text for w in m.words)
        row = {**base, "level": "window", "segment": -1, "start_ms": m.start_ms,
               "end_ms": m.end_ms, "text": words}  # fmt: skip
        for name, v in vecs.windows.items():
            row[name] = v[i].numpy() if bool(vecs.present[name][i]) else None
        rows.append(row)
        for j, (start, end) in enumerate(m.segments[:max_segments]):
            said = " ".join(w.text for w in m.words if w.segment == j)
            row = {**base, "level": "segment", "segment": j, "start_ms": start,
                   "end_ms": end, "text": said}  # fmt: skip
            for name, v in vecs.segments.items():
                row[name] = v[i, j].numpy() if bool(vecs.segment_present[name][i, j]) else None
            rows.append(row)
    return rows


def to_table(rows: list[dict], names: list[str], dim: int, digest: str) -> pa.Table:
    cols = {c: [r[c] for r in rows] for c in META_COLUMNS}
    arrays = [pa.array(cols[c]) for c in META_COLUMNS]
    fields = list(META_COLUMNS)
    for name in names:
        values = [r.get(name) for r in rows]
        flat = np.concatenate([v for v in values if v is not None] or [np.zeros(0, np.float32)])
        offsets, mask, n = [0], [], 0
        for v in values:
            n += 0 if v is None else dim
            offsets.append(n)
            mask.append(v is None)
        arr = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(flat.astype(np.float32)), mask=pa.array(mask)
        )
        arrays.append(arr)
        fields.append(name)
    table = pa.Table.from_arrays(arrays, names=fields)
    return table.replace_schema_metadata({DIGEST_KEY: digest.encode()})


def embed_shard(encoder: Encoder, url: str, batch_size: int) -> tuple[pa.Table | None, ShardResult]:
    """The index rows of one shard (None when it holds no readable window)."""
    result = ShardResult()

    def bad(exc: Exception) -> None:
        result.skipped_samples += 1
        result.errors.append(str(exc))

    cfg, tok = encoder.loaded.decode, encoder.loaded.tokenizer
    rows: list[dict] = []
    names: list[str] = []
    pending: list[tuple[schema.Sample, object]] = []

    def flush() -> None:
        if not pending:
            return
        samples = [s for s, _ in pending]
        vecs = encoder.encode_windows(collate([e for _, e in pending]))
        names[:] = list(vecs.windows)
        rows.extend(_rows(samples, vecs, url, cfg.max_segments))
        result.windows += len(samples)
        pending.clear()

    for sample in read_windows(url, bad):
        try:
            pending.append((sample, to_example(sample, cfg, tok)))
        except schema.SampleError as exc:
            bad(exc)
            continue
        if len(pending) == batch_size:
            flush()
    flush()
    result.rows = len(rows)
    if not rows:
        return None, result
    return to_table(rows, names, encoder.embed_dim, encoder.loaded.digest), result


def write_table(table: pa.Table, url: str) -> None:
    def write(f) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        f.write(buf.getvalue())

    layout.write_atomically(url, write)


def file_digest(url: str) -> str | None:
    with layout.read_whole(url) as f:
        meta = pq.read_schema(f).metadata or {}
    value = meta.get(DIGEST_KEY)
    return value.decode() if value else None


def write_summary(out: str, summary: dict) -> None:
    data = json.dumps(summary, indent=1, sort_keys=True).encode()
    layout.write_atomically(layout.join(out, SUMMARY), lambda f: f.write(data))


def index_parts(out: str) -> list[str]:
    fs, root = layout.open_output(out)
    if not fs.exists(root):
        raise FileNotFoundError(f"{out}: no such index folder")
    parts = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    if not parts:
        raise FileNotFoundError(f"{out}: holds no index files (*.parquet); run `embed` first")
    proto = out.split("://", 1)[0] + "://" if "://" in out else ""
    return [proto + p if proto and not p.startswith(proto) else p for p in parts]


@dataclass
class Index:
    """The rows of one level of an index, with their vectors as (N, E) float32 matrices."""

    meta: dict[str, list]
    vectors: dict[str, np.ndarray]  # name -> (N, E), rows without the modality are zeros
    present: dict[str, np.ndarray]  # name -> (N,) bool

    def __len__(self) -> int:
        return len(self.meta["key"])


def load_index(out: str, level: str = "segment", names: list[str] | None = None) -> Index:
    """Every row of ``level`` in the index folder ``out``."""
    assert level in LEVELS, f"level must be one of {LEVELS}"
    tables = []
    for part in index_parts(out):
        with layout.read_whole(part) as f:
            t = pq.read_table(f)
        tables.append(t.filter(pc.equal(t["level"], level)))
    table = pa.concat_tables(tables, promote_options="default")
    vector_cols = [c for c in table.column_names if c not in META_COLUMNS]
    wanted = vector_cols if names is None else names
    missing = [n for n in wanted if n not in vector_cols]
    if missing:
        raise ValueError(f"{out}: index has no vectors {missing} (it has {vector_cols})")
    meta = {c: table[c].to_pylist() for c in META_COLUMNS}
    vectors, present = {}, {}
    for name in wanted:
        col = table[name].combine_chunks()
        ok = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        flat = col.flatten().to_numpy().astype(np.float32)
        dim = flat.size // max(int(ok.sum()), 1)
        mat = np.zeros((len(table), dim), np.float32)
        mat[ok] = flat.reshape(-1, dim)
        vectors[name], present[name] = mat, ok
    return Index(meta, vectors, present)


def normalized(x: np.ndarray | torch.Tensor) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)
