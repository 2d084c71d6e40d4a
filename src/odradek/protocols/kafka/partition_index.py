"""The partition index: where each Kafka partition's records are in a topic's log.

A topic's partitions share its log (partitions.py, decision 0014). To serve one
partition, or all of a consumer's partitions at once, without scanning the log for
each, the door keeps per topic an index of the log in *blocks* of consecutive frames
(about ``kafka_partition_index_block_bytes`` each) and, per block and partition that
has records there, one *entry*: the partition's first and last offset in the block, its
record count and its largest timestamp. From it come, without reading the log:

* a partition's high watermark (its last record's offset + 1) and log-start offset,
  so that a consumer that read everything and committed "last own record + 1" has lag
  0, in every client;
* the blocks a fetch of some partitions from some offsets must read, so that a fetch
  of N partitions reads each frame of the log at most once (:func:`gather`), and the
  frames of partitions nobody asked for are skipped without being decoded (their
  partition is in the frame's metadata);
* the one block a timestamp lookup on a partition must read (the first whose largest
  timestamp of the partition reaches the one sought, or the one with the largest).

Building it costs a header read per frame; only frames without a stored partition
(native appends) in a topic of more than one partition are decoded, to hash their
keys, in bulk with NumPy. It is built on first use and extended by the frames that
became durable since (:meth:`PartitionIndex.snapshot`), so a restart rebuilds it from
the log; blocks that retention removed are dropped. A compaction round that rewrote
segments changes the topic's compaction stamp (``Engine.compaction_stamp``): the
index then starts again from the log, so that counts, high watermarks and log-start
offsets never name records compaction removed (a round is rare: every
``compaction_check_seconds`` at most, and only when enough of the log is dirty). Its
size is bounded: past
``kafka_partition_index_entries_max`` entries, neighbouring blocks merge in pairs.

Threading: a topic's index has one lock, held while it is extended; a query works on
an immutable :class:`Snapshot`, so concurrent fetches read the log in parallel. The
indexes of an engine live in a table keyed by the engine (:func:`index_of`), shared
by the door and the node's view of Kafka groups (catalog.py), and are rebuilt when a
topic is created again or its partition history changes.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from odradek import limits
from odradek.protocols.kafka.partitions import counts_at, partitions_by_history
from odradek.protocols.kafka.store import PartitionHistory

if TYPE_CHECKING:
    from odradek.engine import Engine
    from odradek.engine.frames import StoredFrame

# Columns of the entries matrix (int64): one row per block and partition present.
_BLOCK, _PARTITION, _FIRST, _LAST, _ROWS, _MAX_TIME = range(6)
# Columns of the blocks matrix (int64): one row per block.
_START, _END, _BYTES, _RECORDS = range(4)

_NO_ENTRIES = np.zeros((0, 6), dtype=np.int64)
_NO_BLOCKS = np.zeros((0, 4), dtype=np.int64)


def _reduce(entries: np.ndarray) -> np.ndarray:
    """Entries merged per (block, partition), sorted so: first and last offsets are the
    smallest and largest, counts add up, the largest timestamp wins."""
    if len(entries) == 0:
        return _NO_ENTRIES
    ordered = entries[np.lexsort((entries[:, _PARTITION], entries[:, _BLOCK]))]
    changed = np.ones(len(ordered), dtype=bool)
    changed[1:] = (ordered[1:, _BLOCK] != ordered[:-1, _BLOCK]) | (
        ordered[1:, _PARTITION] != ordered[:-1, _PARTITION]
    )
    starts = np.flatnonzero(changed)
    reduced = np.empty((len(starts), 6), dtype=np.int64)
    reduced[:, _BLOCK] = ordered[starts, _BLOCK]
    reduced[:, _PARTITION] = ordered[starts, _PARTITION]
    reduced[:, _FIRST] = np.minimum.reduceat(ordered[:, _FIRST], starts)
    reduced[:, _LAST] = np.maximum.reduceat(ordered[:, _LAST], starts)
    reduced[:, _ROWS] = np.add.reduceat(ordered[:, _ROWS], starts)
    reduced[:, _MAX_TIME] = np.maximum.reduceat(ordered[:, _MAX_TIME], starts)
    return reduced


def _coarsen(blocks: np.ndarray, entries: np.ndarray, entries_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring blocks in pairs until at most ``entries_max`` entries remain
    (or a single block does)."""
    while len(entries) > entries_max and len(blocks) > 1:
        ids = np.arange(len(blocks), dtype=np.int64) // 2
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        merged = np.empty((len(starts), 4), dtype=np.int64)
        merged[:, _START] = np.minimum.reduceat(blocks[:, _START], starts)
        merged[:, _END] = np.maximum.reduceat(blocks[:, _END], starts)
        merged[:, _BYTES] = np.add.reduceat(blocks[:, _BYTES], starts)
        merged[:, _RECORDS] = np.add.reduceat(blocks[:, _RECORDS], starts)
        entries = entries.copy()
        entries[:, _BLOCK] //= 2
        blocks, entries = merged, _reduce(entries)
    return blocks, entries


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The index of a topic up to ``covered`` (exclusive), immutable."""

    covered: int  # offsets below are indexed (the durable offset when it was taken)
    first_offset: int  # the log's first offset then
    blocks: np.ndarray  # (blocks, 4): start, end, bytes, records
    entries: np.ndarray  # (entries, 6) sorted by block, then partition
    _order: np.ndarray = dataclasses.field(repr=False)  # entries by partition, block order kept
    _partitions: np.ndarray = dataclasses.field(repr=False)  # entries[_order, _PARTITION]

    @classmethod
    def of(cls, covered: int, first_offset: int, blocks: np.ndarray, entries: np.ndarray) -> Snapshot:
        order = np.argsort(entries[:, _PARTITION], kind="stable")
        return cls(covered, first_offset, blocks, entries, order, entries[order, _PARTITION])

    def entries_of(self, partition: int) -> np.ndarray:
        """The partition's entries in offset order."""
        low, high = np.searchsorted(self._partitions, [partition, partition + 1])
        own: np.ndarray = self.entries[self._order[low:high]]
        return own

    def high_watermark(self, partition: int) -> int:
        """The partition's last record's offset + 1 (the log's first offset if it has
        none left)."""
        own = self.entries_of(partition)
        last = int(own[-1, _LAST]) + 1 if len(own) else 0
        return max(last, self.first_offset)

    def log_start(self, partition: int) -> int:
        """The partition's first offset still in the log (its high watermark if none)."""
        own = self.entries_of(partition)
        alive = own[own[:, _LAST] >= self.first_offset]
        if not len(alive):
            return self.high_watermark(partition)
        return max(int(alive[0, _FIRST]), self.first_offset)

    def records(self, partition: int) -> int:
        """How many of the partition's records the index counts (those below the log's
        first offset included while their block is partly retained)."""
        return int(self.entries_of(partition)[:, _ROWS].sum())

    def has_data(self, partition: int, offset: int) -> bool:
        return offset < self.high_watermark(partition)


