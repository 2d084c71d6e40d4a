"""One topic: its log, key heads, key index and producer state, and the writer that
sequences appends.

Threading model (see docs/threading.md)
---------------------------------------
* ``_write_lock`` serializes every mutation: expectation checks, version assignment,
  the write of the frame, and the in-memory state that follows it. The lock is held
  only for CPU work and one ``pwritev``; the fsync happens outside it (group commit),
  so concurrent appends share fsyncs.
* Readers take no lock. They read frames below ``commit.durable``, which only grows;
  frames there never change. Reads therefore never block appends, nor the other way.
* Lock order: topic ``_write_lock`` → key index lock → group-commit condition. Nothing
  acquires them in another order.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.config import TopicConfig
from odradek.engine import segment as seg
from odradek.engine.commit import GroupCommit
from odradek.engine.compaction import CompactionResult, Compactor, Throttle
from odradek.engine.frames import partition_meta
from odradek.engine.keyheads import KeyHeads
from odradek.engine.keyindex import KeyIndex, entries_for
from odradek.engine.log import Segment, TopicLog, gather, schemaless_stored_schema
from odradek.engine.producers import ProducerState, producer_meta, validate_producer
from odradek.engine.snapshots import KeySnapshots
from odradek.engine.topic_schema import TopicSchema
from odradek.engine.topicfiles import HeadFile, save_topic_meta
from odradek.engine.versions import (
    SMALL_APPEND_RECORDS_MAX,
    Assignment,
    FewAssignment,
    assign_few,
    assign_versions,
)
from odradek.errors import (
    ConflictError,
    DataDamaged,
    InvalidRequest,
    OffsetOutOfRange,
    RequestTooLarge,
    StorageError,
)
from odradek.records import INPUT_SCHEMA, STORED_SCHEMA, now_micros
from odradek.storage.disk import LOCAL, Disk, describe_os_error, remove_leftovers
from odradek.storage.handles import HandleCache
from odradek.types import AppendResult

log = logging.getLogger(__name__)
# Compaction stamps (Topic.compaction_stamp): next() on a count is atomic in CPython.
_compaction_stamps = itertools.count(1)


def normalize_key(key: object) -> bytes:
    if isinstance(key, bytes):
        result = key
    elif isinstance(key, str):
        result = key.encode()
    elif isinstance(key, (bytearray, memoryview)):
        result = bytes(key)
    else:
        raise InvalidRequest(f"a key must be bytes or str, got {type(key).__name__}")
    if len(result) > limits.key_bytes_max:  # no record can have it; KeyHeads hashes bounded keys
        raise RequestTooLarge(
            f"a key of {len(result)} bytes is over the limit of {limits.key_bytes_max} bytes"
        )
    return result


class Topic:
    def __init__(
        self,
        name: str,
        directory: str,
        config: TopicConfig,
        created_at: float,
        *,
        incarnation: str,
        fsync: bool = True,
        schema: TopicSchema | None = None,
        disk: Disk = LOCAL,
        accepted_damage: list[tuple[int, int]] | None = None,
        handles: HandleCache | None = None,
        log_start: int = 0,
    ) -> None:
        self.name = name
        self.directory = directory
        self.config = config
        self.created_at = created_at
        self.incarnation = incarnation
        self.fsync = fsync
        self.disk = disk
        self.closed = False
        self._write_lock = threading.Lock()
        self._meta_lock = threading.Lock()
        self._compaction_lock = threading.Lock()  # one compaction round at a time
        # Changes (to a value no other topic object of this process ever had) whenever a
        # compaction round rewrote, or may have rewritten, a segment: what keeps a summary
        # of the log's frames (the Kafka door's partition index) sees it went stale.
        self.compaction_stamp = next(_compaction_stamps)
        # Damaged offset ranges an operator accepted (`odradek topic repair --drop-range`).
        self.accepted_damage: list[tuple[int, int]] = sorted(accepted_damage or [])
        # Only with fsync is an acknowledged record durable, so only then does a log that
        # ends before the head mean damage (without fsync an OS crash may lose a tail).
        handles = handles or HandleCache(disk)
        self.leftovers_removed = sum(
            remove_leftovers(disk, path) for path in (directory, os.path.join(directory, "producers"))
        )
        self.head = HeadFile(disk, directory, handles)
        acknowledged = self.head.read() if fsync else 0
        self.log = TopicLog(directory, config, disk, acknowledged=acknowledged, fsync=fsync, handles=handles)
        self.log.before_new_segment = self._save_producers
        self.schema: TopicSchema | None = None
        if schema is not None:
            clamped = schema.clamped_to(self.log.next_offset)
            self._use_schema(clamped)
            if clamped is not schema:
                self.save_meta()
        self.keys = KeyIndex(os.path.join(directory, "keys"), self.log.next_offset, disk, fsync=fsync)
        rebuilt_from = self.keys.covered_until
        # Key-index damage that the log cannot repair: runs discarded whose records
        # retention already removed (the versions of keys last written there are lost).
        self.index_damage: list[seg.Damage] = []
        if self.keys.damaged_runs and rebuilt_from < self.log.first_offset:
            names = ", ".join(run[0] for run in self.keys.damaged_runs)
            self.index_damage.append(
                seg.Damage(
                    "keys",
                    0,
                    0,
                    rebuilt_from,
                    self.log.first_offset,
                    f"key index run(s) {names} are damaged and retention removed the records they "
                    "indexed: the current versions of keys last written there are unknown",
                )
            )
        self.producers, snapshot_offset = self._load_producers()
        self._rebuild_key_index()
        self.heads = KeyHeads.from_arrays(*self.keys.heads())
        # The log start deleted records moved it to (delete_records, Kafka's DeleteRecords):
        # offsets below it are gone for every reader though their segment may remain.
        self.log_start = min(log_start, self.log.next_offset)
        self.keys.retention_floor = self.first_offset
        self._written = self.log.next_offset
        self._syncing: tuple[seg.SegmentFile, int] | None = None  # what the running fsync covers
        self.commit = GroupCommit(self._written, self._take_sync_handle, fsync, disk)
        self.commit.on_durable(self._synced)
        if fsync:
            self.commit.on_durable(self.head.write)
        self.frames_touched = 0  # frames decoded by read_key, for tests and metrics
        self.compactor = Compactor(self)
        # Key snapshots: a compacted companion log in <directory>/snapshots (snapshots.py).
        self.snapshots = KeySnapshots(self)
        # Damage in the part of the log that key heads and producer state were rebuilt
        # from: the versions (and sequences) of the records there are unknown, so the
        # topic refuses appends until an operator decides (repair --drop-range).
        self._rebuilt_from = min(rebuilt_from, snapshot_offset)
        for damage in self.log.damages:
            log.error("%s", damage.describe(name))

    # -- damage -----------------------------------------------------------------------

    @property
    def damages(self) -> list[seg.Damage]:
        return [*self.index_damage, *self.log.damages]

    def is_accepted(self, damage: seg.Damage) -> bool:
        return any(
            start <= damage.first_offset and damage.end_offset <= end for start, end in self.accepted_damage
        )

    def write_blockers(self) -> list[seg.Damage]:
        """Damage that stops appends: not accepted, in the range state was rebuilt from."""
        rebuilt = [d for d in self.log.damages if d.end_offset > self._rebuilt_from]
        return [d for d in [*self.index_damage, *rebuilt] if not self.is_accepted(d)]

    def accept_damage(self, first: int, end: int) -> list[seg.Damage]:
        """Record an operator's decision that offsets [first, end) are lost; return the
        damage it covers. Refused if the range holds intact records or no damage."""
        with self._write_lock:
            self._check_open_for_repair()
            covered = [d for d in self.damages if first <= d.first_offset and d.end_offset <= end]
            if not covered:
                raise InvalidRequest(
                    f"topic {self.name} has no damaged offsets inside {first}..{end - 1}; "
                    f"its damage: {_ranges(self.damages) or 'none'}"
                )
            intact = self._intact_between(first, end, covered)
            if intact is not None:
                raise InvalidRequest(
                    f"offsets {first}..{end - 1} of topic {self.name} include intact records (from "
                    f"offset {intact}); --drop-range accepts the loss of damaged offsets only: "
                    f"name the damaged ranges ({_ranges(covered)})"
                )
            previous = self.accepted_damage
            self.accepted_damage = sorted([*previous, (first, end)])
            try:
                self.save_meta()
            except OSError as exc:
                self.accepted_damage = previous
                raise StorageError(
                    f"could not save the repair of topic {self.name}: {describe_os_error(exc)}"
                ) from exc
            return covered

    def _intact_between(self, first: int, end: int, covered: list[seg.Damage]) -> int | None:
        for _, frame in self.log.frames_from(first, end):
            if not any(d.first_offset <= frame.base_offset < d.end_offset for d in covered):
                return max(frame.base_offset, first)
        return None

    def _check_open_for_repair(self) -> None:
        if self.closed:
            raise StorageError(f"topic {self.name} is closed")

    def _read_or_note(self, segment: Segment, frame: seg.FrameInfo, verify: bool) -> pa.RecordBatch | None:
        """A frame's batch, or None if it is damaged (recorded and reported once)."""
        try:
            return self.log.read_frame(segment, frame, verify)
        except seg.FrameDamaged as exc:
            if frame.base_offset not in segment.bad:
                damage = self.log.note_damage(segment, frame, str(exc))
                log.error("%s", damage.describe(self.name))
                self.damage_found += 1
            return None

    damage_found = 0  # frames found damaged by reads since open, for metrics

    def meta(self) -> dict[str, Any]:
        """What topic.json holds."""
        meta: dict[str, Any] = {
            "name": self.name,
            "incarnation": self.incarnation,
            "config": self.config.to_json(),
            "created_at": self.created_at,
            "format": 1,
        }
        if self.schema is not None:
            meta["schema"] = self.schema.to_json()
        if self.accepted_damage:
            meta["accepted_damage"] = [list(r) for r in self.accepted_damage]
        if self.log_start:
            meta["log_start"] = self.log_start
        return meta

    def save_meta(self) -> None:
        with self._meta_lock:
            save_topic_meta(self.disk, self.directory, self.meta(), sync=self.fsync)

    def _use_schema(self, schema: TopicSchema | None) -> None:
        self.schema = schema
        self.log.stored_schema_at = schemaless_stored_schema if schema is None else schema.stored_at

    def change_schema(
        self, change: Callable[[TopicSchema | None, int], TopicSchema | None]
    ) -> TopicSchema | None:
        """Apply ``change(current schema, next offset)`` under the writer lock and make the
        result durable in topic.json before any append can use it."""
        with self._write_lock:
            self._check_usable()
            current = self.schema
            changed = change(current, self.log.next_offset)
            if changed is None or changed is current:
                return current
            self._use_schema(changed)
            try:
                self.save_meta()
            except OSError as exc:
                self._use_schema(current)
                raise StorageError(f"could not save the schema of topic {self.name}: {exc}") from exc
            return changed

    def _producer_dir(self) -> str:
        return os.path.join(self.directory, "producers")

    def _load_producers(self) -> tuple[ProducerState, int]:
        """Producer state: the newest usable snapshot, then the frames after it."""
        active_base = self.log.active.base_offset
        state, snapshot_offset = ProducerState.load(self.disk, self._producer_dir(), active_base)
        for segment in self.log.segments:
            if segment.next_offset <= snapshot_offset:
                continue
            frames = segment.frames
            if frames and any(f.meta is None for f in frames) and segment is not self.log.active:
                # Read from a sidecar index, which has no metadata: read the headers.
                frames = segment.file.scan().frames
            for frame in frames:
                if frame.base_offset >= snapshot_offset:
                    state.apply_meta(frame.meta, frame.base_offset, frame.count)
        return state, snapshot_offset

    def _save_producers(self, offset: int) -> None:
        self.producers.save(self.disk, self._producer_dir(), offset, sync=self.fsync)
        ProducerState.prune(self.disk, self._producer_dir())

    def _rebuild_key_index(self) -> None:
        """Re-add to the key index what the log holds past the index's runs.

        The frames' key, version and offset columns are gathered and added to the index
        ``limits.key_index_reindex_records`` records (or ``key_index_reindex_bytes`` of
        frames, whose batches the gathered columns keep alive) at a time, not frame by frame: a log of small
        appends (a Kafka producer's batches of a few records, single appends) is tens
        of thousands of frames, and each add costs a few Arrow calls whatever its size.
        """
        start = max(self.keys.covered_until, self.log.first_offset)
        end = self.log.next_offset
        if start >= end:
            return
        log.info("topic %s: indexing keys of offsets %d..%d from the log", self.name, start, end)
        keys: list[pa.Array] = []
        versions: list[pa.Array] = []
        offsets: list[pa.Array] = []
        gathered = gathered_bytes = 0

        def add(end_offset: int) -> None:
            nonlocal gathered, gathered_bytes
            if keys:
                self._add_to_key_index(keys, versions, offsets, end_offset)
            keys.clear()
            versions.clear()
            offsets.clear()
            gathered = gathered_bytes = 0

        for segment, frame in self.log.frames_from(start, end):
            batch = self._read_or_note(segment, frame, verify=True)
            if batch is None:
                continue
            if frame.base_offset < start:
                batch = batch.slice(start - frame.base_offset)
            key = batch.column("key")
            if key.null_count == len(key):
                continue
            if keys and key.type != keys[0].type:
                add(frame.base_offset)  # gathered arrays are concatenated: one type at a time
            keys.append(key)
            versions.append(batch.column("version"))
            offsets.append(batch.column("offset"))
            gathered += len(key)
            gathered_bytes += frame.size
            full = gathered_bytes >= limits.key_index_reindex_bytes
            if full or gathered >= limits.key_index_reindex_records:
                add(frame.next_offset)
        add(end)

    def _add_to_key_index(
        self, keys: list[pa.Array], versions: list[pa.Array], offsets: list[pa.Array], end_offset: int
    ) -> None:
        """Add the entries of gathered records (one key type) to the key index, as
        covering the log up to ``end_offset``."""
        key = pa.concat_arrays(keys)
        keyed = key.is_valid().to_numpy(zero_copy_only=False) if key.null_count else None
        entries = entries_for(
            key,
            pa.concat_arrays(versions).fill_null(0).to_numpy(),
            pa.concat_arrays(offsets).to_numpy(),
            keyed,
        )
        self.keys.add(entries, end_offset)

    def _take_sync_handle(self) -> tuple[int, int]:
        with self._write_lock:
            if self.closed:
                raise StorageError(
                    f"topic {self.name} was closed (deleted or shut down) before this append was "
                    "fsync'd: it may or may not have been written"
                )
            fd, segment, token = self.log.sync_handle()
            self._syncing = (segment, token)
            return self._written, fd

    def _synced(self, _offset: int) -> None:
        """After a group commit's fsync: its segment's handle may be closed when idle."""
        syncing = self._syncing
        if syncing is not None and self.fsync:
            syncing[0].handle.synced(syncing[1])
        elif not self.fsync:
            self.log.active.file.handle.synced()  # without fsync nothing waits to be synced

    # -- appending --------------------------------------------------------------------

    def append(
        self,
        batch: pa.RecordBatch,
        expect: Mapping[Any, int] | None = None,
        expect_offset: int | None = None,
        producer: object = None,
    ) -> AppendResult:
        """Append an INPUT_SCHEMA batch atomically; return once it is durable."""
        return self.submit(batch, expect, expect_offset, producer).wait()

    def submit(
        self,
        batch: pa.RecordBatch,
        expect: Mapping[Any, int] | None = None,
        expect_offset: int | None = None,
        producer: object = None,
        partition: int | None = None,
    ) -> PendingAppend:
        """Write an append and return without waiting for its fsync.

        Expectations and sequences are checked now (a refusal raises now, nothing
        written); :meth:`PendingAppend.wait` returns the result once it is durable. A
        caller streaming batches submits the next one while the last one syncs.
        ``partition`` (the Kafka door's) is kept in the frame's metadata (frames.py).
        """
        if partition is not None and (
            isinstance(partition, bool) or not isinstance(partition, int) or partition < 0
        ):
            raise InvalidRequest(f"partition must be an int >= 0, got {partition!r}")
        expectations = _normalize_expectations(expect)
        if expect_offset is not None and (
            isinstance(expect_offset, bool) or not isinstance(expect_offset, int)
        ):
            raise InvalidRequest(f"expect_offset must be an int, got {expect_offset!r}")
        producer_key = validate_producer(producer) if producer is not None else None
        count = batch.num_rows
        # A few records (a single event, usually) take a path in plain Python: a kernel
        # call or a NumPy array costs more than a loop over eight values. The frame it
        # writes is the same, byte for byte (tests/engine/test_submit_small.py).
        few = count <= SMALL_APPEND_RECORDS_MAX
        timestamps = batch.column(_INPUT_TIMESTAMP)
        if few:
            timestamps, max_timestamp = _stamp_few(timestamps, count)
        else:
            if timestamps.null_count:
                now = pa.scalar(now_micros(), _TIMESTAMP_TYPE)
                if timestamps.null_count == count:  # the usual case: the server stamps them
                    timestamps = pa.repeat(now, count)
                else:
                    timestamps = pc.fill_null(timestamps, now)
            max_timestamp = int(pc.max(timestamps.view(pa.int64())).as_py())
        keys = batch.column(_INPUT_KEY)
        if keys.null_count and self.config.compacted:
            raise InvalidRequest(
                f"topic {self.name} is compacted (cleanup={self.config.cleanup!r}): every record needs "
                f"a key, and {keys.null_count} of {count} have none"
            )
        key_list = keys.to_pylist() if few else None
        schema = self.schema
        values = batch.column(_INPUT_VALUE)
        typed = schema.conform(values, self.name) if schema is not None else _opaque(values, self.name)
        with self._write_lock:
            self._check_usable()
            if self.schema is not schema:  # the schema changed meanwhile: conform again
                schema = self.schema
                typed = (
                    schema.conform(values, self.name) if schema is not None else _opaque(values, self.name)
                )
            self.keys.check_writable()
            blockers = self.write_blockers()
            if blockers:
                raise DataDamaged(_blocked_message(self.name, blockers))
            if producer_key is not None:
                original = self.producers.check(producer_key)
                if original is not None:
                    return PendingAppend(self, original[1] + original[2], None, original[1:])
            base = self.log.next_offset
            if expect_offset is not None and expect_offset != base:
                raise ConflictError(
                    f"expected the next offset of {self.name} to be {expect_offset}, it is {base}",
                    None,
                    expect_offset,
                    base,
                )
            self._check_key_expectations(expectations)
            assignment: Assignment | FewAssignment
            few_entries: tuple[list[bytes], list[int], list[int]] | None = None
            if key_list is not None:
                few_assignment = assign_few(key_list, self.heads)
                offsets_column = _few_int64s(list(range(base, base + count)))
                versions_column = _few_versions(key_list, few_assignment.versions)
                few_entries = _few_entries(key_list, few_assignment.versions, base)
                assignment = few_assignment
            else:
                batch_assignment = assign_versions(keys, self.heads)
                offsets = np.arange(base, base + count, dtype=np.int64)
                offsets_column = pa.array(offsets)
                versions_column = pa.array(
                    batch_assignment.versions,
                    pa.int64(),
                    mask=None if batch_assignment.keyed is None else ~batch_assignment.keyed,
                )
                entries = entries_for(keys, batch_assignment.versions, offsets, batch_assignment.keyed)
                assignment = batch_assignment
            stored = pa.RecordBatch.from_arrays(
                [
                    offsets_column,
                    timestamps,
                    keys,
                    typed,
                    batch.column(_INPUT_HEADERS),
                    versions_column,
                ],
                schema=STORED_SCHEMA if schema is None else schema.stored_schema,
            )
            meta = producer_meta(producer_key) if producer_key is not None else None
            if partition is not None:
                meta = {**(meta or {}), **partition_meta(partition)}
            frame = self.log.append(stored, base, max_timestamp, meta)  # raises: nothing changed
            # The frame is written: from here on nothing may fail before the state
            # below reflects it.
            assignment.apply(self.heads)
            if producer_key is not None:
                self.producers.record(producer_key, base, count)
            if few_entries is not None:
                self.keys.add_few(*few_entries, end_offset=base + count)
            else:
                self.keys.add(entries, base + count)
            self._written = base + count
            if self.commit.journaled:  # its own journal flush acknowledges it (commit.py)
                self.commit.written(self._written, *self.log.journal_mark())
        return PendingAppend(
            self, base + count, AppendResult(base, count, assignment.versions_by_key()), size=frame.size
        )

    def _check_key_expectations(self, expectations: dict[bytes, int]) -> None:
        if not expectations:
            return
        _, current = self.heads.lookup(pa.array(list(expectations), pa.binary()))
        for (key, expected), actual in zip(expectations.items(), current.tolist()):
            if actual != expected:
                raise ConflictError(
                    f"expected key {_show(key)} of {self.name} at version {expected}, "
                    f"it is at version {actual}",
                    key,
                    expected,
                    actual,
                )

    def _replay_result(self, base: int, count: int) -> AppendResult:
        """The result of an earlier append, recomputed from the log."""
        versions: dict[bytes, int] = {}
        if base >= self.first_offset:
            for batch in self._fetch_stored(base, count, 1 << 62):
                keyed = batch.filter(batch.column("key").is_valid())
                if keyed.num_rows:
                    grouped = pa.Table.from_batches([keyed]).group_by("key").aggregate([("version", "max")])
                    versions.update(
                        zip(grouped.column("key").to_pylist(), grouped.column("version_max").to_pylist())
                    )
        return AppendResult(base, count, versions, duplicate=True)

    def _check_usable(self) -> None:
        if self.closed:
            raise StorageError(f"topic {self.name} is closed")
        if self.commit.error is not None:
            raise self.commit.error

    # -- reading ----------------------------------------------------------------------

    @property
    def durable_offset(self) -> int:
        return self.commit.durable

    @property
    def first_offset(self) -> int:
        """The first offset a reader may ask for: the first segment's, or the log start
        deleted records moved it to, whichever is later."""
        return max(self.log.first_offset, self.log_start)

    def check_start(self, offset: int) -> None:
        first, end = self.first_offset, self.commit.durable
        if offset < first or offset > end:
            raise OffsetOutOfRange(
                f"offset {offset} of {self.name} is out of range: the topic holds offsets "
                f"{first} to {end - 1}; start at 'earliest' to read from the first available",
                offset,
                first,
                end,
            )

    def fetch(
        self, offset: int, max_records: int, max_bytes: int, value_format: str = "typed"
    ) -> list[pa.RecordBatch]:
        """Durable records from ``offset`` on: at most ``max_records`` and about
        ``max_bytes`` (always at least one frame's records if any are there).

        A schema'd topic's values come in the newest version's type (``typed``), or as
        bytes: ``json`` text or ``wire`` (the Schema Registry format)."""
        batches = self._fetch_stored(offset, max_records, max_bytes)
        schema = self.schema
        if schema is None:
            return batches
        return [present_stored(batch, schema, value_format) for batch in batches]

    def present(self, batch: pa.RecordBatch, value_format: str = "typed") -> pa.RecordBatch:
        """A stored batch as a read returns it (see :meth:`fetch`)."""
        schema = self.schema
        return batch if schema is None else present_stored(batch, schema, value_format)

    def _fetch_stored(self, offset: int, max_records: int, max_bytes: int) -> list[pa.RecordBatch]:
        """Stored records from ``offset`` on; damaged frames are left out (recorded in
        ``damages``, so offsets may jump, as in a compacted topic)."""
        self.check_start(offset)
        frames = self.log.frames_from(offset, self.commit.durable)
        try:
            return gather(
                ((frame, self._read_or_note(segment, frame, verify=True)) for segment, frame in frames),
                offset,
                max_records,
                max_bytes,
            )
        except (FileNotFoundError, StorageError):
            if offset < self.first_offset:  # retention removed it while we read
                self.check_start(offset)
            raise

    def offset_for_time(self, micros: int) -> int:
        end = self.commit.durable
        segments = list(self.log.segments)  # one snapshot: retention may replace the list
        offset = self.log.offset_for_time(micros, end, segments)
        if offset >= end:
            return end
        located = self.log.locate(offset, segments)
        if located is None:
            return offset
        segment = segments[located[0]]
        frame = segment.frames[located[1]]
        try:
            batch = self._read_or_note(segment, frame, verify=True)
        except FileNotFoundError:  # retention removed the segment meanwhile: those are gone
            return frame.next_offset
        if batch is None:
            return frame.next_offset
        timestamps = batch.column("timestamp").view(pa.int64()).to_numpy()
        later = np.flatnonzero(timestamps >= micros)
        return frame.base_offset + int(later[0]) if len(later) else frame.next_offset

    def read_key(self, key: bytes, from_version: int = 1, to_version: int | None = None) -> pa.Table:
        """The key's records in version order; touches only frames holding them.

        Raises StorageError naming the offsets if any of them is damaged: a key's stream
        with a hole in it would be replayed into a wrong state without a word.
        """
        offsets = self.keys.lookup(key, from_version, to_version)
        end = self.commit.durable
        segments = list(self.log.segments)  # one snapshot: retention may replace the list
        offsets = offsets[(offsets < end) & (offsets >= max(segments[0].base_offset, self.log_start))]
        pieces: list[pa.RecordBatch] = []
        if len(offsets):
            self._check_key_damage(key, offsets)
            starts = np.array([s.base_offset for s in segments], dtype=np.int64)
            owners = np.searchsorted(starts, offsets, side="right") - 1
            for owner in np.unique(owners).tolist():
                self._read_key_frames(key, segments[owner], offsets[owners == owner], pieces)
        schema = self.schema
        if schema is not None:
            pieces = [present_stored(piece, schema, "typed") for piece in pieces]
        stored = STORED_SCHEMA if schema is None else schema.stored_schema
        if not pieces:
            return stored.empty_table()
        table = pa.Table.from_batches(pieces, schema=stored).combine_chunks()
        if not pc.all(pc.equal(table.column("key"), pa.scalar(key, pa.binary()))).as_py():
            raise StorageError(f"key index of {self.name} is inconsistent with the log for key {_show(key)}")
        return table

    def _check_key_damage(self, key: bytes, offsets: np.ndarray) -> None:
        for damage in self.log.damages:
            hit = offsets[(offsets >= damage.first_offset) & (offsets < damage.end_offset)]
            if len(hit):
                raise DataDamaged(
                    f"records of key {_show(key)} of topic {self.name} at offsets "
                    f"{', '.join(map(str, hit[:10].tolist()))} are damaged; "
                    + damage.describe(self.name)
                    + " (read the key from a later version, or see `odradek topic verify`)"
                )

    def _read_key_frames(
        self, key: bytes, segment: Segment, offsets: np.ndarray, pieces: list[pa.RecordBatch]
    ) -> None:
        """Append to ``pieces`` the records at ``offsets`` (sorted) of one segment."""
        bases = segment.bases_array()
        frame_numbers = np.searchsorted(bases, offsets, side="right") - 1
        if offsets[-1] < self.log.compacted_until:
            # Below compacted_until the key index keeps the offsets of records compacted
            # away: keep those a frame still holds.
            inside = np.maximum(frame_numbers, 0)
            counts = segment.counts_array()
            held = (frame_numbers >= 0) & (
                offsets - bases[inside] < counts[inside] if len(counts) else np.zeros(len(offsets), bool)
            )
            if not held.all():
                offsets, frame_numbers = offsets[held], frame_numbers[held]
                if not len(offsets):
                    return
        if frame_numbers[0] < 0:
            raise StorageError(f"key index of {self.name} points at missing offset {offsets[0]}")
        firsts = np.flatnonzero(np.concatenate(([True], frame_numbers[1:] != frame_numbers[:-1])))
        bounds = np.concatenate((firsts, [len(offsets)])).tolist()
        rows_all = (offsets - bases[frame_numbers]).tolist()
        for number, (low, high) in zip(frame_numbers[firsts].tolist(), itertools.pairwise(bounds)):
            frame = segment.frames[number]
            rows = rows_all[low:high]
            if rows[-1] >= frame.count:
                raise StorageError(f"key index of {self.name} points at missing offset {offsets[high - 1]}")
            try:
                batch = self._read_or_note(segment, frame, verify=False)
            except FileNotFoundError:
                if segment.base_offset >= self.log.first_offset:
                    raise
                return  # retention removed the segment meanwhile: those records are gone
            if batch is None:
                self._check_key_damage(key, offsets[low:high])
                raise DataDamaged(f"a frame of topic {self.name} holding key {_show(key)} is damaged")
            self.frames_touched += 1
            if rows[-1] - rows[0] == len(rows) - 1:  # contiguous (often one row): zero-copy
                pieces.append(batch.slice(rows[0], len(rows)))
            else:
                pieces.append(batch.take(pa.array(rows)))

    def key_version(self, key: bytes) -> int:
        return self.heads.get(key)

    # -- upkeep -----------------------------------------------------------------------

    def enforce_retention(self, now: float | None = None) -> int:
        with self._write_lock:
            if self.closed:
                return 0
            count = self.log.expired_segments(time.time() if now is None else now)
            if count and self.log.segments[count - 1].next_offset > self.keys.covered_until:
                # The key index must hold the entries of records before they go: its
                # runs keep each key's newest entry, which is how versions survive.
                try:
                    self.keys.flush(self.log.next_offset)
                except (OSError, StorageError) as exc:
                    log.warning("topic %s: retention waits for the key index: %s", self.name, exc)
                    while count and self.log.segments[count - 1].next_offset > self.keys.covered_until:
                        count -= 1
            if count:
                self.log.drop_oldest(count)
                self.keys.retention_floor = self.first_offset
                log.info(
                    "topic %s: retention removed %d segment(s); first offset is now %d",
                    self.name,
                    count,
                    self.first_offset,
                )
            return count

    def delete_records(self, before: int) -> int:
        """Delete every record below offset ``before`` (Kafka's DeleteRecords): the log
        start moves there, durably (topic.json), before any reader is told; whole
        segments below it are removed as retention removes them, the rest of their
        records are hidden from every read (``fetch``, ``read_key``, "earliest"). Key
        versions go on (the key index keeps each key's newest entry). Returns the log
        start, which never moves back: ``before`` at or below it changes nothing.
        Raises OffsetOutOfRange past the durable end, StorageError if the new start
        could not be saved (then nothing changed)."""
        with self._write_lock:
            self._check_usable()
            first, end = self.first_offset, self.commit.durable
            if before > end:
                raise OffsetOutOfRange(
                    f"cannot delete the records of {self.name} below offset {before}: the topic "
                    f"ends at offset {end}",
                    before,
                    first,
                    end,
                )
            if before <= first:
                return first
            previous = self.log_start
            self.log_start = before
            try:
                self.save_meta()
            except OSError as exc:
                self.log_start = previous
                raise StorageError(
                    f"could not save the log start of topic {self.name}: {describe_os_error(exc)}"
                ) from exc
            self.keys.retention_floor = self.first_offset
            closed = self.log.segments[:-1]
            count = sum(1 for segment in closed if segment.next_offset <= before)
            if count and closed[count - 1].next_offset > self.keys.covered_until:
                try:  # as for retention: the key index holds the entries before they go
                    self.keys.flush(self.log.next_offset)
                except (OSError, StorageError) as exc:
                    log.warning("topic %s: segments below the log start stay for now: %s", self.name, exc)
                    count = 0
            if count:
                self.log.drop_oldest(count)
            log.info(
                "topic %s: records below offset %d deleted (%d segment(s) removed)", self.name, before, count
            )
            return self.first_offset

    def compact(
        self, now: float | None = None, *, force: bool = False, throttle: Throttle | None = None
    ) -> CompactionResult | None:
        """One compaction round if the topic is compacted and one is due (or ``force``);
        None if none ran. Never holds the writer lock but to freeze the key index (it is
        written outside the lock) and to swap a segment (engine/compaction.py)."""
        if self.closed:
            return None
        self.snapshots.compact(now, force=force, throttle=throttle)
        if not (self.config.compacted or self.config.snapshot_cleanup):
            return None
        now = time.time() if now is None else now
        if not force and not self.compactor.due(now):
            return None
        with self._compaction_lock:
            rewritten = True  # unless the round says otherwise: a failed one may have swapped
            try:
                result = self.compactor.run(now, throttle)
                rewritten = result.segments_rewritten > 0
            except (OSError, StorageError):
                if self.closed:  # deleted (or closing) under the round: its files went with it
                    return None
                raise
            finally:
                if rewritten:
                    self.compaction_stamp = next(_compaction_stamps)
        if result.segments_rewritten:
            log.info(
                "topic %s: compaction removed %d record(s) (%d tombstone(s)) from %d segment(s), "
                "%d -> %d bytes",
                self.name,
                result.records_removed,
                result.tombstones_removed,
                result.segments_rewritten,
                result.bytes_before,
                result.bytes_after,
            )
        return result

    def stats(self) -> dict[str, Any]:
        return {
            "first_offset": self.first_offset,
            "next_offset": self.commit.durable,
            "bytes": self.log.size_bytes,
            "keys": len(self.heads),
            "segments": len(self.log.segments),
            "fsyncs": self.commit.fsyncs,
            "producers": len(self.producers),
            "damaged_records": sum(d.end_offset - d.first_offset for d in self.log.damages),
            **{f"key_index_{k}": v for k, v in self.keys.stats().items()},
        }

    def close(self) -> None:
        with self._write_lock:
            if self.closed:
                return
            self.closed = True
            if self.commit.error is None:
                try:
                    self.log.active.file.sync()
                    # What was written is durable now: appends still waiting are acknowledged.
                    self.commit.publish(self._written)
                    self.keys.wait_idle()
                    self.keys.flush(self.log.next_offset)
                except (OSError, StorageError) as exc:
                    log.warning("topic %s: could not flush on close: %s", self.name, exc)
            self.head.close()
            self.log.close()
        self.snapshots.close()


