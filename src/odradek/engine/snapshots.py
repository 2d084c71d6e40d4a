"""Snapshots per key: the state of a key as of one of its versions, kept beside its topic.

Theory of operation (docs/decisions/0018-key-snapshots.md)
-----------------------------------------------------------
* A topic's snapshots live in a *companion log*: a compacted topic of its own in the
  topic's directory (``<topic>/snapshots/``), keyed by the snapshot's key, whose value
  is the state and whose header ``odradek.snapshot.version`` is the version of the key
  the state covers (ASCII decimal); ``odradek.snapshot.offset`` is the offset of that
  version's event when it was known. Being inside the topic's directory, the companion
  has no name: ``list_topics`` and patterns never see it, no user can create it, and it
  is deleted (and created anew) with its topic.
* The latest snapshot of a key is a key-head lookup in the companion plus one frame
  read; compaction of the companion keeps only the latest snapshot of each key.
* A snapshot is refused unless ``1 <= version <= key_version`` (InvalidRequest) and
  ``version >=`` the key's latest snapshot's (ConflictError: ``.expected`` the version
  asked, ``.actual`` the latest snapshot's). Before a snapshot is written, the event of
  its version is durable (the writer waits for the topic's group commit), so a crash
  never leaves a snapshot newer than its events. Snapshot writes of one topic are
  serialized by :attr:`KeySnapshots._lock` (held through the companion's fsync: the
  check of the latest version and the write are one step).
* ``read_key(from_snapshot=True)``: the latest durable snapshot row, flagged
  ``snapshot=True``, then ``read_key(from_version=V + 1)``. On a topic without a schema
  the snapshot row's ``value`` is the state. On a topic with one, ``value`` is typed (as
  a plain ``read_key`` returns it) and cannot hold bytes: the table has a ``state``
  column (binary) after ``snapshot``, the state on the snapshot row and null on the
  events, whose typed ``value`` is null on the snapshot row. The state is opaque bytes
  either way; the companion log stores it the same way for both.
* ``cleanup="snapshot"`` (:func:`snapshot_round`): the compaction thread drops, from
  sealed segments, the events of a key whose version is at most the version of the
  key's latest durable snapshot, with the machinery of compacted topics (a segment is
  swapped whole and atomically; offsets keep their gaps; versions stay).

Lock order: a topic's snapshot lock → the companion's writer lock (through its append)
→ its key index → group commit. The owner topic's writer lock is never held while the
snapshot lock is taken.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.config import TopicConfig
from odradek.engine.compaction import CompactionResult, Throttle
from odradek.errors import ConflictError, DataDamaged, InvalidRequest, RequestTooLarge, StorageError
from odradek.records import HEADERS_TYPE, INPUT_SCHEMA, STORED_SCHEMA, TIMESTAMP_TYPE
from odradek.storage.disk import describe_os_error

if TYPE_CHECKING:
    from odradek.engine.compaction import Compactor
    from odradek.engine.reducers import ReducerState
    from odradek.engine.topic import Topic

log = logging.getLogger(__name__)

DIRECTORY = "snapshots"
VERSION_HEADER = "odradek.snapshot.version"
OFFSET_HEADER = "odradek.snapshot.offset"
SNAPSHOT_COLUMN = "snapshot"

# What read_key(from_snapshot=True) returns: the columns of a read, ``offset`` nullable
# (a snapshot whose event retention removed before it was taken has no known offset),
# and the ``snapshot`` flag.
SNAPSHOT_READ_SCHEMA = pa.schema(
    [
        pa.field("offset", pa.int64()),
        *[STORED_SCHEMA.field(name) for name in STORED_SCHEMA.names[1:]],
        pa.field(SNAPSHOT_COLUMN, pa.bool_(), nullable=False),
    ]
)
STATE_COLUMN = "state"


def snapshot_read_schema(stored: pa.Schema | None) -> pa.Schema:
    """What ``read_key(from_snapshot=True)`` returns for a topic whose plain reads have
    the columns ``stored`` (None: a topic without a schema): SNAPSHOT_READ_SCHEMA without
    a schema; with one, its typed ``value`` and a binary ``state`` column after
    ``snapshot``."""
    if stored is None:
        return SNAPSHOT_READ_SCHEMA
    return pa.schema(
        [
            pa.field("offset", pa.int64()),
            *[stored.field(name) for name in stored.names[1:]],
            pa.field(SNAPSHOT_COLUMN, pa.bool_(), nullable=False),
            pa.field(STATE_COLUMN, pa.binary()),
        ]
    )


# The companion log: compacted, never expired by time or size (a snapshot stays until a
# newer one of its key replaces it), tombstones never used.
COMPANION_CONFIG = TopicConfig.build(
    retention=None,
    retention_bytes=None,
    segment_bytes=16 * 1024 * 1024,
    cleanup="compact",
    delete_retention=None,
    min_cleanable_dirty_ratio=0.5,
)


class Snapshot:
    """One stored snapshot: the key's ``version`` it covers, its ``state``, when it was
    stored (µs since the epoch) and the offset of the version's event (None if unknown)."""

    __slots__ = ("covered_offset", "state", "timestamp", "version")

    def __init__(self, version: int, state: bytes, timestamp: int, covered_offset: int | None) -> None:
        self.version = version
        self.state = state
        self.timestamp = timestamp
        self.covered_offset = covered_offset


