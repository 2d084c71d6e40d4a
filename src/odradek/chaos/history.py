"""The history of a chaos run: every client operation, as invoked and as completed.

Workers record while they run and the checker (``chaos/checker.py``) reads the whole
history afterwards. Recording is cheap: an invocation and a completion are one tuple
each, appended to a list under a lock held for nothing else (no IO, no formatting).
Everything heavier (the table, JSON lines) happens after the run.

An operation is one call of the client:

* ``append``: one record (``topic``, ``key`` or None, ``value``) with, optionally, the
  ``expect=`` version of its key and an idempotent producer's id and sequence. Values
  are unique per append (``w3-17``), except that the retries of one idempotent append
  (same producer id and sequence) send the same record again, value included: that is
  what lets the checker find a retry written twice.
* ``read``: ``key_version(topic, key)``; its result is the version read.

An append made inside a Kafka transaction names it (``transaction``, unique per
transaction): the transaction's appends are all in the logs or none (the checker's
``torn_transaction``). Their outcome is the transaction's: ``ok`` once its commit
returned, ``fail`` once its abort returned, ``info`` otherwise.

Each operation names the *door* it went through: ``native`` (the Python client over
Flight) or ``kafka`` (a Kafka client, ``chaos/kafka_workload.py``). A Kafka produce is
an append of one keyed record; its ``producer`` is the client's producer instance (the
client does not expose the Kafka producer id) and its ``sequence`` the produce's number
on that instance. The Kafka client retries internally and the worker never sends a
value again, so a Kafka value is in one operation only. An acknowledged Kafka produce
has the offset its delivery report gave (None if it gave none) and no version: Kafka
does not tell the key's version.

Each operation ends with one outcome (Jepsen's terms):

* ``ok``: it happened; ``offset`` and ``version`` are what the server answered (an
  append's offset and its key's new version, a read's version);
* ``fail``: it certainly did not happen (a conflict, a redirect, an invalid request);
* ``info``: nobody knows (a timeout, an agent lost mid-call). An operation still
  pending when the history is taken is ``info`` too (error ``pending``).

Times are seconds on the monotonic clock since the history began; JSON lines hold a
header line and then one operation per line, in the order of their ids. Histories of
version 1 (before the ``door`` field) are read as all ``native``.
"""

from __future__ import annotations

import enum
import io
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from odradek.errors import InvalidRequest, OdradekError

FORMAT = "odradek-chaos-history"
FORMAT_VERSION = 3
# Version 1: no door field, every operation native; 1 and 2: no transaction field.
FORMAT_VERSIONS_READ = (1, 2, 3)
# JSON lines are written this many operations at a time (to_pylist of one slice): a
# slice of 65,536 operations is ~30 MiB of Python objects at most.
WRITE_ROWS_PER_SLICE = 65_536
# An error's text is cut to this many characters in the history: enough to say what it
# was, and a history of a million failed operations stays a few hundred MiB.
ERROR_CHARACTERS_MAX = 200
PENDING = "pending"  # the error of an operation that never completed


class Kind(enum.StrEnum):
    APPEND = "append"
    READ = "read"


class Door(enum.StrEnum):
    NATIVE = "native"
    KAFKA = "kafka"


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


# Error codes that say an operation certainly did nothing (odradek.errors): the request
# was refused before anything was written. Every other error leaves the outcome unknown.
DEFINITE_CODES = frozenset(
    {
        "conflict",
        "invalid_request",
        "schema_violation",
        "invalid_schema",
        "request_too_large",
        "sequence_error",
        "topic_not_found",
        "not_owner",
    }
)


def outcome_of(error: BaseException, *, idempotent: bool = False) -> Outcome:
    """``fail`` when ``error`` proves that the call did nothing, else ``info``.

    A ``not_owner`` refusal proves it only for a call the client sends once: the client
    retries an idempotent append after an unknown outcome, so the refusal that ends its
    retries says nothing of the first attempt."""
    code = error.code if isinstance(error, OdradekError) else None
    if code not in DEFINITE_CODES or (idempotent and code == "not_owner"):
        return Outcome.INFO
    return Outcome.FAIL


