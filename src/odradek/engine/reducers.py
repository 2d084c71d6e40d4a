"""Reducers: key snapshots made on the server, every N events of a key.

Theory of operation (docs/decisions/0018-key-snapshots.md)
-----------------------------------------------------------
A topic created with ``reducer="package.module:function"`` (or the name of an entry
point of the ``odradek.reducers`` group) and ``snapshot_every=N`` has its keys
snapshotted by the engine's ``odradek-reducers`` thread, never on the append path:

* A round of a topic reads the records after the topic's *reducer position* (at most
  ``reducer_records_per_round_max``), groups them by key with one Arrow ``group_by``
  (lowest and highest version), and finds the keys whose versions crossed a multiple
  of N in them (``max // N > (min - 1) // N``): those are due.
* A due key is folded from its latest snapshot (``read_key(from_snapshot=True)``):
  ``state = reducer(state, record)`` over its later events, one call per event (the
  reducer is the user's Python), then stored as the key's snapshot as of its last
  version folded. A reducer that returns None stores nothing. ``record["value"]`` is
  what ``read_key`` returns: bytes on a topic without a schema, the typed value (a
  dict for a record schema, in the newest version's shape) on a topic with one; the
  state is bytes on both.
* The position then moves past the records read and is saved in ``reducer.json``
  (atomically) in the topic's directory; after a restart the rounds resume there, so
  no key's crossing is missed and none is folded twice but after a crash mid-round.
* A reducer that raises, returns something that is not bytes, or cannot be imported is
  logged (once per round and topic) and counted; its key waits for its next crossing.
  ``describe_topic`` reports the counts and the last error under ``snapshots``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.engine.snapshots import SNAPSHOT_COLUMN, STATE_COLUMN
from odradek.errors import ConflictError, InvalidRequest, OdradekError
from odradek.storage.disk import describe_os_error

if TYPE_CHECKING:
    from odradek.engine.topic import Topic

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "odradek.reducers"
POSITION_FILE = "reducer.json"

Reducer = Callable[[bytes | None, dict[str, Any]], bytes | None]


def resolve_reducer(name: str) -> Reducer:
    """The callable ``name`` designates: ``module:attribute`` is imported, a bare name
    is an entry point of the ``odradek.reducers`` group. InvalidRequest if neither."""
    try:
        if ":" in name:
            module_name, _, attribute = name.partition(":")
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        else:
            found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
            if not found:
                raise LookupError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r}")
            target = next(iter(found)).load()
    except Exception as exc:  # noqa: BLE001 (an import runs arbitrary code: any failure is a refusal)
        raise InvalidRequest(f"reducer {name!r} cannot be loaded here: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise InvalidRequest(f"reducer {name!r} is not callable")
    return target  # type: ignore[no-any-return]


class ReducerState:
    """One topic's reducer: its position, counts and the loaded function."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.path = os.path.join(topic.directory, POSITION_FILE)
        self.position = self._load()
        self.snapshots = 0  # snapshots made since open
        self.failures = 0  # reducer calls that failed since open
        self.last_error: str | None = None
        self._name: str | None = None
        self._function: Reducer | None = None

    def _load(self) -> int:
        try:
            position = json.loads(self.topic.disk.read_bytes(self.path))["position"]
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("topic %s: reducer position unreadable (%s): starting again", self.topic.name, exc)
            return 0
        return position if isinstance(position, int) and position >= 0 else 0

    def save(self) -> None:
        blob = json.dumps({"position": self.position}).encode()
        try:
            self.topic.disk.write_atomically(self.path, blob, sync=self.topic.fsync)
        except OSError as exc:  # the next round reads again from the older position
            log.warning(
                "topic %s: cannot save the reducer position: %s", self.topic.name, describe_os_error(exc)
            )

    def function(self, name: str) -> Reducer:
        if self._function is None or self._name != name:
            self._function = resolve_reducer(name)
            self._name = name
        return self._function

    def fail(self, what: str) -> None:
        self.failures += 1
        self.last_error = what

    def describe(self) -> dict[str, Any]:
        return {
            "reducer_position": self.position,
            "reducer_snapshots": self.snapshots,
            "reducer_failures": self.failures,
            "reducer_last_error": self.last_error,
        }