class PartitionIndex:
    """The index of one incarnation of a topic under one partition history."""

    def __init__(self, topic: str, incarnation: str, history: PartitionHistory) -> None:
        self.topic = topic
        self.incarnation = incarnation
        self.history = history
        self.single = max(count for _, count in history) == 1  # every record is partition 0
        self._lock = threading.Lock()
        self._current = Snapshot.of(0, 0, _NO_BLOCKS, _NO_ENTRIES)
        self._compaction_stamp: int | None = None  # the topic's when the index was started
        self.frames_decoded = 0  # frames decoded to hash their keys, for tests
        self.rebuilds = 0  # times compaction made the index start again, for tests

    @property
    def current(self) -> Snapshot:
        """The last snapshot taken, without extending it (cheap; may be behind)."""
        return self._current

    def snapshot(self, engine: Engine) -> Snapshot:
        """The index up to the topic's durable offset now (extended by what is new)."""
        with self._lock:
            # Read before the log: a round swapping segments while the index is extended
            # moves the stamp after, and the next snapshot starts again.
            stamp = engine.compaction_stamp(self.topic)
            if stamp != self._compaction_stamp:
                if self._compaction_stamp is not None:  # compaction removed records: start again
                    self._current = Snapshot.of(0, 0, _NO_BLOCKS, _NO_ENTRIES)
                    self.rebuilds += 1
                self._compaction_stamp = stamp
            first = engine.resolve_start(self.topic, "earliest")
            durable = engine.resolve_start(self.topic, "latest")
            current = self._current
            if current.covered >= durable and current.first_offset >= first:
                return current
            blocks, entries = current.blocks, current.entries
            if first > current.first_offset:  # retention removed blocks
                blocks, entries = _drop_before(blocks, entries, first)
            if durable > current.covered:
                blocks, entries = self._extend(engine, blocks, entries, max(current.covered, first), durable)
            blocks, entries = _coarsen(blocks, entries, limits.kafka_partition_index_entries_max)
            self._current = Snapshot.of(max(durable, current.covered), first, blocks, entries)
            return self._current

    def _extend(
        self, engine: Engine, blocks: np.ndarray, entries: np.ndarray, start: int, end: int
    ) -> tuple[np.ndarray, np.ndarray]:
        block_bytes = limits.kafka_partition_index_block_bytes
        new_blocks: list[list[int]] = []
        reopened = len(blocks) > 0 and int(blocks[-1, _BYTES]) < block_bytes
        if reopened:  # the last block goes on filling
            new_blocks.append([int(value) for value in blocks[-1]])
            blocks = blocks[:-1]
        first_new_block = len(blocks)
        whole: list[tuple[int, int, int, int, int, int]] = []  # frames of one partition
        rows: list[np.ndarray] = []  # (records, 6) of frames decoded to hash their keys
        for frame in engine.frames(self.topic, start, end, partitions=not self.single):
            if not new_blocks or new_blocks[-1][_BYTES] >= block_bytes:
                new_blocks.append([frame.base_offset, frame.base_offset, 0, 0])
            block = new_blocks[-1]
            block[_END] = frame.next_offset
            block[_BYTES] += frame.size
            block[_RECORDS] += frame.count
            number = first_new_block + len(new_blocks) - 1
            partition = self.partition_of_frame(frame)
            if partition is not None:
                whole.append(
                    (
                        number,
                        partition,
                        frame.base_offset,
                        frame.next_offset - 1,
                        frame.count,
                        frame.max_timestamp,
                    )
                )
                continue
            decoded = self.decoded(frame)
            if decoded is None:
                continue  # damaged: nothing of it can be served
            offsets, partitions, stamps = decoded
            piece = np.empty((len(offsets), 6), dtype=np.int64)
            piece[:, _BLOCK] = number
            piece[:, _PARTITION] = partitions
            piece[:, _FIRST] = offsets
            piece[:, _LAST] = offsets
            piece[:, _ROWS] = 1
            piece[:, _MAX_TIME] = stamps
            rows.append(piece)
        kept = entries[entries[:, _BLOCK] < first_new_block]
        changed = [
            entries[entries[:, _BLOCK] >= first_new_block],
            np.array(whole, dtype=np.int64).reshape(-1, 6),
        ]
        merged = _reduce(np.concatenate(changed + rows))
        added = np.array(new_blocks, dtype=np.int64).reshape(-1, 4)
        return np.concatenate([blocks, added]), np.concatenate([kept, merged])

    def partition_of_frame(self, frame: StoredFrame) -> int | None:
        """The partition of every record of ``frame``, or None if they must be hashed."""
        if frame.partition is not None:
            return frame.partition
        if self.single:
            return 0
        counts = counts_at(self.history, np.array([frame.base_offset, frame.next_offset - 1], dtype=np.int64))
        return 0 if int(counts.max()) == 1 else None

    def decoded(self, frame: StoredFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(offsets, partitions, timestamps in µs) of a frame whose records are hashed."""
        batch = frame.records(None)
        if batch is None:
            return None
        self.frames_decoded += 1
        offsets = batch.column("offset").to_numpy(zero_copy_only=False).astype(np.int64)
        partitions = partitions_by_history(batch.column("key"), offsets, self.history)
        stamps = batch.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
        return offsets, partitions, stamps


def _drop_before(blocks: np.ndarray, entries: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Without the blocks wholly below ``first`` (removed by retention)."""
    gone = int(np.searchsorted(blocks[:, _END], first, side="right"))
    if gone == 0:
        return blocks, entries
    entries = entries[entries[:, _BLOCK] >= gone].copy()
    entries[:, _BLOCK] -= gone
    return blocks[gone:], entries


# -- the indexes of an engine ---------------------------------------------------------

_indexes: weakref.WeakKeyDictionary[Engine, dict[str, PartitionIndex]] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def index_of(engine: Engine, topic: str, incarnation: str, history: PartitionHistory) -> PartitionIndex:
    """The index of this incarnation of ``topic`` under ``history`` (a new one when
    either changed: the records' partitions may have)."""
    with _indexes_lock:
        table = _indexes.setdefault(engine, {})
        index = table.get(topic)
        if index is None or index.incarnation != incarnation or index.history != history:
            index = PartitionIndex(topic, incarnation, history)
            table[topic] = index
        return index


def forget(engine: Engine, topic: str) -> None:
    """Drop a topic's index (the topic was deleted)."""
    with _indexes_lock:
        _indexes.get(engine, {}).pop(topic, None)


# -- reading partitions -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Wanted:
    """A partition a fetch reads, from ``offset``, up to about ``max_bytes``."""

    partition: int
    offset: int
    max_bytes: int


@dataclasses.dataclass
class Gathered:
    """A partition's records a fetch read: ``batches`` hold every record of the
    partition in [start, stop), in order (damaged frames left out)."""

    wanted: Wanted
    start: int
    stop: int
    batches: list[pa.RecordBatch]

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)