def describe_error(error: BaseException) -> str:
    """``code: message``, cut to ERROR_CHARACTERS_MAX."""
    code = error.code if isinstance(error, OdradekError) else type(error).__name__
    return f"{code}: {error}"[:ERROR_CHARACTERS_MAX]


SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("worker", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("value", pa.string()),
        pa.field("expect", pa.int64()),
        pa.field("producer", pa.string()),
        pa.field("sequence", pa.int64()),
        pa.field("invoked", pa.float64(), nullable=False),
        pa.field("completed", pa.float64()),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("offset", pa.int64()),
        pa.field("version", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("door", pa.string(), nullable=False),
        pa.field("transaction", pa.string()),
    ]
)
_INVOCATION_FIELDS = [
    "id",
    "worker",
    "kind",
    "topic",
    "key",
    "value",
    "expect",
    "producer",
    "sequence",
    "invoked",
    "door",
    "transaction",
]
_COMPLETION_FIELDS = ["id", "completed", "outcome", "offset", "version", "error"]

Invocation = tuple[
    int, str, str, str, str | None, str | None, int | None, str | None, int | None, float, str, str | None
]
Completion = tuple[int, float, str, int | None, int | None, str | None]


class History:
    """A history being recorded; thread-safe. ``clock`` gives seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin = clock()
        self.started_at = time.time()  # wall clock, for the reader of a report
        self._lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._completions: list[Completion] = []
        self._outcomes: dict[str, int] = dict.fromkeys(Outcome, 0)

    def now(self) -> float:
        """Seconds since the history began, on its clock."""
        return self._clock() - self._origin

    def __len__(self) -> int:
        return len(self._invocations)

    # -- recording ------------------------------------------------------------------

    def invoke_append(
        self,
        worker: str,
        topic: str,
        key: str | None,
        value: str,
        *,
        expect: int | None = None,
        producer: str | None = None,
        sequence: int | None = None,
        door: Door = Door.NATIVE,
        transaction: str | None = None,
    ) -> int:
        """Record that an append is sent (through ``door``, inside ``transaction`` if
        given); returns the operation's id."""
        if (producer is None) != (sequence is None):
            raise InvalidRequest("an idempotent append needs both a producer id and a sequence")
        if door not in set(Door):
            raise InvalidRequest(f"unknown door {door!r} (known: {[known.value for known in Door]})")
        return self._invoke(
            worker, Kind.APPEND, topic, key, value, expect, producer, sequence, door, transaction
        )

    def invoke_read(self, worker: str, topic: str, key: str) -> int:
        """Record that ``key_version(topic, key)`` is sent; returns the operation's id."""
        return self._invoke(worker, Kind.READ, topic, key, None, None, None, None, Door.NATIVE)

    def _invoke(
        self,
        worker: str,
        kind: str,
        topic: str,
        key: str | None,
        value: str | None,
        expect: int | None,
        producer: str | None,
        sequence: int | None,
        door: str,
        transaction: str | None = None,
    ) -> int:
        door = str(door)
        with self._lock:
            operation = len(self._invocations)
            invoked = self._clock() - self._origin
            self._invocations.append(
                (
                    operation,
                    worker,
                    kind,
                    topic,
                    key,
                    value,
                    expect,
                    producer,
                    sequence,
                    invoked,
                    door,
                    transaction,
                )
            )
        return operation

    def ok(self, operation: int, *, offset: int | None = None, version: int | None = None) -> None:
        """The operation happened: an append's offset and its key's version (None for a
        keyless record), or a read's version."""
        self._complete(operation, Outcome.OK, offset, version, None)

    def fail(self, operation: int, error: str) -> None:
        """The operation certainly did not happen."""
        self._complete(operation, Outcome.FAIL, None, None, error[:ERROR_CHARACTERS_MAX])

    def info(self, operation: int, error: str) -> None:
        """Nobody knows whether the operation happened."""
        self._complete(operation, Outcome.INFO, None, None, error[:ERROR_CHARACTERS_MAX])

    def failed(self, operation: int, error: BaseException, *, idempotent: bool = False) -> Outcome:
        """Record the outcome ``error`` implies (see :func:`outcome_of`); returns it."""
        outcome = outcome_of(error, idempotent=idempotent)
        self._complete(operation, outcome, None, None, describe_error(error))
        return outcome

    def _complete(
        self, operation: int, outcome: str, offset: int | None, version: int | None, error: str | None
    ) -> None:
        with self._lock:
            completed = self._clock() - self._origin
            self._completions.append((operation, completed, outcome, offset, version, error))
            self._outcomes[outcome] += 1

    def counts(self) -> dict[str, int]:
        """Operations so far by outcome (``ok``, ``fail``, ``info``), and ``pending``."""
        with self._lock:
            counts = {str(outcome): count for outcome, count in self._outcomes.items()}
            counts["pending"] = len(self._invocations) - len(self._completions)
        return counts

    # -- after the run --------------------------------------------------------------

    def table(self) -> pa.Table:
        """Every operation, one row each in the order of ids (SCHEMA); an operation that
        has not completed is ``info`` with the error ``pending``. Raises InvalidRequest
        if an operation completed twice or an unknown one completed."""
        with self._lock:
            invocations = list(self._invocations)
            completions = list(self._completions)
        invoked = _columns(invocations, _INVOCATION_FIELDS)
        done = _columns(completions, _COMPLETION_FIELDS)
        ids = done.column("id")
        if len(ids) and (
            pc.count_distinct(ids).as_py() != len(ids) or pc.max(ids).as_py() >= len(invocations)
        ):
            raise InvalidRequest("a history has an operation completed twice, or one never invoked")
        # Completions by operation id: a scatter through NumPy, no join needed.
        where = ids.to_numpy()
        columns: dict[str, pa.Array] = {
            name: invoked.column(name).combine_chunks() for name in _INVOCATION_FIELDS
        }
        for name in _COMPLETION_FIELDS[1:]:
            columns[name] = _scatter(done.column(name).combine_chunks(), where, len(invocations))
        outcome = columns["outcome"]
        columns["outcome"] = pc.fill_null(outcome, Outcome.INFO.value)
        columns["error"] = pc.if_else(pc.is_null(outcome), PENDING, columns["error"])
        return pa.Table.from_arrays([columns[field.name] for field in SCHEMA], schema=SCHEMA)

    def write(self, path: Path) -> None:
        """Write the history as JSON lines (see :func:`write_history`)."""
        write_history(self.table(), path, started_at=self.started_at)


