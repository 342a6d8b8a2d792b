"""Resume: which videos of an input list an output already holds, read in parallel.

A video is done when the output has a row for it (with ``retry_failed``: unless that row
failed). The output's state files are read one per element and joined with the refs by
video id, so the cost of a worker is its share of the rows, not the whole manifest.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from ingest import METRICS as NAMESPACE
from ingest.progress import mark
from shards import manifest


def _state_files(output: str):
    """(rank, path) of each file whose rows make the output's state, in the order they apply."""
    return enumerate(manifest.state_files(output))


def _state_rows(ranked: tuple[int, str], output: str):
    """(video id, (rank, position, row)) for each row of one state file that counts."""
    rank, path = ranked
    for position, row in enumerate(manifest.read_state_file(output, path)):
        yield row.video_id, (rank, position, row)


class _TodoFn(beam.DoFn):
    """One video id with its refs and its manifest rows -> the ref, if it is still to do."""

    def __init__(self, retry_failed: bool, progress: str | None = None) -> None:
        self.retry_failed, self.progress = retry_failed, progress
        self.done = Metrics.counter(NAMESPACE, "videos_already_done")

    def process(self, joined):
        _, grouped = joined
        refs = list(grouped["ref"])
        if not refs:  # a video of an earlier input list
            return
        ranked = sorted(grouped["row"], key=lambda r: r[:2])
        row = manifest.current_row(r for *_, r in ranked)
        if self.retry_failed:
            todo = row is not None and row.status == "failed"
        else:
            todo = row is None
        if todo:
            yield from refs
        else:
            self.done.inc(len(refs))
            mark(self.progress, refs[0].video_id, "done")


class SkipDone(beam.PTransform):
    """Drop videos the output already has a row for (or, with retry_failed, all but failed ones).

    The output's rows are read in parallel, one state file per element, and joined
    with the refs by video id, so no worker holds more than its share of the manifest.
    """

    def __init__(
        self, output: str, retry_failed: bool = False, progress: str | None = None
    ) -> None:
        super().__init__()
        self.output, self.retry_failed, self.progress = output, retry_failed, progress

    def expand(self, refs):
        rows = (
            refs.pipeline
            | "Output" >> beam.Create([self.output])
            | "StateFiles" >> beam.FlatMap(_state_files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadRows" >> beam.FlatMap(_state_rows, output=self.output)
        )
        keyed = refs | "ById" >> beam.Map(lambda r: (r.video_id, r))
        return (
            {"ref": keyed, "row": rows}
            | "Join" >> beam.CoGroupByKey()
            | "Todo" >> beam.ParDo(_TodoFn(self.retry_failed, self.progress))
        )