def _plan(snapshot: Snapshot, wanted: Sequence[Wanted], max_bytes: int) -> dict[int, tuple[int, int]]:
    """Per wanted partition, the offsets [start, stop) to read: whole blocks' worth of
    its records from its offset on until its share of the budget is reached (the
    partitions in request order spend ``max_bytes``), and the log decoded for them at
    most ``kafka_fetch_scan_bytes_max`` beyond the first block."""
    ranges: dict[int, tuple[int, int]] = {}
    planned = 0
    scanned = 0
    blocks = snapshot.blocks
    for want in wanted:
        if planned >= max_bytes or scanned >= limits.kafka_fetch_scan_bytes_max:
            break
        own = snapshot.entries_of(want.partition)
        own = own[own[:, _LAST] >= want.offset]
        if not len(own):
            continue
        block_ids = own[:, _BLOCK]
        per_record = blocks[block_ids, _BYTES] / np.maximum(blocks[block_ids, _RECORDS], 1)
        shares = own[:, _ROWS].astype(np.float64)
        first, last = int(own[0, _FIRST]), int(own[0, _LAST])
        if want.offset > first:  # part of the first block's records lie before the offset
            shares[0] *= (last - want.offset + 1) / (last - first + 1)
        estimates = np.cumsum(shares * per_record)
        reads = np.cumsum(blocks[block_ids, _BYTES])
        allowance = min(want.max_bytes, max_bytes - planned)
        count = int(np.searchsorted(estimates, allowance, side="left")) + 1
        count = min(count, int(np.searchsorted(reads, limits.kafka_fetch_scan_bytes_max - scanned)) + 1)
        count = min(count, len(own))
        start = max(want.offset, int(own[0, _FIRST]))
        ranges[want.partition] = (start, int(own[count - 1, _LAST]) + 1)
        planned += int(min(estimates[count - 1], allowance))
        scanned += int(reads[count - 1])
    return ranges


