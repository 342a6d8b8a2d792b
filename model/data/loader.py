"""The webdataset streams: shard URLs -> raw samples -> decoded, batched LoaderBatches.

Both streams are an explicit list of webdataset stages (see :func:`train_stages` and
:func:`val_stages`), built inside each DataLoader worker from its (rank, worker) so that
the training stream is a pure function of (seed, epoch, rank, worker). Shards are read
by ``shards.reader.stream_raw`` (the format's one reader); webdataset only shuffles,
groups and slices what it yields.

Training (endless per epoch, cut to a fixed number of batches):

- shards: the epoch's shard order comes from (seed, epoch) and is the same on every
  rank; rank r takes order[r::world], worker w of it takes [w::workers] (what
  ``wds.split_by_node`` then ``wds.split_by_worker`` do, with rank and world passed in
  instead of read from the environment). The share is cycled, reshuffled per pass, so a
  reader never runs dry. With ``resampled=True`` each reader instead draws shards with
  replacement from the whole list (no minimum shard count, ranks not disjoint).
- a sample shuffle buffer seeded with (seed, epoch, rank, worker).
- raw samples grouped ``batch_size`` at a time: a group is one batch, decoded after
  grouping, so bad samples leave a smaller batch instead of shifting later batches.
- batch i of an epoch (on a rank) comes from worker role i % W as its (i // W)-th batch
  (the DataLoader takes workers round-robin). Resuming after k batches, worker u plays
  role (u + k) % W and drops the groups that role already delivered (before decoding),
  so the resumed loader yields exactly batches k, k+1, ... of the uninterrupted run.

Validation: the sorted shard list split by rank and worker, read once, no shuffle, a last
partial batch; ranks may get different numbers of batches.

Determinism assumes the shards read the same way twice: a transient read error on a remote
shard drops different samples in the two runs, and a resumed epoch is then exact only up
to those samples.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from model.data.collate import DecodeConfig, Example, collate, to_example
from model.data.stream import LoaderBatch, StreamPosition
from model.data.tokenizer import Tokenizer
from model.seeding import derive_seed
from shards import reader as shard_reader
from shards import schema
from shards.decode import decode_sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamConfig:
    """How samples are drawn and grouped (everything that fixes the stream's order)."""

    batch_size: int
    seed: int = 0
    shuffle_buffer: int = 256  # raw samples held for shuffling; <= 1 turns sample shuffling off
    resampled: bool = False  # draw shards with replacement instead of a disjoint split
    warn_every_s: float = 60.0  # at most one "skipped a bad sample" log line per worker per period
    max_consecutive_errors: int = 200  # this many bad samples/shards in a row is an error

    def __post_init__(self) -> None:
        assert self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"
        assert self.max_consecutive_errors >= 1, "max_consecutive_errors must be >= 1"


@dataclass(frozen=True)
class Reader:
    """One reader of the stream: a DataLoader worker of a rank."""

    rank: int
    world_size: int
    worker: int
    num_workers: int  # >= 1 (a loader without worker processes is one reader)


def current_reader(rank: int, world_size: int) -> Reader:
    info = get_worker_info()
    if info is None:
        return Reader(rank, world_size, 0, 1)
    return Reader(rank, world_size, info.id, info.num_workers)


def check_enough_shards(n_shards: int, world_size: int, num_workers: int, what: str) -> None:
    """Every reader of a split stream needs at least one shard: fail early, saying so."""
    readers = world_size * max(1, num_workers)
    if n_shards < readers:
        raise ValueError(
            f"{what}: {n_shards} shard(s) cannot be split over {world_size} rank(s) x "
            f"{max(1, num_workers)} worker(s) = {readers} readers; every reader needs at least "
            "one shard. Write more (smaller) shards or use fewer workers"
            + (
                ", or set resampled=True (readers then draw shards with replacement)."
                if what == "train"
                else "."
            )
        )


# ----------------------------------------------------------------------------- bad samples


class SkipCounter:
    """An error handler that counts, warns at most once per period, and gives up.

    ``pending`` (taken by the next batch) and ``total`` count dropped items: samples that
    do not decode and read errors inside shards. More than ``max_consecutive`` in a row
    raises: the shards are unreadable, not just a few bad samples.
    """

    def __init__(self, where: str, warn_every_s: float, max_consecutive: int) -> None:
        self.where = where
        self.warn_every_s = warn_every_s
        self.max_consecutive = max_consecutive
        self.total = 0
        self.pending = 0
        self.consecutive = 0
        self._last_warn = -math.inf
        self._quiet = 0  # skips not logged since the last warning

    def __call__(self, exn: Exception) -> bool:
        self.total += 1
        self.pending += 1
        self.consecutive += 1
        if self.consecutive > self.max_consecutive:
            raise RuntimeError(
                f"{self.where}: {self.consecutive} bad samples or shards in a row (last: {exn}); "
                "the shards look unreadable"
            ) from exn
        now = time.monotonic()
        if now - self._last_warn >= self.warn_every_s:
            more = f", {self._quiet} more not shown" if self._quiet else ""
            log.warning("%s: skipped (%s); %d skipped so far%s", self.where, exn, self.total, more)
            self._last_warn, self._quiet = now, 0
        else:
            self._quiet += 1
        return True  # go on with the stream

    def ok(self) -> None:
        self.consecutive = 0

    def take(self) -> int:
        n, self.pending = self.pending, 0
        return n


# ----------------------------------------------------------------------------- stages


def _train_shards(urls: list[str], cfg: StreamConfig, epoch: int, reader: Reader) -> Iterator[str]:
    """This reader's endless shard sequence for one epoch."""
    if cfg.resampled:
        rng = random.Random(derive_seed(cfg.seed, epoch, reader.rank, reader.worker, "resample"))
        while True:
            yield rng.choice(urls)
    order = list(urls)
    random.Random(derive_seed(cfg.seed, epoch, "shard-order")).shuffle(order)  # same on all ranks
    share = order[reader.rank :: reader.world_size][reader.worker :: reader.num_workers]
    assert share, f"reader {reader} has no shard: check_enough_shards should have caught this"
    for n_pass in itertools.count():  # endless: the batch count ends the epoch
        if n_pass > 0:
            random.Random(derive_seed(cfg.seed, epoch, reader.rank, reader.worker, n_pass)).shuffle(
                share
            )
        yield from share


def _val_shards(urls: list[str], reader: Reader) -> Iterator[str]:
    yield from urls[reader.rank :: reader.world_size][reader.worker :: reader.num_workers]


def _read_samples(urls: Iterable[str], handler: SkipCounter) -> Iterator[shard_reader.RawSample]:
    """Shard URLs -> raw samples (members by suffix); unreadable shards and damage counted."""
    return shard_reader.stream_raw(urls, on_error=handler)


read_samples = wds.pipelinefilter(_read_samples)


def _decode_batches(
    src: Iterable[list[shard_reader.RawSample]],
    cfg: DecodeConfig,
    tokenizer: Tokenizer,
    counter: SkipCounter,
    need_one: bool,
) -> Iterator[LoaderBatch]:
    """Groups of raw samples -> LoaderBatch; bad samples dropped and counted."""
    for raws in src:
        examples: list[Example] = []
        for raw in raws:
            try:
                examples.append(decode_raw(raw, cfg, tokenizer))
            except schema.SampleError as exn:
                counter(exn)
                continue
            counter.ok()
        if not examples:
            if need_one:  # a training batch must exist or ranks fall out of step
                raise RuntimeError(
                    f"{counter.where}: all {len(raws)} samples of a batch failed to decode"
                )
            continue
        yield LoaderBatch(collate(examples), [e.key for e in examples], skipped=counter.take())


decode_batches = wds.pipelinefilter(_decode_batches)


def decode_raw(raw: shard_reader.RawSample, cfg: DecodeConfig, tokenizer: Tokenizer) -> Example:
    """One raw sample -> Example: checked by shards.decode, then brought to the batch's shapes."""
    return to_example(decode_sample(raw.key, raw.members), cfg, tokenizer)


def _number_batches(
    src: Iterable[LoaderBatch], epoch: int, first: int, stride: int
) -> Iterator[LoaderBatch]:
    """Stamp each batch with its index in the epoch: first, first + stride, ..."""
    for j, lb in enumerate(src):
        lb.position = StreamPosition(epoch, first + j * stride)
        yield lb


number_batches = wds.pipelinefilter(_number_batches)


# ----------------------------------------------------------------------------- pipelines


def role_batches(steps_per_epoch: int, num_roles: int, role: int, consumed: int) -> tuple[int, int]:
    """(batches of ``role`` already delivered, batches it delivers in all) after ``consumed``.

    Batch i of the epoch is role i % num_roles's (i // num_roles)-th batch.
    """
    done = consumed // num_roles + (role < consumed % num_roles)
    total = steps_per_epoch // num_roles + (role < steps_per_epoch % num_roles)
    return done, total


def train_stages(
    urls: list[str],
    stream: StreamConfig,
    decode: DecodeConfig,
    tokenizer: Tokenizer,
    reader: Reader,
    start: StreamPosition,
    steps_per_epoch: int,
) -> list:
    """The training stream of one reader, from ``start`` to the end of its epoch."""
    W = reader.num_workers
    role = (reader.worker + start.index) % W  # keeps batch i on role i % W after a resume
    done, total = role_batches(steps_per_epoch, W, role, start.index)
    where = f"train rank {reader.rank} worker {reader.worker}"
    counter = SkipCounter(where, stream.warn_every_s, stream.max_consecutive_errors)
    sample_seed = derive_seed(stream.seed, start.epoch, reader.rank, role, "samples")
    shards_reader = Reader(reader.rank, reader.world_size, role, W)
    return [
        # shard URLs for this epoch: disjoint split by rank and worker role, cycled (or resampled)
        partial(_train_shards, urls, stream, start.epoch, shards_reader),
        # read each tar through shards/ (fsspec): its members grouped by key into raw samples
        read_samples(handler=counter),
        # sample shuffle buffer, seeded by (seed, epoch, rank, role): still raw bytes here
        wds.shuffle(stream.shuffle_buffer, seed=sample_seed) if stream.shuffle_buffer > 1 else None,
        # groups of batch_size raw samples: one group is one batch
        wds.batched(stream.batch_size, collation_fn=None, partial=False),
        # resume: drop the groups this role already delivered (no decoding), stop at its share
        wds.slice(done, total),
        # decode JPEG / mel / words, drop bad samples (counted), stack into tensors
        decode_batches(decode, tokenizer, counter, need_one=True),
        # position of each batch in the epoch, for the data module's state
        number_batches(start.epoch, done * W + role, W),
    ]


def val_stages(
    urls: list[str],
    stream: StreamConfig,
    decode: DecodeConfig,
    tokenizer: Tokenizer,
    reader: Reader,
) -> list:
    """Every sample of this reader's shards once, in order."""
    where = f"val rank {reader.rank} worker {reader.worker}"
    counter = SkipCounter(where, stream.warn_every_s, stream.max_consecutive_errors)
    return [
        # this rank's and worker's shards, in the sorted order
        partial(_val_shards, urls, reader),
        # tar members -> raw samples, through shards/
        read_samples(handler=counter),
        # batches, the last one partial
        wds.batched(stream.batch_size, collation_fn=None, partial=True),
        decode_batches(decode, tokenizer, counter, need_one=False),
    ]


class ShardStream(IterableDataset):
    """The dataset a DataLoader wraps: builds this reader's webdataset pipeline per pass.

    For training, ``start`` (epoch, first batch) must be set before each pass (the data
    module's loader does it at ``iter()``); workers receive it with the pickled dataset.
    """

    def __init__(
        self,
        urls: list[str],
        stream: StreamConfig,
        decode: DecodeConfig,
        tokenizer: Tokenizer,
        rank: int = 0,
        world_size: int = 1,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        assert urls, "no shard URLs"
        assert 0 <= rank < world_size, f"rank {rank} outside world of {world_size}"
        self.urls = list(urls)
        self.stream, self.decode, self.tokenizer = stream, decode, tokenizer
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = steps_per_epoch  # None: validation (read everything once)
        self.start = StreamPosition(0, 0)

    @property
    def training(self) -> bool:
        return self.steps_per_epoch is not None

    def __len__(self) -> int:
        """Batches per epoch on this rank (training only; validation length is unknown)."""
        if self.steps_per_epoch is None:
            raise TypeError("a validation stream has no length")
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[LoaderBatch]:
        reader = current_reader(self.rank, self.world_size)
        if self.steps_per_epoch is None:
            stages = val_stages(self.urls, self.stream, self.decode, self.tokenizer, reader)
        else:
            stages = train_stages(
                self.urls,
                self.stream,
                self.decode,
                self.tokenizer,
                reader,
                self.start,
                self.steps_per_epoch,
            )
        return iter(wds.DataPipeline(*stages))