class KeySnapshots:
    """The snapshots of one topic (its companion log, opened on first use)."""

    def __init__(self, owner: Topic) -> None:
        self.owner = owner
        self.directory = os.path.join(owner.directory, DIRECTORY)
        self._lock = threading.Lock()  # snapshot writes of this topic, one at a time
        self._open_lock = threading.Lock()
        self._companion: Topic | None = None
        self.closed = False
        self.written = 0  # snapshots written since open, for metrics and tests
        self._reducer: ReducerState | None = None  # the topic's reducer (reducers.py)
        if owner.disk.isdir(self.directory):
            self._companion = self._open()

    # -- the companion log ------------------------------------------------------------

    def _open(self) -> Topic:
        from odradek.engine.topic import Topic  # topic.py imports this module

        owner = self.owner
        return Topic(
            f"{owner.name} (snapshots)",
            self.directory,
            COMPANION_CONFIG,
            owner.created_at,
            incarnation=owner.incarnation,
            fsync=owner.fsync,
            disk=owner.disk,
            handles=owner.log.handles,
        )

    def companion(self, create: bool = False) -> Topic | None:
        """The companion log; with ``create``, made on first use."""
        companion = self._companion
        if companion is not None or not create:
            return companion
        with self._open_lock:
            if self.closed:
                raise StorageError(f"topic {self.owner.name} is closed")
            if self._companion is None:
                disk = self.owner.disk
                try:
                    disk.makedirs(self.directory)
                    if self.owner.fsync:
                        disk.fsync_directory(self.owner.directory)
                    self._companion = self._open()
                except OSError as exc:
                    raise StorageError(
                        f"could not create the snapshot log of topic {self.owner.name}: "
                        f"{describe_os_error(exc)}"
                    ) from exc
            return self._companion

    def reducer_state(self) -> ReducerState:
        """The topic's reducer position and counts (reducers.py), loaded on first use."""
        if self._reducer is None:
            from odradek.engine.reducers import ReducerState  # it imports topic.py

            self._reducer = ReducerState(self.owner)
        return self._reducer

    def describe(self) -> dict[str, object] | None:
        """What ``describe_topic`` reports under ``snapshots``: None for a topic with
        no snapshot log and no reducer."""
        config = self.owner.config
        if self._companion is None and config.reducer is None:
            return None
        described: dict[str, object] = {
            "keys": 0 if self._companion is None else len(self._companion.heads),
            "written": self.written,
            "reducer": config.reducer,
            "snapshot_every": config.snapshot_every,
        }
        if config.reducer is not None:
            described.update(self.reducer_state().describe())
        return described

    def close(self) -> None:
        with self._open_lock:
            self.closed = True
            if self._companion is not None:
                self._companion.close()

    def compact(self, now: float | None, *, force: bool, throttle: Throttle | None) -> None:
        """A compaction round of the companion log if one is due (only the latest
        snapshot of each key stays)."""
        companion = self._companion
        if companion is not None:
            companion.compact(now, force=force, throttle=throttle)

    # -- writing ----------------------------------------------------------------------

    def write(self, key: bytes, state: object, version: object) -> Snapshot:
        """Store ``state`` as ``key``'s state as of its ``version``; see the module."""
        owner = self.owner
        state = _check_state(state)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidRequest(f"a snapshot's version must be an int >= 1, got {version!r}")
        current = owner.key_version(key)
        if version > current:
            raise InvalidRequest(
                f"key {_show(key)} of topic {owner.name} is at version {current}: a snapshot as of "
                f"version {version} would cover events that do not exist"
            )
        covered_offset = self._durable_offset_of(key, version)
        with self._lock:
            companion = self.companion(create=True)
            if companion is None:  # not an assert: it must hold under python -O too
                raise RuntimeError("the snapshot log was not created")
            latest = self._latest(companion, key, durable=False)
            if latest is not None and version < latest.version:
                raise ConflictError(
                    f"key {_show(key)} of topic {owner.name} has a snapshot as of version "
                    f"{latest.version}; a snapshot as of the older version {version} is refused "
                    "(read the key from its snapshot and fold its later events first)",
                    key,
                    version,
                    latest.version,
                )
            headers = [(VERSION_HEADER, str(version).encode())]
            if covered_offset is not None:
                headers.append((OFFSET_HEADER, str(covered_offset).encode()))
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array([key], pa.binary()),
                    pa.array([state], pa.binary()),
                    pa.array([headers], HEADERS_TYPE),
                    pa.nulls(1, TIMESTAMP_TYPE),
                ],
                schema=INPUT_SCHEMA,
            )
            blockers = companion.write_blockers()
            if blockers:  # the companion's own refusal would name a topic that does not exist
                first = blockers[0]
                raise DataDamaged(
                    f"topic {owner.name} refuses new snapshots: its snapshot log is damaged at "
                    f"offsets {first.first_offset}-{first.end_offset - 1} of that log ({first.reason})"
                    + (f" and {len(blockers) - 1} more range(s)" if len(blockers) > 1 else "")
                    + f"; the snapshots stored there are lost. `odradek topic verify {owner.name}` "
                    "reports it under snapshot_log; a snapshot log has no repair command yet "
                    "(docs/snapshots-and-views.md)"
                )
            companion.append(batch)
            self.written += 1
        return Snapshot(version, state, 0, covered_offset)

    def _durable_offset_of(self, key: bytes, version: int) -> int | None:
        """The offset of ``key``'s event ``version``, once it is durable (the snapshot must
        never outlive its events in a crash); None if retention removed it already."""
        owner = self.owner
        offsets = owner.keys.lookup(key, version, version)
        if not len(offsets):
            return None
        offset = int(offsets[0])
        if offset >= owner.commit.durable:
            owner.commit.wait(offset + 1)
        return offset

    # -- reading ----------------------------------------------------------------------

    def latest(self, key: bytes) -> Snapshot | None:
        """The key's latest durable snapshot, or None."""
        companion = self._companion
        if companion is None:
            return None
        return self._latest(companion, key, durable=True)

    def _latest(self, companion: Topic, key: bytes, *, durable: bool) -> Snapshot | None:
        count = companion.key_version(key)
        if count == 0:
            return None
        if not durable:
            # Under the snapshot lock every earlier write is done: the head is durable.
            rows = companion.read_key(key, count, count)
        else:
            # A write in flight (not yet durable) may hold the head: then the one before.
            rows = companion.read_key(key, max(1, count - 1), count)
        if rows.num_rows == 0:
            return None
        row = rows.slice(rows.num_rows - 1).to_pylist()[0]  # one row
        headers = dict(row["headers"] or [])
        version = int(headers[VERSION_HEADER])
        offset = headers.get(OFFSET_HEADER)
        timestamp = int(rows.column("timestamp").cast(pa.int64())[rows.num_rows - 1].as_py())
        return Snapshot(version, row["value"], timestamp, None if offset is None else int(offset))

    def read_key(self, key: bytes, events_max: int | None = None) -> pa.Table:
        """The latest snapshot (flagged) and the events after it (see the module); with
        ``events_max``, at most that many events (a reader that pages, such as the HTTP
        API, reads on from the version after the last row)."""
        if events_max is not None and (
            isinstance(events_max, bool) or not isinstance(events_max, int) or events_max < 1
        ):
            raise InvalidRequest(f"events_max must be an int >= 1 or None, got {events_max!r}")
        owner = self.owner
        topic_schema = owner.schema
        stored = STORED_SCHEMA if topic_schema is None else topic_schema.stored_schema
        snapshot = self.latest(key)
        latest = owner.key_version(key)
        if snapshot is not None and snapshot.version >= latest:
            events = stored.empty_table()  # nothing after it: no key-index lookup
        else:
            first = 1 if snapshot is None else snapshot.version + 1
            last = None if events_max is None else first + events_max - 1
            if last is not None and last >= latest:
                last = None  # the bound reaches the latest event: no version filter to pay
            events = owner.read_key(key, first, last)
            if events_max is not None and events.num_rows > events_max:  # appended meanwhile
                events = events.slice(0, events_max)
            stored = events.schema  # the schema may have gained a version since
        typed = topic_schema is not None
        schema = snapshot_read_schema(stored if typed else None)
        columns = [*events.columns, pa.array(np.zeros(events.num_rows, dtype=bool))]
        if typed:
            columns.append(pa.nulls(events.num_rows, pa.binary()))
        events = pa.Table.from_arrays(columns, schema=schema)
        if snapshot is None:
            return events
        row = {
            "offset": pa.array([snapshot.covered_offset], pa.int64()),
            "timestamp": pa.array([snapshot.timestamp], pa.int64()).cast(TIMESTAMP_TYPE),
            "key": pa.array([key], pa.binary()),
            "value": pa.nulls(1, schema.field("value").type)
            if typed
            else pa.array([snapshot.state], pa.binary()),
            "headers": pa.array([[]], HEADERS_TYPE),
            "version": pa.array([snapshot.version], pa.int64()),
            SNAPSHOT_COLUMN: pa.array([True]),
        }
        if typed:
            row[STATE_COLUMN] = pa.array([snapshot.state], pa.binary())
        return pa.concat_tables([pa.table(row, schema=schema), events]).combine_chunks()

    def covered(self) -> tuple[pa.Array, np.ndarray, int]:
        """Each key's latest durable snapshot version (keys, versions), at most
        ``snapshot_cleanup_keys_max`` snapshot rows read; and the companion's durable
        offset they were read up to."""
        companion = self._companion
        empty = pa.array([], pa.binary()), np.zeros(0, dtype=np.int64)
        if companion is None:
            return (*empty, 0)
        end = companion.durable_offset
        if end <= companion.first_offset:
            return (*empty, end)
        keys: list[pa.Array] = []
        versions: list[pa.Array] = []
        rows = 0
        offset = companion.first_offset
        while offset < end and rows < limits.snapshot_cleanup_keys_max:
            batches = companion.fetch(
                offset, limits.snapshot_cleanup_keys_max - rows, limits.read_bytes_max_default
            )
            if not batches:
                break
            for batch in batches:
                keys.append(batch.column("key"))
                found = pc.map_lookup(batch.column("headers"), VERSION_HEADER, "first")
                versions.append(pc.cast(pc.cast(found, pa.utf8()), pa.int64()))
                rows += batch.num_rows
                offset = int(batch.column("offset")[-1].as_py()) + 1
        if not keys:
            return (*empty, end)
        table = pa.table(
            {"key": pa.chunked_array(keys, pa.binary()), "version": pa.chunked_array(versions, pa.int64())}
        )
        grouped = table.group_by("key").aggregate([("version", "max")])
        return grouped.column("key").combine_chunks(), grouped.column("version_max").to_numpy(), end