def _intervals(ranges: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of the ranges, as sorted disjoint intervals."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges.values()):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def gather(
    engine: Engine,
    index: PartitionIndex,
    snapshot: Snapshot,
    wanted: Sequence[Wanted],
    max_bytes: int,
    value_format: str = "wire",
) -> list[Gathered]:
    """The records of the wanted partitions (in request order), each frame of the log
    read at most once for all of them: a frame stored with a partition nobody wants is
    skipped undecoded, a frame of hashed records is decoded once and split."""
    ranges = _plan(snapshot, wanted, max_bytes)
    results = {
        want.partition: Gathered(want, *ranges.get(want.partition, (want.offset, want.offset)), [])
        for want in wanted
    }
    for low, high in _intervals(ranges):
        for frame in engine.frames(index.topic, low, high, partitions=not index.single):
            inside = [
                (partition, start, stop)
                for partition, (start, stop) in ranges.items()
                if start < frame.next_offset and frame.base_offset < stop
            ]
            if not inside:
                continue
            whole = index.partition_of_frame(frame)
            if whole is not None:
                inside = [entry for entry in inside if entry[0] == whole]
                if not inside:
                    continue  # another partition's frame: not decoded
            batch = frame.records(value_format)
            if batch is None:
                continue
            if whole is not None:
                _, start, stop = inside[0]
                first = max(start - frame.base_offset, 0)
                last = min(stop, frame.next_offset) - frame.base_offset
                results[whole].batches.append(batch.slice(first, last - first))
                continue
            offsets = batch.column("offset").to_numpy(zero_copy_only=False).astype(np.int64)
            partitions = partitions_by_history(batch.column("key"), offsets, index.history)
            index.frames_decoded += 1
            for partition, start, stop in inside:
                mask = (partitions == partition) & (offsets >= start) & (offsets < stop)
                if mask.any():
                    results[partition].batches.append(batch.filter(pa.array(mask)))
    return [results[want.partition] for want in wanted]


