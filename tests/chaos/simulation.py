"""A correct single-owner log, simulated, and the history its clients would record: the
ground truth the checker's tests start from.

``simulate(steps)`` applies drawn client operations one at a time, as one owner would:
dense offsets, per-key versions, ``expect=`` checked against the key's version,
idempotent retries answered from memory. Each operation is *applied* (or not) at a point
between its invocation and its completion, so operations overlap in time as a
concurrent run's do, and every outcome is one a real client could see: an applied
operation is ``ok`` or ``info`` (its answer lost), one not applied ``fail`` or ``info``.

After the drawn steps comes a fixed suffix that every injection in the tests can aim
at without disturbing anything else (``Simulation.marks`` names its operations):

* ``tail``: two plain appends of key ``tail``, both applied, both ``info``;
* ``ghost``: a plain append of key ``ghost``, not applied, ``info``;
* ``idem``: an idempotent append of key ``idem`` applied by its first attempt
  (``info``) and answered from memory to its retry (``ok``);
* ``fin``: two appends of key ``fin`` with ``expect=0`` and ``expect=1``, both ``ok``:
  the last two records of topic ``a``.

Topic ``k`` is written through the Kafka door only, as a Kafka worker does
(``chaos/kafka_workload.py``): keyed produces with values of their own, the client's
producer instance and the produce's number on it as producer and sequence, ``ok`` with
the offset (or none) and no version, ``fail`` only for a produce refused before it was
queued (never applied), ``info`` for a delivery error (applied or not); now and then the
producer is replaced (a fatal error). Its suffix:

* ``kafka_info``: a produce applied whose delivery report was an error (``info``);
* ``kafka_refused``: a produce refused by the client (``fail``, not applied);
* ``kafka``: two produces of key ``kafka``, both ``ok``: the last two records of ``k``.

Rows of the history are plain dicts (history.SCHEMA's columns) so that tests can change
them; ``Simulation.history()`` records them through the History API.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from odradek.chaos.history import History

TOPICS = ("a", "b")  # written through the native door
KAFKA_TOPIC = "k"  # written through the Kafka door
LOG_TOPICS = (*TOPICS, KAFKA_TOPIC)
KEYS = ("k0", "k1", "k2", None)
STEP = 100.0  # time between two operations' application points
LAG_MAX = 150.0  # invocation before, completion after application: up to 1.5 steps


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Simulation:
    rows: list[dict[str, Any]]
    logs: dict[str, list[dict[str, Any]]]
    marks: dict[str, list[int]]  # suffix name -> indexes in rows

    def history(self) -> pa.Table:
        """The rows recorded through the History API, each call at its row's times."""
        clock = Clock()
        history = History(clock)
        for row in self.rows:
            clock.now = row["invoked"]
            if row["kind"] == "append":
                operation = history.invoke_append(
                    row["worker"],
                    row["topic"],
                    row["key"],
                    row["value"],
                    expect=row["expect"],
                    producer=row["producer"],
                    sequence=row["sequence"],
                    door=row["door"],
                )
            else:
                operation = history.invoke_read(row["worker"], row["topic"], row["key"])
            row["id"] = operation
            if row["completed"] is None:
                continue
            clock.now = row["completed"]
            if row["outcome"] == "ok":
                history.ok(operation, offset=row["offset"], version=row["version"])
            elif row["outcome"] == "fail":
                history.fail(operation, row["error"])
            else:
                history.info(operation, row["error"])
        return history.table()

    def log_tables(self) -> dict[str, pa.Table]:
        schema = pa.schema(
            [("offset", pa.int64()), ("key", pa.binary()), ("value", pa.binary()), ("version", pa.int64())]
        )
        tables = {}
        for topic in LOG_TOPICS:
            records = self.logs[topic]
            tables[topic] = pa.table(
                {
                    "offset": [record["offset"] for record in records],
                    "key": [None if record["key"] is None else record["key"].encode() for record in records],
                    "value": [record["value"].encode() for record in records],
                    "version": [record["version"] for record in records],
                },
                schema=schema,
            )
        return tables

    def record(self, mark: str, index: int = 0) -> dict[str, Any]:
        """The log record of a suffix operation (it must be visible)."""
        row = self.rows[self.marks[mark][index]]
        return next(record for record in self.logs[row["topic"]] if record["value"] == row["value"])

    def append_record(self, topic: str, key: str | None, value: str) -> dict[str, Any]:
        """A record added at the end of ``topic``'s log: the next offset, the key's next
        version."""
        records = self.logs[topic]
        versions = [record["version"] for record in records if record["key"] == key and key is not None]
        record = {
            "offset": records[-1]["offset"] + 1 if records else 0,
            "key": key,
            "value": value,
            "version": (max(versions) + 1 if versions else 1) if key is not None else None,
        }
        records.append(record)
        return record