def reduce_round(topic: Topic, stop: threading.Event) -> int:
    """One reducer round of ``topic`` (see the module); the snapshots it stored."""
    name = topic.config.reducer
    if name is None or topic.closed:
        return 0
    state = topic.snapshots.reducer_state()
    try:
        function = state.function(name)
    except InvalidRequest as exc:
        if state.last_error != exc.message:
            log.warning("topic %s: %s", topic.name, exc.message)
        state.fail(exc.message)
        return 0
    start = min(max(state.position, topic.first_offset), topic.durable_offset)
    end = topic.durable_offset
    if start >= end:
        return 0
    batches = topic.fetch(start, limits.reducer_records_per_round_max, limits.read_bytes_max_default)
    if not batches:
        return 0
    following = int(batches[-1].column("offset")[-1].as_py()) + 1
    table = pa.Table.from_batches(batches).select(["key", "version"])
    table = table.filter(pc.is_valid(table.column("key")))
    made = 0
    if table.num_rows:
        every = topic.config.snapshot_every
        grouped = table.group_by("key").aggregate([("version", "min"), ("version", "max")])
        lowest = grouped.column("version_min").to_numpy()
        highest = grouped.column("version_max").to_numpy()
        due = highest // every > (lowest - 1) // every
        keys = grouped.column("key").filter(pa.array(due)).to_pylist() if due.any() else []
        failed = 0
        for key in keys:
            if stop.is_set():
                return made  # the position stays: the next round reads these again
            outcome = _fold(topic, key, function, state)
            if outcome is True:
                made += 1
            elif outcome is False:
                failed += 1
        if failed:
            log.warning(
                "topic %s: reducer %s failed on %d key(s) this round: %s",
                topic.name,
                name,
                failed,
                state.last_error,
            )
    state.position = following
    state.save()
    state.snapshots += made
    return made


def _fold(topic: Topic, key: bytes, function: Reducer, state: ReducerState) -> bool | None:
    """Fold ``key`` from its latest snapshot and store the result: True if stored, False
    if the reducer failed, None if there was nothing to store."""
    rows = topic.snapshots.read_key(key)
    if rows.num_rows == 0:
        return None
    flags = rows.column("snapshot").to_numpy(zero_copy_only=False)
    first = 1 if flags[0] else 0
    if first >= rows.num_rows:
        return None
    typed = STATE_COLUMN in rows.column_names  # a schema'd topic: the state has a column
    current: bytes | None = rows.column(STATE_COLUMN if typed else "value")[0].as_py() if first else None
    events = rows.slice(first).drop_columns([SNAPSHOT_COLUMN, STATE_COLUMN] if typed else [SNAPSHOT_COLUMN])
    events = events.set_column(
        events.schema.get_field_index("timestamp"), "timestamp", events.column("timestamp").cast(pa.int64())
    )
    records = events.to_pylist()  # the reducer is Python: it takes one record at a time
    try:
        for record in records:
            record["headers"] = dict(record["headers"] or [])
            current = function(current, record)
            if current is not None and not isinstance(current, bytes):
                raise TypeError(f"the reducer returned {type(current).__name__}, not bytes or None")
    except Exception as exc:  # noqa: BLE001 (user code: any failure is counted, never raised)
        state.fail(f"key {key!r}: {type(exc).__name__}: {exc}")
        return False
    if current is None:
        return None
    version = int(np.asarray(events.column("version"))[-1])
    try:
        topic.snapshots.write(key, current, version)
    except ConflictError:
        return None  # a later snapshot of the key was stored meanwhile
    except OdradekError as exc:
        state.fail(f"key {key!r}: {exc.message}")
        return False
    return True
