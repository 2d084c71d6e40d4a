"""The chaos history records operations from many threads and survives JSON lines.

Goal: concurrent workers lose no operation and mix none up; a history written to JSON
lines reads back equal, and a file that is not a well-formed history is refused with a
clear error; errors are sorted into ``fail`` (certainly not applied) and ``info``
(unknown); each operation names its door (native or Kafka), and a history written
before doors were recorded reads back as all native. Method: threads recording at
once, a fake clock where times matter, files damaged on purpose.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from odradek.chaos.history import (
    PENDING,
    SCHEMA,
    Door,
    History,
    Outcome,
    outcome_of,
    read_history,
    write_history,
)
from odradek.errors import ConflictError, InvalidRequest, SequenceError, StorageError, Unavailable

THREADS = 8
OPERATIONS_PER_THREAD = 3_000


class NotOwner(Unavailable):
    """A cluster agent's redirect, by its wire code (odradek.errors.NotOwner in cluster mode)."""

    code = "not_owner"


def test_threads_recording_at_once_lose_nothing() -> None:
    history = History()
    start = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        start.wait()
        for number in range(OPERATIONS_PER_THREAD):
            value = f"w{worker}-{number}"
            operation = history.invoke_append(f"w{worker}", "t", f"k{number % 7}", value)
            if number % 3 == 0:
                history.ok(operation, offset=number, version=worker)
            elif number % 3 == 1:
                history.fail(operation, "conflict: no")
            # else: left pending

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    table = history.table()
    assert table.num_rows == len(history) == THREADS * OPERATIONS_PER_THREAD
    assert table.column("id").to_pylist() == list(range(table.num_rows))
    rows = table.to_pylist()
    for row in rows:
        worker, number = (int(part) for part in row["value"][1:].split("-"))
        assert row["worker"] == f"w{worker}"
        expected = ("ok", "fail", "info")[number % 3]
        assert row["outcome"] == expected
        if expected == "ok":
            assert (row["offset"], row["version"]) == (number, worker)
            assert row["completed"] >= row["invoked"]
        if expected == "info":
            assert row["error"] == PENDING and row["completed"] is None


def test_times_come_from_the_clock_since_the_history_began() -> None:
    now = [100.0]
    history = History(lambda: now[0])
    now[0] = 101.5
    operation = history.invoke_read("r", "t", "k")
    now[0] = 102.0
    history.ok(operation, version=3)
    row = history.table().to_pylist()[0]
    assert (row["invoked"], row["completed"], row["version"], row["kind"]) == (1.5, 2.0, 3, "read")


def test_a_history_round_trips_through_json_lines(tmp_path: Path) -> None:
    history = History()
    first = history.invoke_append("w1", "t", "k", "w1-0", expect=0)
    history.invoke_append("w2", "t", None, "w2-0", producer="p", sequence=4)
    third = history.invoke_read("w3", "t", "k")
    fourth = history.invoke_append("w1", "u", "é", "w1-1")
    history.ok(first, offset=0, version=1)
    history.info(third, "unavailable: gone")
    history.fail(fourth, "conflict: ünïcode")
    path = tmp_path / "history.jsonl"
    history.write(path)
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == "odradek-chaos-history" and header["operations"] == 4
    assert read_history(path).equals(history.table())


def test_an_empty_history_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    History().write(path)
    assert read_history(path).equals(SCHEMA.empty_table())


def test_an_operation_completed_twice_is_refused() -> None:
    history = History()
    operation = history.invoke_append("w", "t", "k", "v")
    history.ok(operation, offset=0, version=1)
    history.info(operation, "again")
    with pytest.raises(InvalidRequest, match="completed twice"):
        history.table()


def test_an_idempotent_append_needs_both_id_and_sequence() -> None:
    with pytest.raises(InvalidRequest, match="both a producer id and a sequence"):
        History().invoke_append("w", "t", "k", "v", producer="p")


def test_each_operation_names_its_door(tmp_path: Path) -> None:
    history = History()
    native = history.invoke_append("w0", "t", "k", "w0-0")
    kafka = history.invoke_append("k0", "t.kafka", "k", "k0-0", producer="k0-p0", sequence=0, door=Door.KAFKA)
    read = history.invoke_read("w0", "t", "k")
    history.ok(kafka, offset=7)
    table = history.table()
    assert table.column("door").to_pylist() == ["native", "kafka", "native"]
    assert [native, kafka, read] == [0, 1, 2]
    path = tmp_path / "doors.jsonl"
    history.write(path)
    assert read_history(path).equals(table)
    with pytest.raises(InvalidRequest, match="unknown door 'http'"):
        history.invoke_append("w0", "t", "k", "w0-1", door="http")  # type: ignore[arg-type]