class PendingAppend:
    """An append that is written and will be acknowledged once its fsync is done."""

    def __init__(
        self,
        topic: Topic,
        ticket: int,
        result: AppendResult | None,
        original: tuple[int, int] | None = None,
        *,
        size: int = 0,
    ) -> None:
        self._topic = topic
        self.ticket = ticket
        self.size = size  # the bytes of the frame it wrote (0: a producer retry wrote none)
        self._result = result
        self._original = original  # (base offset, count) when this is a producer retry

    def ready(self) -> bool:
        """True once :meth:`wait` returns (or raises) without waiting for an fsync."""
        commit = self._topic.commit
        return commit.durable >= self.ticket or commit.error is not None

    def wait(self) -> AppendResult:
        """Block until the append is durable; raise StorageError if its fsync failed."""
        self._topic.commit.wait(self.ticket)
        if self._original is not None:
            return self._topic._replay_result(*self._original)
        if self._result is None:  # not an assert: it must hold under python -O too
            raise RuntimeError("a pending append has neither a result nor an original")
        return self._result


_VALUE_COLUMN = STORED_SCHEMA.get_field_index("value")
_TIMESTAMP_TYPE = STORED_SCHEMA.field("timestamp").type
# Columns of an INPUT_SCHEMA batch by position: a lookup by name costs ~2 us each.
_INPUT_KEY = INPUT_SCHEMA.get_field_index("key")
_INPUT_VALUE = INPUT_SCHEMA.get_field_index("value")
_INPUT_HEADERS = INPUT_SCHEMA.get_field_index("headers")
_INPUT_TIMESTAMP = INPUT_SCHEMA.get_field_index("timestamp")
_INT64 = pa.int64()


