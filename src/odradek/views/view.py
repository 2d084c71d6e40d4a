"""One materialized view and its applier thread.

Theory of operation
-------------------
* The applier reads the view's topics (those its pattern matches, in name order) from
  its positions in batches of ``view_apply_records_max`` (``engine.fetch``, values of
  schema'd topics in the definition's ``value_format``: typed, or JSON text for a view
  defined before views had the choice), turns each batch into dicts (Arrow's ``to_pylist``)
  and calls the reducer once per record, in offset order per topic. The new states
  go into the table (table.py) and the position past the batch becomes the topic's.
  The built-in ``latest`` with the records' own keys takes a batch at a time instead:
  a key's state is its last record's value, found by an Arrow group-by, so only that
  record is looked at and no state is read (``_latest_of``; the same states, byte for
  byte, tests/views/test_latest_batch.py).
* Once a batch is applied the view notifies its waiters (``on_applied``): appends
  waiting for it (``wait_for``) look again; ``view_get`` already sees the batch.
* A **checkpoint** (the table and every position, one atomic write) is taken at most
  every ``view_checkpoint_seconds`` while it applies (a large table less often: its
  bytes at ``view_checkpoint_bytes_per_second``), and when the view stops. A crash
  loses at most what was applied since: it is applied again from the checkpoint's
  positions (at least once; an idempotent reducer gives exactly the fold).
* A reducer or key function that **raises**, or returns something other than bytes or
  None, stops the view at that record: its state and positions stay those before the
  record's batch, the error (with topic and offset) is in ``describe_view``, and
  appends are never held back. So does a table over ``view_bytes_max``. A restart tries
  again (the reducer may have been fixed); so does deleting and creating the view.
* Positions are per topic with the topic's incarnation: a topic deleted and created
  again is applied from its start; offsets below the topic's first (retention) are
  skipped to the first one.
* Stopping (deleting the view, closing the node) waits for the batch under way at most
  ``view_stop_seconds_max``; a reducer that hangs past it is left on its daemon thread
  and its batch is never published.
* The applier sleeps on an event that the engine's arrivals set (new durable records,
  new topics): it never polls in a tight loop (it also wakes once a second, for a due
  checkpoint).

Locks: the view's ``lock`` guards the table and positions; ``get``/``scan`` take it
briefly. The reducer runs outside it (a batch is applied to a copy of the changes and
then published under the lock), so reads are never held by a slow reducer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import ClosedError, NotOwner, OdradekError, OffsetOutOfRange, TopicNotFound, Unavailable
from odradek.views import reducers
from odradek.views.definition import KeyFunction, Reducer, ViewDefinition, resolve
from odradek.views.table import ViewTable, encode

if TYPE_CHECKING:
    from odradek.engine.engine import Engine
    from odradek.types import TopicInfo

log = logging.getLogger(__name__)

TABLE_FILE = "table"

STATUS_RUNNING = "running"
STATUS_FAILED = "failed"
STATUS_STOPPED = "stopped"


class Topics(Protocol):
    """What a view reads its topics through: an engine, or every cell's topics (the
    Flight door's ``CellsTopics``, decision 0041). Engine names throughout."""

    def list_topics(self, pattern: str | None = None) -> list[str]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    def fetch(
        self, topic: str, offset: int, *, max_records: int, max_bytes: int, value_format: str
    ) -> list[pa.RecordBatch]: ...