def snapshot_round(compactor: Compactor, now: float, throttle: Throttle) -> CompactionResult:
    """One cleanup round of a ``cleanup="snapshot"`` topic: drop from its sealed
    segments every event whose version its key's latest durable snapshot covers."""
    topic = compactor.topic
    result = CompactionResult()
    segments = list(topic.log.segments)
    sealed = segments[:-1]
    if not sealed:
        return result
    keys, versions, companion_end = topic.snapshots.covered()
    # Segments a round already cleaned against the same snapshots need no second look.
    start = compactor.snapshot_clean_until if companion_end == compactor.snapshot_mark else 0
    end = segments[-1].base_offset
    compactor.snapshot_mark = companion_end
    result.compacted_until = topic.log.compacted_until
    if not len(keys) or start >= end:
        compactor.snapshot_clean_until = max(start, end)
        return result
    young = int(now * 1_000_000) - int(topic.config.min_compaction_lag_seconds * 1_000_000)
    compactor._prepare(max(end, topic.log.compacted_until))
    result.compacted_until = topic.log.compacted_until
    clean_until = end
    for segment in sealed:
        if segment.next_offset <= start and segment.frames:
            continue
        if segment.damages or segment.bad or not segment.frames:
            continue  # damage is kept as found, for the operator
        batches: list[pa.RecordBatch] = []
        for frame in segment.frames:
            batch = compactor._read(segment, frame)
            throttle.spent(frame.size)
            if batch is None:
                break
            batches.append(batch)
        if len(batches) < len(segment.frames):
            continue
        # Only the columns the decision needs: a schema'd topic's frames may differ in
        # their value's type (one per schema version), and the values are not looked at.
        table = pa.Table.from_batches([batch.select(["key", "version", "timestamp"]) for batch in batches])
        result.records_read += table.num_rows
        positions = pc.index_in(table.column("key"), value_set=keys)
        found = positions.is_valid().to_numpy(zero_copy_only=False)
        covered = versions[positions.fill_null(0).to_numpy()]
        event_versions = table.column("version").fill_null(0).to_numpy()
        timestamps = table.column("timestamp").cast(pa.int64()).to_numpy()
        young_rows = timestamps > young
        if young_rows.any():
            clean_until = min(clean_until, segment.base_offset)
        drop = found & (event_versions <= covered) & ~young_rows
        if not drop.any():
            continue
        result.records_removed += int(drop.sum())
        compactor._rewrite(segment, batches, ~drop, throttle, result)
    compactor.snapshot_clean_until = clean_until
    return result


def _check_state(state: object) -> bytes:
    if isinstance(state, (bytearray, memoryview)):
        state = bytes(state)
    if not isinstance(state, bytes):
        raise InvalidRequest(f"a snapshot's state must be bytes, got {type(state).__name__}")
    if len(state) > limits.snapshot_state_bytes_max:
        raise RequestTooLarge(
            f"a snapshot state of {len(state)} bytes is over the limit of "
            f"{limits.snapshot_state_bytes_max} bytes (snapshot_state_bytes_max)"
        )
    return state


def _show(key: bytes) -> str:
    try:
        text = key.decode()
        if text.isprintable():
            return repr(text)
    except UnicodeDecodeError:
        pass
    return "0x" + key.hex()