def _few_int64s(
    values: list[int], type_: pa.DataType = _INT64, validity: bytes | None = None, nulls: int = 0
) -> pa.Array:
    """An int64-backed array of a few values built from its buffers: ``validity`` is
    the bitmap (None: no nulls). The IPC body it serializes to is the one ``pa.array``
    of the same values gives."""
    bitmap = None if validity is None else pa.py_buffer(validity)
    data = pa.py_buffer(struct.pack(f"<{len(values)}q", *values))
    return pa.Array.from_buffers(type_, len(values), [bitmap, data], null_count=nulls)


def _stamp_few(timestamps: pa.Array, count: int) -> tuple[pa.Array, int]:
    """A few records' timestamps, those not given stamped now, and their maximum."""
    missing = timestamps.null_count
    if missing == count:  # the usual case: the server stamps them
        now = now_micros()
        return _few_int64s([now] * count, _TIMESTAMP_TYPE), now
    given = timestamps.view(pa.int64()).to_pylist()
    if not missing:
        return timestamps, max(given)
    now = now_micros()
    stamped = [now if value is None else value for value in given]
    return _few_int64s(stamped, _TIMESTAMP_TYPE), max(stamped)


def _few_versions(keys: list[bytes | None], versions: list[int]) -> pa.Array:
    """The version column of a few records: null where the record is keyless."""
    nulls = keys.count(None)
    if not nulls:
        return _few_int64s(versions)
    bits = sum(1 << index for index, key in enumerate(keys) if key is not None)
    return _few_int64s(versions, _INT64, bits.to_bytes((len(keys) + 7) // 8, "little"), nulls)


def _few_entries(
    keys: list[bytes | None], versions: list[int], base: int
) -> tuple[list[bytes], list[int], list[int]]:
    """Key-index entries (keys, versions, offsets) of a few records' keyed ones."""
    entry_keys: list[bytes] = []
    entry_versions: list[int] = []
    entry_offsets: list[int] = []
    for index, key in enumerate(keys):
        if key is not None:
            entry_keys.append(key)
            entry_versions.append(versions[index])
            entry_offsets.append(base + index)
    return entry_keys, entry_versions, entry_offsets


def _opaque(values: pa.Array, topic: str) -> pa.Array:
    if pa.types.is_struct(values.type):
        raise InvalidRequest(
            f"topic {topic} has no schema, so its values are bytes; give it a schema "
            "(create_topic(..., schema=...)) to append typed values"
        )
    return values


def present_stored(batch: pa.RecordBatch, schema: TopicSchema, value_format: str) -> pa.RecordBatch:
    """A stored batch of a schema'd topic as a read returns it (here and in engine/replica.py)."""
    values = schema.evolve(batch.column(_VALUE_COLUMN))
    if value_format == "typed":
        if values is batch.column(_VALUE_COLUMN):
            return batch
        return batch.set_column(_VALUE_COLUMN, pa.field("value", values.type), values)
    encoded = schema.encode(values, value_format)
    return batch.set_column(_VALUE_COLUMN, STORED_SCHEMA.field("value"), encoded)


def _normalize_expectations(expect: Mapping[Any, int] | None) -> dict[bytes, int]:
    if expect is None:
        return {}
    if not isinstance(expect, Mapping):
        raise InvalidRequest("expect must be a dict of key to expected version")
    result: dict[bytes, int] = {}
    for key, version in expect.items():
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidRequest(
                f"expected version of key {key!r} must be an int >= 0 (0 = no records yet), got {version!r}"
            )
        normalized = normalize_key(key)
        if result.get(normalized, version) != version:
            raise InvalidRequest(f"expect names key {key!r} twice with different versions")
        result[normalized] = version
    return result


def _ranges(damages: list[seg.Damage]) -> str:
    return ", ".join(f"{d.first_offset}-{d.end_offset - 1}" for d in damages)


def _blocked_message(topic: str, blockers: list[seg.Damage]) -> str:
    first = blockers[0]
    return (
        f"topic {topic} refuses appends: {first.describe(topic)}"
        + (f" and {len(blockers) - 1} more damaged range(s)" if len(blockers) > 1 else "")
        + "; the key versions and producer sequences of those records are unknown. "
        f"Inspect with `odradek topic verify {topic}`; once the records are restored or given "
        f"up, accept the loss with `odradek topic repair {topic} --drop-range {_ranges(blockers)}`"
    )


def _show(key: bytes) -> str:
    try:
        text = key.decode()
        if text.isprintable():
            return repr(text)
    except UnicodeDecodeError:
        pass
    return "0x" + key.hex()
