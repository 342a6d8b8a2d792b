"""Reading the list of videos to ingest.

Accepted forms (local paths or fsspec URLs):

- ``.txt`` (or anything else): one YouTube id or URL per line; blank lines and
  lines starting with ``#`` are ignored.
- ``.csv`` / ``.tsv``: a header row with a ``url`` column and optional ``id`` and
  ``captions`` columns (``captions``: path or URL of a VTT for videos that are
  not on YouTube). A record with every field blank is skipped, as a blank line is;
  one with an empty ``url`` but something else is an input line with ``url`` ""
  (the pipeline records it as ``invalid_input``).
- ``.parquet``: the same columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq


class InputError(ValueError):
    """The input list itself cannot be read (not one bad line: those become rows)."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of the input, before it is checked; ``where`` says where it came from."""

    url: str
    where: str
    video_id: str | None = None
    captions: str | None = None


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _rows(records: Iterator[dict], source: str, start: int) -> Iterator[InputLine]:
    for n, rec in enumerate(records, start=start):
        if all(_clean(v) is None for v in rec.values()):
            continue
        url = _clean(rec.get("url")) or ""
        yield InputLine(url, f"{source}:{n}", _clean(rec.get("id")), _clean(rec.get("captions")))


def read_inputs(path: str) -> Iterator[InputLine]:
    """Every line of an input list that names something, in file order."""
    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            with fsspec.open(path, "rb") as f:
                table = pq.read_table(f)
            if "url" not in table.column_names:
                raise InputError(f"{path}: no 'url' column (columns: {table.column_names})")
            yield from _rows(iter(table.to_pylist()), path, start=1)
            return
        with fsspec.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: input list not found") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: input list is not UTF-8 text") from None
    if lower.endswith((".csv", ".tsv")):
        reader = csv.DictReader(
            io.StringIO(text), delimiter="\t" if lower.endswith(".tsv") else ","
        )
        if reader.fieldnames is None or "url" not in [h.strip() for h in reader.fieldnames]:
            raise InputError(f"{path}: no 'url' column in the header ({reader.fieldnames})")
        reader.fieldnames = [h.strip() for h in reader.fieldnames]
        yield from _rows(reader, path, start=2)
        return
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield InputLine(line, f"{path}:{n}")