def _rows_between(
    engine: Engine, index: PartitionIndex, partition: int, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, timestamps in µs) of the partition's records in [start, stop)."""
    gathered = gather(
        engine,
        index,
        _whole_range(partition, start, stop),
        [Wanted(partition, start, 1 << 62)],
        1 << 62,
        "typed",
    )[0]
    if not gathered.batches:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    offsets = np.concatenate(
        [b.column("offset").to_numpy(zero_copy_only=False).astype(np.int64) for b in gathered.batches]
    )
    stamps = np.concatenate(
        [b.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False) for b in gathered.batches]
    )
    return offsets, stamps


def _whole_range(partition: int, start: int, stop: int) -> Snapshot:
    """A snapshot naming one entry [start, stop) of ``partition``: makes :func:`gather`
    read that range whole."""
    entries = np.array([[0, partition, start, stop - 1, 1, 0]], dtype=np.int64)
    blocks = np.array([[start, stop, 1, 1]], dtype=np.int64)
    return Snapshot.of(stop, start, blocks, entries)


def offset_for_time(
    engine: Engine, index: PartitionIndex, snapshot: Snapshot, partition: int, micros: int
) -> tuple[int, int] | None:
    """(offset, timestamp µs) of the partition's first record at or after ``micros``."""
    own = snapshot.entries_of(partition)
    own = own[(own[:, _LAST] >= snapshot.first_offset) & (own[:, _MAX_TIME] >= micros)]
    for entry in own:  # the first holds it, unless its records are unreadable now
        offsets, stamps = _rows_between(
            engine, index, partition, max(int(entry[_FIRST]), snapshot.first_offset), int(entry[_LAST]) + 1
        )
        later = np.flatnonzero(stamps >= micros)
        if len(later):
            return int(offsets[later[0]]), int(stamps[later[0]])
    return None


def max_timestamp(
    engine: Engine, index: PartitionIndex, snapshot: Snapshot, partition: int
) -> tuple[int, int] | None:
    """(offset, timestamp µs) of the partition's record with the largest timestamp (the
    first of them if several share it)."""
    own = snapshot.entries_of(partition)
    own = own[own[:, _LAST] >= snapshot.first_offset]
    if not len(own):
        return None
    entry = own[int(np.argmax(own[:, _MAX_TIME]))]
    offsets, stamps = _rows_between(
        engine, index, partition, max(int(entry[_FIRST]), snapshot.first_offset), int(entry[_LAST]) + 1
    )
    if not len(offsets):
        return None
    best = int(np.argmax(stamps))
    return int(offsets[best]), int(stamps[best])