class View:
    def __init__(
        self,
        definition: ViewDefinition,
        engine: Engine,
        directory: str,
        on_applied: Callable[[], None],
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self._engine = engine
        # Where the view's topics are read: the engine's, or every cell's over a cluster
        # whose topics are spread over cells (decision 0041; the manager's ``span``).
        self.topics: Topics = engine
        # How long the applier waits for new records when it found none: it is woken by
        # its engine's arrivals, which other cells' do not reach (the manager's ``span``).
        self.poll_seconds = limits.view_checkpoint_seconds
        # Topics whose cell could not be read in the last round, and why (a failover).
        self.unreachable: dict[str, str] = {}
        self._disk = engine.disk
        self.directory = directory
        self._on_applied = on_applied
        self.lock = threading.Lock()
        self.table = ViewTable()
        # topic -> [next offset to apply, the topic's incarnation]
        self.positions: dict[str, list[Any]] = {}
        self.error: str | None = None
        self.status = STATUS_RUNNING
        self.applied = 0  # records applied since the view was loaded
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._dirty = False
        self._checkpointed_at = time.monotonic()
        self._reducer: Reducer | None = None
        self._key: KeyFunction | None = None
        self._thread: threading.Thread | None = None
        self._abandoned = False  # stop() gave up waiting for the applier: it publishes nothing
        self.checkpoint_error: str | None = None  # the last checkpoint failed (retried)

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read the last checkpoint (none for a new view); raises DataDamaged."""
        path = os.path.join(self.directory, TABLE_FILE)
        try:
            blob = self._disk.read_bytes(path)
        except FileNotFoundError:
            return
        table, positions = ViewTable.decode(blob, path)
        self.table = table
        self.positions = {str(topic): [int(p[0]), str(p[1])] for topic, p in positions.items()}

    def start(self) -> None:
        try:
            self._reducer = resolve(self.definition.reducer, "reducer")
            self._key = resolve(self.definition.key, "key function") if self.definition.key else None
        except OdradekError as exc:
            self._fail(exc.message)
            return
        self._thread = threading.Thread(target=self._run, name=f"odradek-view-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def forget(self, topic: str) -> None:
        """``topic`` was deleted: a topic created again under its name starts afresh."""
        with self.lock:
            self.positions.pop(topic, None)
        self._wake.set()

    def stop(self, *, checkpoint: bool = True) -> None:
        """Stop applying (the batch under way finishes) and take a last checkpoint.

        A reducer that does not return within ``view_stop_seconds_max`` is left on its
        daemon thread: its batch is never published, and no last checkpoint is taken
        (the records since the previous one are applied again at the next start)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(limits.view_stop_seconds_max)
            if thread.is_alive():
                log.warning(
                    "view %s: its reducer did not return within %s s; left running, unpublished",
                    self.name,
                    limits.view_stop_seconds_max,
                )
                with self.lock:
                    self._abandoned = True
                checkpoint = False
        if checkpoint and self._dirty:
            self._checkpoint()
        if self.status == STATUS_RUNNING:
            self.status = STATUS_STOPPED

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        with self.lock:
            return self.table.get(key)

    def scan(self, prefix: bytes, after: bytes | None, limit: int) -> pa.Table:
        with self.lock:
            return self.table.scan(prefix, after, limit)

    def position(self, topic: str) -> int:
        """The offset up to which the view has applied ``topic`` (0 if not yet)."""
        with self.lock:
            found = self.positions.get(topic)
            return int(found[0]) if found is not None else 0

    def describe(self) -> dict[str, Any]:
        with self.lock:
            positions = {topic: int(p[0]) for topic, p in sorted(self.positions.items())}
            keys, size = len(self.table), self.table.nbytes
        lag: dict[str, int] = {}
        for topic in self.topics.list_topics(self.definition.pattern):
            try:
                end = self.topics.describe_topic(topic).next_offset
            except OdradekError:
                continue
            lag[topic] = max(0, end - positions.get(topic, 0))
        return {
            **self.definition.to_json(),
            "status": self.status,
            "error": self.error or self.checkpoint_error,
            "offsets": positions,
            "lag": lag,
            "keys": keys,
            "bytes": size,
            "applied": self.applied,
            **({"unavailable": dict(sorted(self.unreachable.items()))} if self.unreachable else {}),
        }

    # -- applying -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                progressed = self._apply_round()
                if self.status == STATUS_FAILED or self._stop.is_set():
                    return  # stop() takes the last checkpoint
                now = time.monotonic()
                if self._checkpoint_due(now):
                    self._try_checkpoint()
                if not progressed:
                    self._wake.wait(timeout=min(limits.view_checkpoint_seconds, self.poll_seconds))
        except ClosedError:
            return  # the engine is closing: the manager takes the last checkpoint
        except Exception as exc:  # a bug or the disk: the view stops, the server goes on
            log.exception("view %s stopped", self.name)
            self._fail(f"the view stopped: {type(exc).__name__}: {exc}")

    def _apply_round(self) -> bool:
        """One batch of every topic with records past the view's position."""
        progressed = False
        topics = self.topics.list_topics(self.definition.pattern)
        with self.lock:
            for gone in self.positions.keys() - set(topics):
                del self.positions[gone]
        unreachable: dict[str, str] = {}
        for topic in topics:
            if self._stop.is_set() or self.status == STATUS_FAILED:
                break
            try:
                progressed |= self._apply_topic(topic)
            except TopicNotFound:
                continue  # deleted meanwhile; the next round forgets it
            except (Unavailable, NotOwner) as exc:  # its cell changing hands: the next round
                unreachable[topic] = exc.message
        if unreachable.keys() - self.unreachable.keys():
            log.info("view %s cannot read %s now; trying again", self.name, sorted(unreachable))
        self.unreachable = unreachable
        return progressed

    def _apply_topic(self, topic: str) -> bool:
        position = self.positions.get(topic)
        if position is None:
            info = self.topics.describe_topic(topic)
            position = [info.first_offset, info.incarnation]
            with self.lock:
                self.positions[topic] = position
        try:
            batches = self.topics.fetch(
                topic,
                int(position[0]),
                max_records=limits.view_apply_records_max,
                max_bytes=limits.view_apply_bytes_max,
                value_format=self.definition.value_format,
            )
        except OffsetOutOfRange:
            # Below the first offset (retention removed records the view never applied)
            # or a topic created again under its name: go on from its first record.
            info = self.topics.describe_topic(topic)
            with self.lock:
                self.positions[topic] = [info.first_offset, info.incarnation]
            return True
        if not batches:
            return False
        for batch in batches:
            if not self._apply_batch(topic, batch):
                return False
        return True

    def _apply_batch(self, topic: str, batch: pa.RecordBatch) -> bool:
        """Reduce one batch and publish its states with the position past it; a record
        that raises stops the view there: the records before it are published, with
        the position at its offset (module rules)."""
        reduced = None
        if self._reducer is reducers.latest and self._key is None:
            reduced = _latest_of(batch)
        if reduced is None:
            reduced = self._reduce(topic, batch)
        changes, applied, position, failure = reduced
        with self.lock:
            if self._abandoned:
                return False
            for key, state in changes.items():
                self.table.put(key, state)
            current = self.positions.get(topic)
            if current is not None:  # None: the topic was deleted meanwhile (forget)
                self.positions[topic] = [position, current[1]]
            size = self.table.nbytes
            self.applied += applied
            self._dirty = True
        if failure is None and size > limits.view_bytes_max:
            failure = (
                f"the view holds {size} bytes of keys and states, over its bound of "
                f"{limits.view_bytes_max} (view_bytes_max): it stopped applying; narrow its "
                "pattern or make its states smaller, then create it again"
            )
        if failure is not None:
            self._fail(failure)
            return False
        self._on_applied()
        return True

    def _reduce(self, topic: str, batch: pa.RecordBatch) -> _Reduced:
        """Any reducer over one batch, in three passes: the view key of every record;
        the current state of those keys, looked up in one go (table.py); then the
        reducer, record by record. Returns the changes, the records applied, the
        position past them and why the view stops there (None: it goes on)."""
        assert self._reducer is not None
        reducer, key_function = self._reducer, self._key
        records = _as_int_timestamps(batch).to_pylist()
        position = int(batch.column("offset")[-1].as_py()) + 1
        failure: str | None = None
        keys: list[bytes | None] = []
        for record in records:
            try:
                keys.append(_key_of(topic, record, key_function))
            except Exception as exc:  # noqa: BLE001 (the key function is user code)
                position = int(record["offset"])
                failure = f"the key function failed on {topic} offset {position}: {type(exc).__name__}: {exc}"
                break
        with self.lock:
            states = self.table.states_of(list(dict.fromkeys(key for key in keys if key is not None)))
        changes: dict[bytes, bytes | None] = {}
        applied = 0
        # (the reducer runs outside the lock; an abandoned applier publishes nothing)
        for record, key in zip(records, keys, strict=False):
            if key is not None:
                try:
                    state = reducer(changes[key] if key in changes else states.get(key), record)
                    if state is not None and not isinstance(state, bytes):
                        raise TypeError(f"the reducer returned {type(state).__name__}, not bytes or None")
                except Exception as exc:  # noqa: BLE001 (the reducer is user code: whatever it raises stops the view)
                    position = int(record["offset"])
                    failure = f"the reducer failed on {topic} offset {position}: {type(exc).__name__}: {exc}"
                    break
                changes[key] = state
            applied += 1
        return changes, applied, position, failure

    def _fail(self, message: str) -> None:
        log.error("view %s: %s", self.name, message)
        self.error = message
        self.status = STATUS_FAILED
        self._on_applied()  # waiters for this view stop waiting

    def _checkpoint(self) -> None:
        """Write the table and positions (one atomic write); the arrays are taken under
        the lock, encoded and written outside it, so reads go on meanwhile."""
        with self.lock:
            keys, states = self.table.frozen()
            positions = {topic: list(position) for topic, position in self.positions.items()}
            self._dirty = False
        blob = encode(keys, states, positions)
        self._disk.write_atomically(os.path.join(self.directory, TABLE_FILE), blob, sync=self._engine.fsync)
        self._checkpointed_at = time.monotonic()

    def _try_checkpoint(self) -> None:
        """A checkpoint while applying; one the disk refuses (full, I/O error) is tried
        again at the next due time, the error shown in describe_view meanwhile: the view
        goes on applying, and a crash re-applies from the last checkpoint that landed."""
        try:
            self._checkpoint()
        except (OSError, OdradekError) as exc:
            self._dirty = True
            self._checkpointed_at = time.monotonic()
            self.checkpoint_error = f"the last checkpoint failed (tried again): {exc}"
            log.warning("view %s: %s", self.name, self.checkpoint_error)
        else:
            self.checkpoint_error = None

    def _checkpoint_due(self, now: float) -> bool:
        """Dirty, and ``view_checkpoint_seconds`` passed, or longer for a large table:
        its bytes at ``view_checkpoint_bytes_per_second``."""
        pause = max(
            limits.view_checkpoint_seconds, self.table.nbytes / limits.view_checkpoint_bytes_per_second
        )
        return self._dirty and now - self._checkpointed_at >= pause


# What reducing a batch gives: the changed states, the records applied, the position
# past them, and why the view stops there (None: it goes on).
_Reduced = tuple[dict[bytes, bytes | None], int, int, str | None]


def _latest_of(batch: pa.RecordBatch) -> _Reduced | None:
    """The built-in ``latest`` reducer with the records' own keys, over a whole batch:
    each key's state is its last record's value, so only that record is looked at (a
    group-by in Arrow finds it) and no state is read. Gives what the record-by-record
    fold gives, byte for byte; None when a key's last value has no JSON form (the fold
    then stops the view at the first such record, with its offset). Only last values
    are written: an earlier value without a JSON form, which the fold would stop at,
    cannot come from a schema'd topic (``reducers._json_default`` writes every type its
    values hold)."""
    keys = batch.column("key")
    rows = pa.table({"key": keys, "row": pa.array(np.arange(batch.num_rows, dtype=np.int64))})
    if keys.null_count:
        rows = rows.filter(pc.is_valid(keys))
    last = rows.group_by("key", use_threads=False).aggregate([("row", "max")])
    values = batch.column("value").take(last.column("row_max"))
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        states: list[bytes | None] = values.to_pylist()
    else:  # a typed value: its JSON text, as the reducer writes it (for the last record only)
        try:
            states = [reducers.latest(None, {"value": value}) for value in values.to_pylist()]
        except (TypeError, ValueError):
            return None
    changes = dict(zip(last.column("key").to_pylist(), states, strict=True))
    position = int(batch.column("offset")[-1].as_py()) + 1
    return changes, batch.num_rows, position, None


def _key_of(topic: str, record: dict[str, Any], key_function: KeyFunction | None) -> bytes | None:
    """The view key of one record (None: it does not change the view); completes the
    record dict the reducer gets (topic, headers as a dict)."""
    record["topic"] = topic
    headers = record.get("headers")
    record["headers"] = dict(headers) if headers else {}
    key = key_function(record) if key_function is not None else record.get("key")
    if key is None:
        return None
    if not isinstance(key, bytes):
        raise TypeError(f"the key function returned {type(key).__name__}, not bytes or None")
    if len(key) > limits.key_bytes_max:
        raise ValueError(f"the key function returned {len(key)} bytes, over {limits.key_bytes_max}")
    return key


def _as_int_timestamps(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with its timestamps as int64 microseconds (one Arrow cast), so the
    records the reducer gets hold plain ints."""
    names = batch.schema.names
    if "timestamp" not in names:
        return batch
    columns = list(batch.columns)
    index = names.index("timestamp")
    columns[index] = columns[index].cast(pa.int64())
    return pa.RecordBatch.from_arrays(columns, names=names)