def test_a_history_of_version_1_reads_as_native(tmp_path: Path) -> None:
    """Written before the door field: every operation went through the native door."""
    path = tmp_path / "old.jsonl"
    row = json.loads(_line())
    del row["door"], row["transaction"]
    header = json.dumps({"format": "odradek-chaos-history", "version": 1})
    path.write_text(header + "\n" + json.dumps(row) + "\n")
    table = read_history(path)
    assert table.column("door").to_pylist() == ["native"] and table.schema == SCHEMA
    path.write_text(header + "\n" + _line() + "\n")  # a door field in version 1 is unknown
    with pytest.raises(InvalidRequest, match="not a chaos history's operations"):
        read_history(path)


def test_a_history_of_version_2_reads_without_transactions(tmp_path: Path) -> None:
    """Written before the transaction field: no operation was in a transaction."""
    path = tmp_path / "v2.jsonl"
    row = json.loads(_line())
    del row["transaction"]
    header = json.dumps({"format": "odradek-chaos-history", "version": 2})
    path.write_text(header + "\n" + json.dumps(row) + "\n")
    table = read_history(path)
    assert table.column("transaction").to_pylist() == [None] and table.schema == SCHEMA
    path.write_text(header + "\n" + _line(transaction="t0-x1") + "\n")  # unknown in version 2
    with pytest.raises(InvalidRequest, match="not a chaos history's operations"):
        read_history(path)


def test_appends_name_their_transaction(tmp_path: Path) -> None:
    history = History()
    inside = history.invoke_append("t0", "a", "k", "t0-x0-0-0", door=Door.KAFKA, transaction="t0-x0")
    outside = history.invoke_append("k0", "a", "k", "k0-0", producer="k0-p0", sequence=0, door=Door.KAFKA)
    history.ok(inside)
    history.fail(outside, "refused")
    table = history.table()
    assert table.column("transaction").to_pylist() == ["t0-x0", None]
    path = tmp_path / "transactions.jsonl"
    history.write(path)
    assert read_history(path).equals(table)


def _written(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "bad.jsonl"
    header = json.dumps({"format": "odradek-chaos-history", "version": 3})
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def _line(**changes: object) -> str:
    row: dict[str, object] = {name: None for name in SCHEMA.names}
    row.update(id=0, worker="w", kind="append", topic="t", key="k", value="v", invoked=0.5, outcome="ok")
    row.update(door="native")
    row.update(changes)
    return json.dumps({name: value for name, value in row.items() if value != "drop"})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([_line(outcome="maybe")], "unknown outcome 'maybe'"),
        ([_line(kind="scan")], "unknown kind 'scan'"),
        ([_line(door="smtp")], "unknown door 'smtp'"),
        ([_line(door=None)], "door is missing"),
        ([_line(), _line()], "ids are not unique"),
        ([_line(worker=None)], "worker is missing"),
        ([_line(value=None)], "an append without a value"),
        ([_line(producer="p")], "a producer id without a sequence"),
        ([_line(surprise=1)], "not a chaos history's operations"),
        ([_line(offset="three")], "not a chaos history's operations"),
    ],
)
def test_a_damaged_history_is_refused(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        read_history(_written(tmp_path, lines))


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(_line() + "\n")
    with pytest.raises(InvalidRequest, match="not a chaos history"):
        read_history(path)
    path.write_text(json.dumps({"format": "odradek-chaos-history", "version": 9}) + "\n")
    with pytest.raises(InvalidRequest, match="version 9"):
        read_history(path)


def test_a_table_with_other_column_order_is_written_in_schema_order(tmp_path: Path) -> None:
    history = History()
    history.invoke_append("w", "t", "k", "v")
    table = history.table()
    shuffled = pa.table({name: table.column(name) for name in reversed(SCHEMA.names)})
    path = tmp_path / "shuffled.jsonl"
    write_history(shuffled, path)
    assert read_history(path).equals(table)


@pytest.mark.parametrize(
    ("error", "idempotent", "outcome"),
    [
        (ConflictError("conflict", b"k", 1, 2), False, Outcome.FAIL),
        (SequenceError("gap", "p", 3, 5), True, Outcome.FAIL),
        (InvalidRequest("bad"), False, Outcome.FAIL),
        (NotOwner("standby; the owner is a2"), False, Outcome.FAIL),
        (NotOwner("standby, no owner"), True, Outcome.INFO),  # the first attempt may have landed
        (Unavailable("gone"), False, Outcome.INFO),
        (StorageError("flush timed out"), False, Outcome.INFO),
        (TimeoutError("deadline"), False, Outcome.INFO),
    ],
)
def test_errors_are_failures_only_when_nothing_was_done(
    error: BaseException, idempotent: bool, outcome: Outcome
) -> None:
    assert outcome_of(error, idempotent=idempotent) is outcome
    history = History()
    operation = history.invoke_append("w", "t", "k", "v")
    assert history.failed(operation, error, idempotent=idempotent) is outcome
    row = history.table().to_pylist()[0]
    assert row["outcome"] == outcome.value and row["error"].startswith(
        error.code if hasattr(error, "code") else type(error).__name__
    )