# -- drawing steps ----------------------------------------------------------------------

lags = st.tuples(st.floats(0, LAG_MAX), st.floats(0, LAG_MAX))
outcomes = st.booleans()  # True: the client got the answer (ok, or a definite fail)
plain = st.tuples(
    st.just("append"), st.sampled_from(TOPICS), st.sampled_from(KEYS), st.booleans(), outcomes, lags
)
expecting = st.tuples(
    st.just("expect"),
    st.sampled_from(TOPICS),
    st.sampled_from(KEYS[:-1]),
    st.integers(0, 2),
    st.booleans(),
    outcomes,
    lags,
)
idempotent = st.tuples(
    st.just("idem"),
    st.sampled_from(TOPICS),
    st.sampled_from(KEYS),
    st.integers(0, 2),
    st.lists(st.tuples(st.booleans(), outcomes), min_size=1, max_size=3),
    lags,
)
reading = st.tuples(st.just("read"), st.sampled_from(TOPICS), st.sampled_from(KEYS[:-1]), outcomes, lags)
# A Kafka produce: applied?, answered?, an offset in its report?, producer replaced after?
producing = st.tuples(
    st.just("kafka"), st.sampled_from(KEYS[:-1]), st.booleans(), outcomes, st.booleans(), st.booleans(), lags
)
steps = st.lists(st.one_of(plain, expecting, idempotent, reading, producing), max_size=60)


# -- the simulated owner ----------------------------------------------------------------