def _columns(rows: list[Any], names: list[str]) -> pa.Table:
    schema = pa.schema([SCHEMA.field(name) for name in names])
    if not rows:
        return schema.empty_table()
    values = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(values[index], type=field.type) for index, field in enumerate(schema)], schema=schema
    )


def _scatter(values: pa.Array, where: npt.NDArray[np.int64], length: int) -> pa.Array:
    """An array of ``length`` nulls with ``values[i]`` at ``where[i]``."""
    if length == 0 or len(values) == 0:
        return pa.nulls(length, type=values.type)
    inverse = np.full(length, -1, dtype=np.int64)
    inverse[where] = np.arange(len(where), dtype=np.int64)
    return values.take(pa.array(inverse, mask=inverse < 0, type=pa.int64()))


# -- JSON lines ------------------------------------------------------------------------


def write_history(table: pa.Table, path: Path, *, started_at: float | None = None) -> None:
    """A header line, then one operation per line (compact JSON), in order."""
    if table.schema != SCHEMA:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "operations": table.num_rows,
        "started_at": started_at,
    }
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(header, separators=(",", ":")) + "\n")
        for lines in _lines(table):
            file.write(lines)


def _lines(table: pa.Table) -> Iterator[str]:
    for start in range(0, table.num_rows, WRITE_ROWS_PER_SLICE):
        rows = table.slice(start, WRITE_ROWS_PER_SLICE).to_pylist()
        yield "".join(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n" for row in rows)


def read_history(path: Path) -> pa.Table:
    """The operations of a history written by :func:`write_history`, checked: the header,
    the fields and their types, the kinds and outcomes, unique ids. Raises
    InvalidRequest saying what is wrong."""
    with open(path, "rb") as file:
        version = _check_header(file, path)
        if not file.peek(1):
            return SCHEMA.empty_table()
        # Parsed with every field nullable, so that a missing field is named by check_table.
        absent = {"door", "transaction"} if version < 2 else {"transaction"} if version < 3 else set()
        fields = [field for field in SCHEMA if field.name not in absent]
        nullable = pa.schema([field.with_nullable(True) for field in fields])
        options = pajson.ParseOptions(explicit_schema=nullable, unexpected_field_behavior="error")
        try:
            table = pajson.read_json(file, parse_options=options)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidRequest(f"{path}: not a chaos history's operations: {exc}") from None
    if version < 2:
        table = table.append_column("door", pa.repeat(pa.scalar(Door.NATIVE.value), table.num_rows))
    return check_table(table, str(path))


def _check_header(file: io.BufferedReader, path: Path) -> int:
    """The history's format version, if this reads it."""
    line = file.readline()
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidRequest(f"{path}: not a chaos history (its first line is no {FORMAT} header)")
    version = header.get("version")
    if version not in FORMAT_VERSIONS_READ or isinstance(version, bool):
        raise InvalidRequest(
            f"{path}: a chaos history of version {version!r}; "
            f"this reads versions {list(FORMAT_VERSIONS_READ)}"
        )
    return int(version)


def check_table(table: pa.Table, what: str = "history") -> pa.Table:
    """``table`` if it is a well-formed history (SCHEMA's columns, no nulls where
    required, known kinds and outcomes, unique ids, finite times), else InvalidRequest.
    A table without ``transaction`` (no transactions: histories before version 3) gets
    it, empty."""
    if "transaction" not in table.column_names:
        table = table.append_column("transaction", pa.nulls(table.num_rows, pa.string()))
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise InvalidRequest(f"{what}: columns missing: {missing}")
    for field in SCHEMA:
        if not field.nullable and table.column(field.name).null_count:
            raise InvalidRequest(
                f"{what}: {field.name} is missing in {table.column(field.name).null_count} operations"
            )
    try:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequest(f"{what}: columns of the wrong types: {exc}") from None
    for name, allowed in (("kind", Kind), ("outcome", Outcome), ("door", Door)):
        known = pa.array([member.value for member in allowed])
        unknown = pc.invert(pc.is_in(table.column(name), value_set=known))
        if pc.any(unknown).as_py():
            bad = table.column(name).filter(unknown)[0].as_py()
            raise InvalidRequest(f"{what}: unknown {name} {bad!r} (known: {[m.value for m in allowed]})")
    if table.num_rows and pc.count_distinct(table.column("id")).as_py() != table.num_rows:
        raise InvalidRequest(f"{what}: operation ids are not unique")
    appends = pc.equal(table.column("kind"), Kind.APPEND.value)
    if pc.any(pc.and_(appends, pc.is_null(table.column("value")))).as_py():
        raise InvalidRequest(f"{what}: an append without a value")
    reads = pc.invert(appends)
    if pc.any(pc.and_(reads, pc.is_null(table.column("key")))).as_py():
        raise InvalidRequest(f"{what}: a read without a key")
    producer_null = pc.is_null(table.column("producer"))
    if not pc.all(pc.equal(producer_null, pc.is_null(table.column("sequence")))).as_py():
        raise InvalidRequest(f"{what}: a producer id without a sequence, or a sequence without one")
    invoked = table.column("invoked").to_numpy()
    if len(invoked) and not math.isfinite(float(invoked.sum())):
        raise InvalidRequest(f"{what}: an invocation time that is not a finite number")
    return table.sort_by("id")
