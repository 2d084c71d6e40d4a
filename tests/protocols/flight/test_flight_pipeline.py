"""Pipelined DoPut: appends of one stream in flight together, acknowledged in order.

Goal: the door keeps up to a window of appends in flight per DoPut stream, writes each
result in submission order once its append is durable, and a refused batch's error
reaches the client after the results of the batches before it, with nothing after it
appended; a stream that asks for a window of 1 is acknowledged batch by batch on the
handler's own thread. Method: ``AppendPipeline`` alone, with pending appends whose
``wait`` the test releases by hand (sans-IO: results go to a list); then a plain
Flight client against an in-process server, writing every batch before reading any
result, with the default window and with windows given in the DoPut command.
"""

from __future__ import annotations

import contextlib
import json
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from odradek.engine import Engine
from odradek.errors import StorageError
from odradek.protocols.flight.pipeline import AppendPipeline
from odradek.types import AppendResult


class _Pending:
    """A pending append whose acknowledgement the test releases."""

    def __init__(self, offset: int, error: Exception | None = None) -> None:
        self.offset = offset
        self.error = error
        self.released = threading.Event()
        self.waited = threading.Event()

    def wait(self) -> AppendResult:
        self.released.wait(10)
        self.waited.set()
        if self.error is not None:
            raise self.error
        return AppendResult(self.offset, 1, {})


def _pipeline(window: int) -> tuple[AppendPipeline, list[bytes]]:
    written: list[bytes] = []
    pipeline = AppendPipeline(written.append, lambda result, _: b"%d" % result.base_offset, window)
    return pipeline, written


def test_results_are_written_in_submission_order() -> None:
    pipeline, written = _pipeline(window=4)
    pendings = [_Pending(offset) for offset in range(4)]
    for pending in pendings:
        pipeline.add(pending)
    for pending in reversed(pendings):  # durable in any order, acknowledged in order
        pending.released.set()
    pipeline.finish()
    assert written == [b"0", b"1", b"2", b"3"]


def test_add_blocks_while_the_window_is_full() -> None:
    pipeline, written = _pipeline(window=2)
    pendings = [_Pending(offset) for offset in range(3)]
    pipeline.add(pendings[0])
    pipeline.add(pendings[1])
    third_added = threading.Event()
    adder = threading.Thread(target=lambda: (pipeline.add(pendings[2]), third_added.set()))
    adder.start()
    assert not third_added.wait(0.2)  # two in flight: the third waits
    pendings[0].released.set()
    assert third_added.wait(10)
    adder.join()
    pendings[1].released.set()
    pendings[2].released.set()
    pipeline.finish()
    assert written == [b"0", b"1", b"2"]


def test_a_failed_acknowledgement_stops_the_results_and_is_raised() -> None:
    pipeline, written = _pipeline(window=4)
    failing = _Pending(1, StorageError("fsync failed"))
    pendings = [_Pending(0), failing, _Pending(2)]
    for pending in pendings:
        pending.released.set()
        pipeline.add(pending)
    with pytest.raises(StorageError):
        pipeline.finish()
    assert written == [b"0"]
    assert all(pending.waited.is_set() for pending in pendings)  # later ones still waited for
    with pytest.raises(StorageError):
        pipeline.add(_Pending(3))


def test_a_window_of_one_acknowledges_on_the_calling_thread() -> None:
    pipeline, written = _pipeline(window=1)
    before = threading.active_count()
    first = _Pending(0)
    first.released.set()
    pipeline.add(first)
    assert written == [b"0"]  # acknowledged before add returned
    failing = _Pending(1, StorageError("fsync failed"))
    failing.released.set()
    with pytest.raises(StorageError):
        pipeline.add(failing)
    with pytest.raises(StorageError):
        pipeline.finish()
    assert written == [b"0"] and threading.active_count() == before


def test_finish_without_appends_starts_no_thread() -> None:
    pipeline, written = _pipeline(window=1)
    before = threading.active_count()
    pipeline.finish()
    assert written == [] and threading.active_count() == before


# -- through the server ------------------------------------------------------------------


def test_refused_batch_error_follows_the_results_before_it(url: str, engine: Engine) -> None:
    engine.create_topic("t")
    plain = flight.connect(url)
    schema = pa.schema([pa.field("key", pa.binary()), pa.field("value", pa.binary())])
    writer, reader = plain.do_put(flight.FlightDescriptor.for_path("t"), schema)
    batch = pa.RecordBatch.from_pydict({"key": [b"k"], "value": [b"v"]}, schema=schema)
    conflict = pa.py_buffer(json.dumps({"expect": {b"k".hex(): 0}}).encode())
    writer.write_batch(batch)
    writer.write_batch(batch)
    writer.write_with_metadata(batch, conflict)  # k is at version 2 by then: refused
    with contextlib.suppress(flight.FlightError):  # the server may have ended the stream
        writer.write_batch(batch)
        writer.write_batch(batch)
        writer.done_writing()
    results = []
    with pytest.raises(flight.FlightServerError) as caught:
        while (answer := reader.read()) is not None:
            results.append(json.loads(answer.to_pybytes()))
        writer.close()
    assert [(result["base_offset"], result["versions"]) for result in results] == [
        (0, {b"k".hex(): 1}),
        (1, {b"k".hex(): 2}),
    ]
    error = json.loads(caught.value.extra_info)
    assert error["code"] == "conflict"
    assert error["details"] == {"key_hex": b"k".hex(), "expected": 0, "actual": 2}
    assert engine.describe_topic("t").next_offset == 2  # nothing after the refused batch


@pytest.mark.parametrize("command", [None, {"topic": "t", "window": 1}, {"topic": "t", "window": 3}])
def test_many_batches_written_ahead_are_all_acknowledged(
    url: str, engine: Engine, command: dict[str, object] | None
) -> None:
    engine.create_topic("t")
    plain = flight.connect(url)
    batch = pa.RecordBatch.from_pydict({"value": [b"a", b"b", b"c"]})
    descriptor = (
        flight.FlightDescriptor.for_path("t")
        if command is None
        else flight.FlightDescriptor.for_command(json.dumps(command).encode())
    )
    writer, reader = plain.do_put(descriptor, batch.schema)
    for _ in range(40):  # far more than the window: the server reads as it acknowledges
        writer.write_batch(batch)
    writer.done_writing()
    offsets = [json.loads(reader.read().to_pybytes())["base_offset"] for _ in range(40)]
    assert reader.read() is None
    writer.close()
    assert offsets == list(range(0, 120, 3))