class _Owner:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.logs: dict[str, list[dict[str, Any]]] = {topic: [] for topic in LOG_TOPICS}
        self.versions: dict[tuple[str, str], int] = {}
        self.sequences: dict[str, int] = {}
        self.kafka_producer = 0  # the Kafka worker's producer instance
        self.kafka_sequence = 0
        self.values = 0
        self.time = 0.0

    def value(self) -> str:
        self.values += 1
        return f"v{self.values}"

    def tick(self) -> float:
        self.time += STEP
        return self.time

    def apply(self, topic: str, key: str | None, value: str) -> tuple[int, int | None]:
        records = self.logs[topic]
        version = None
        if key is not None:
            version = self.versions.get((topic, key), 0) + 1
            self.versions[(topic, key)] = version
        records.append({"offset": len(records), "key": key, "value": value, "version": version})
        return len(records) - 1, version

    def row(
        self,
        worker: str,
        kind: str,
        topic: str,
        key: str | None,
        value: str | None,
        at: float,
        lag: tuple[float, float],
        **fields: Any,
    ) -> dict[str, Any]:
        row = {
            "worker": worker,
            "kind": kind,
            "topic": topic,
            "key": key,
            "value": value,
            "expect": None,
            "producer": None,
            "sequence": None,
            "invoked": at - lag[0],
            "completed": at + lag[1],
            "outcome": "info",
            "offset": None,
            "version": None,
            "error": "timeout",
            "door": "native",
        }
        row.update(fields)
        self.rows.append(row)
        return row

    def answer(
        self, row: dict[str, Any], answered: bool, result: tuple[int, int | None] | None, error: str
    ) -> None:
        if not answered:
            return  # info: the answer was lost
        if result is None:
            row.update(outcome="fail", error=error)
        else:
            row.update(outcome="ok", offset=result[0], version=result[1], error=None)

    def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        at = self.tick()
        if kind == "append":
            _, topic, key, applied, answered, lag = step
            value = self.value()
            row = self.row("w0", "append", topic, key, value, at, lag)
            self.answer(
                row, answered, self.apply(topic, key, value) if applied else None, "not_owner: standby"
            )
        elif kind == "expect":
            _, topic, key, behind, applied, answered, lag = step
            current = self.versions.get((topic, key), 0)
            expect = max(current - behind, 0)
            value = self.value()
            row = self.row("w1", "append", topic, key, value, at, lag, expect=expect)
            result = self.apply(topic, key, value) if applied and expect == current else None
            self.answer(row, answered, result, f"conflict: {key} is at {current}")
        elif kind == "idem":
            _, topic, key, worker, attempts, lag = step
            producer = f"p{worker}"
            sequence = self.sequences.get(producer, 0)
            self.sequences[producer] = sequence + 1
            value = self.value()
            result = None
            for number, (applies, answered) in enumerate(attempts):
                at = self.tick() if number else at
                row = self.row(
                    f"w{2 + worker}",
                    "append",
                    topic,
                    key,
                    value,
                    at,
                    lag,
                    producer=producer,
                    sequence=sequence,
                )
                if result is None and applies:
                    result = self.apply(topic, key, value)
                self.answer(row, answered, result, "invalid_request: refused")
        elif kind == "kafka":
            _, key, applied, answered, offset_given, replaced, lag = step
            self.produce(key, applied, answered, offset_given, at, lag)
            if replaced:
                self.kafka_producer += 1
                self.kafka_sequence = 0
        else:
            _, topic, key, answered, lag = step
            row = self.row("w5", "read", topic, key, None, at, lag)
            if answered:
                row.update(outcome="ok", version=self.versions.get((topic, key), 0), error=None)

    def produce(
        self, key: str, applied: bool, answered: bool, offset_given: bool, at: float, lag: tuple[float, float]
    ) -> dict[str, Any]:
        """One Kafka produce to topic k, recorded as the Kafka worker records it."""
        value = self.value()
        row = self.row(
            "k0",
            "append",
            KAFKA_TOPIC,
            key,
            value,
            at,
            lag,
            producer=f"k0-p{self.kafka_producer}",
            sequence=self.kafka_sequence,
            door="kafka",
            error="kafka _MSG_TIMED_OUT: Local: Message timed out",
        )
        self.kafka_sequence += 1
        if applied:
            offset, _ = self.apply(KAFKA_TOPIC, key, value)
            if answered:
                row.update(outcome="ok", offset=offset if offset_given else None, error=None)
        elif answered:
            row.update(outcome="fail", error="BufferError: Local: Queue full")
        return row

    def suffix(self) -> dict[str, list[int]]:
        marks: dict[str, list[int]] = {}
        lag = (10.0, 10.0)

        def mark(name: str) -> None:
            marks.setdefault(name, []).append(len(self.rows) - 1)

        for _ in range(2):
            value = self.value()
            self.apply("a", "tail", value)
            self.row("w0", "append", "a", "tail", value, self.tick(), lag)
            mark("tail")
        self.row("w0", "append", "a", "ghost", self.value(), self.tick(), lag)
        mark("ghost")
        value = self.value()
        result = self.apply("a", "idem", value)
        self.row("w2", "append", "a", "idem", value, self.tick(), lag, producer="pz", sequence=0)
        mark("idem")
        row = self.row("w2", "append", "a", "idem", value, self.tick(), lag, producer="pz", sequence=0)
        self.answer(row, True, result, "")
        mark("idem")
        for expect in (0, 1):
            value = self.value()
            result = self.apply("a", "fin", value)
            row = self.row("w1", "append", "a", "fin", value, self.tick(), lag, expect=expect)
            self.answer(row, True, result, "")
            mark("fin")
        self.produce("kafka", True, False, True, self.tick(), lag)
        mark("kafka_info")
        self.produce("kafka", False, True, True, self.tick(), lag)
        mark("kafka_refused")
        for _ in range(2):
            self.produce("kafka", True, True, True, self.tick(), lag)
            mark("kafka")
        return marks


def simulate(drawn: list[tuple[Any, ...]]) -> Simulation:
    owner = _Owner()
    for step in drawn:
        owner.step(step)
    marks = owner.suffix()
    return Simulation(owner.rows, owner.logs, marks)
