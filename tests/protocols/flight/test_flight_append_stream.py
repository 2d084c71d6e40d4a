"""The append stream: a remote client's single appends, from any of its threads, over one
long-lived DoExchange.

Goal: appends from many threads of one client travel on one stream and keep every
semantic of a single append: dense offsets and per-key versions in each thread's
order, expectations, schema checks and idempotent producers per append, an error
that fails only its own append, the in-flight byte budget and the door's call caps,
appends that arrive during an fsync sharing the next one, a drain that answers what
it wrote and refuses the rest, and a server that refuses append streams (an older
one) served over DoPut instead. Method: ``odradek.connect`` and ``connect_async``
against an in-process Flight server over a real engine, with a disk whose fdatasync
the test holds, or a door whose appends the test holds, where a test needs appends in
flight; plain pyarrow Flight calls for the wire itself. Every wait is on a condition
with a generous deadline; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek.budget import ByteBudget
from odradek.client.remote import RemoteClient
from odradek.engine import Engine
from odradek.errors import (
    ConflictError,
    InvalidRequest,
    RequestTooLarge,
    SchemaViolation,
    SequenceError,
    Unavailable,
)
from odradek.protocols import connections
from odradek.protocols.flight import messages
from odradek.protocols.flight import server as flight_server
from odradek.protocols.flight.server import FlightService
from odradek.records import INPUT_SCHEMA, to_input_batch
from odradek.storage.disk import Disk
from odradek.types import AppendResult

DEADLINE_SECONDS = 30.0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _opens(client: RemoteClient) -> list[int]:
    """Counts the append streams the client opens from now on."""
    opened: list[int] = []
    streams = client._appends
    original = streams._open

    def counting() -> Any:
        stream = original()
        if stream is not None:
            opened.append(1)
        return stream

    streams._open = counting  # type: ignore[method-assign]
    return opened


@pytest.fixture(autouse=True)
def _streams_stay_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client keeps its stream however slow the machine (the idle close has its own
    test), so that a test can tell that all its appends used one stream."""
    monkeypatch.setattr(odradek.limits, "append_stream_idle_seconds", 3600.0)


@pytest.fixture
def client(url: str) -> Iterator[RemoteClient]:
    with odradek.connect(url) as remote:
        yield remote


def test_many_threads_share_one_stream_with_dense_offsets_and_versions(client: RemoteClient) -> None:
    client.create_topic("t")
    opened = _opens(client)
    threads, per_thread = 16, 40
    results: dict[int, list[AppendResult]] = collections.defaultdict(list)
    start = threading.Barrier(threads)

    def append(worker: int) -> None:
        start.wait()
        for index in range(per_thread):
            record = {"key": f"k{worker}", "value": f"{worker}:{index}"}
            results[worker].append(client.append("t", [record]))
            client.append("t", [{"key": "shared", "value": f"{worker}:{index}"}])

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert opened == [1]  # every thread's appends went over one stream
    total = threads * per_thread * 2
    table = pa.Table.from_batches(list(client.read("t", wait=0)))
    assert table.column("offset").to_pylist() == list(range(total))
    for worker, mine in results.items():
        # each thread's appends were written in its order, its key's versions 1, 2, 3...
        assert [r.versions[f"k{worker}".encode()] for r in mine] == list(range(1, per_thread + 1))
        assert [r.base_offset for r in mine] == sorted(r.base_offset for r in mine)
        values = [
            v.decode()
            for k, v in zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True)
            if k == f"k{worker}".encode()
        ]
        assert values == [f"{worker}:{index}" for index in range(per_thread)]
    shared = [
        v
        for k, v in zip(table["key"].to_pylist(), table["version"].to_pylist(), strict=True)
        if k == b"shared"
    ]
    assert shared == list(range(1, threads * per_thread + 1))


def test_a_refused_append_fails_alone_and_the_stream_goes_on(client: RemoteClient) -> None:
    client.create_topic("t")
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
    client.create_topic("typed", schema=schema)
    client.append("t", [{"key": "a", "value": "1"}])
    stream = client._appends._stream
    assert stream is not None

    with pytest.raises(ConflictError) as conflict:
        client.append("t", [{"key": "a", "value": "2"}], expect={"a": 0})
    assert (conflict.value.key, conflict.value.expected, conflict.value.actual) == (b"a", 0, 1)
    with pytest.raises(ConflictError):
        client.append("t", [{"key": "a", "value": "2"}], expect_offset=7)
    with pytest.raises(SchemaViolation):
        client.append("typed", [{"key": "x", "value": {"id": "three"}}])
    with pytest.raises(odradek.TopicNotFound):
        client.append("nope", [{"value": "x"}])
    client.append("t", [{"value": "x"}], producer=("p", 0))
    with pytest.raises(SequenceError):
        client.append("t", [{"value": "x"}], producer=("p", 5))  # skips 1 to 4

    assert client._appends._stream is stream and stream.failure is None
    assert client.append("t", [{"key": "a", "value": "2"}], expect={"a": 1}).versions == {b"a": 2}
    assert client.append("typed", [{"value": {"id": 3}}]).count == 1
    assert client.describe_topic("t").next_offset == 3  # nothing of the refused ones


def test_refusals_among_concurrent_appends_fail_only_their_own(client: RemoteClient) -> None:
    client.create_topic("t")
    opened = _opens(client)
    client.append("t", [{"key": "taken", "value": "0"}])
    outcomes: dict[str, list[str]] = collections.defaultdict(list)
    start = threading.Barrier(8)

    def append(worker: int) -> None:
        start.wait()
        for index in range(30):
            try:
                if worker % 2:  # always a conflict: the key is at version 1
                    client.append("t", [{"key": "taken", "value": "x"}], expect={"taken": 0})
                else:
                    client.append("t", [{"key": f"w{worker}", "value": str(index)}])
                outcomes["ok"].append(f"{worker}")
            except ConflictError:
                outcomes["conflict"].append(f"{worker}")

    workers = [threading.Thread(target=append, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(set(outcomes["ok"])) == ["0", "2", "4", "6"] and len(outcomes["ok"]) == 4 * 30
    assert sorted(set(outcomes["conflict"])) == ["1", "3", "5", "7"] and len(outcomes["conflict"]) == 4 * 30
    assert client.describe_topic("t").next_offset == 1 + 4 * 30
    assert opened == [1]  # the refusals left the one stream open for everybody


def test_an_idempotent_retry_returns_the_original_result(client: RemoteClient) -> None:
    client.create_topic("t")
    first = client.append("t", [{"key": "a", "value": "1"}], producer=("billing", 0))
    client._appends.close()  # as if the stream broke: the retry goes over a new one
    client._appends._stop.clear()
    again = client.append("t", [{"key": "a", "value": "1"}], producer=("billing", 0))
    assert again.duplicate and (again.base_offset, again.count) == (first.base_offset, first.count)
    assert client.append("t", [{"value": "2"}], producer=("billing", 1)).base_offset == 1
    assert client.describe_topic("t").next_offset == 2


class _HeldDisk(Disk):
    """A disk whose fdatasync waits for the test while ``held`` is armed."""

    def __init__(self) -> None:
        self.armed = False
        self.release = threading.Event()
        self.syncing = threading.Event()
        self.syncs = 0

    def fdatasync(self, fd: int) -> None:
        if self.armed:
            self.syncing.set()
            self.release.wait(DEADLINE_SECONDS)
        self.syncs += 1
        super().fdatasync(fd)


def test_appends_that_arrive_during_an_fsync_are_written_meanwhile_and_share_the_next(
    tmp_path: Path,
) -> None:
    disk = _HeldDisk()
    engine = Engine(tmp_path / "data", disk=disk)
    service = FlightService(engine, "grpc://127.0.0.1:0")
    try:
        with odradek.connect(f"grpc://127.0.0.1:{service.port}") as client:
            client.create_topic("t")
            opened = _opens(client)
            client.append("t", [{"value": "warm"}])
            disk.armed = True
            results: list[AppendResult] = []
            first = threading.Thread(target=lambda: results.append(client.append("t", [{"value": "a"}])))
            first.start()
            assert disk.syncing.wait(DEADLINE_SECONDS)  # the first append's fsync is held
            others = [
                threading.Thread(target=lambda i=i: results.append(client.append("t", [{"value": f"{i}"}])))
                for i in range(8)
            ]
            for thread in others:
                thread.start()
            topic = engine._topic("t")
            _until(lambda: topic.log.next_offset == 10, "the appends sent during the fsync to be written")
            assert not results  # none is acknowledged before it is durable
            syncs_before = disk.syncs
            disk.armed = False
            disk.release.set()
            for thread in [first, *others]:
                thread.join(DEADLINE_SECONDS)
            assert sorted(r.base_offset for r in results) == list(range(1, 10))
            # the held fsync, then at most one more for the eight written meanwhile
            assert disk.syncs - syncs_before <= 2
            assert opened == [1]  # all of them over one stream
    finally:
        service.drain(5.0)
        engine.close()


class _HeldAppends:
    """Wraps a door's submit: appends are written, but their acknowledgement waits for
    the test (``release``); ``submitted`` counts the appends written so far."""

    def __init__(self, service: FlightService) -> None:
        self.release = threading.Event()
        self.submitted = 0
        submit = service._submit_append

        def held(topic: str, batch: pa.RecordBatch, options: messages.AppendOptions, size: int) -> Any:
            pending = submit(topic, batch, options, size)
            self.submitted += 1
            return _HeldPending(pending, self.release)

        service._submit_append = held  # type: ignore[method-assign]


class _HeldPending:
    def __init__(self, pending: Any, release: threading.Event) -> None:
        self._pending = pending
        self._release = release

    def wait(self) -> AppendResult:
        self._release.wait(DEADLINE_SECONDS)
        result: AppendResult = self._pending.wait()
        return result


def test_a_drain_answers_what_it_wrote_and_refuses_what_comes_next(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data")
    service = FlightService(engine, "grpc://127.0.0.1:0")
    held = _HeldAppends(service)
    client = odradek.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        client.create_topic("t")
        outcomes: list[object] = []

        def append(value: str) -> None:
            try:
                outcomes.append(client.append("t", [{"value": value}]))
            except Unavailable as exc:
                outcomes.append(exc)

        written = threading.Thread(target=append, args=("written",))
        written.start()
        _until(lambda: held.submitted == 1, "the append to be written")
        drained: list[bool] = []
        drainer = threading.Thread(target=lambda: drained.append(service.drain(DEADLINE_SECONDS)))
        drainer.start()
        _until(service._draining.is_set, "the drain to start")
        late = threading.Thread(target=append, args=("late",))
        late.start()
        held.release.set()
        written.join(DEADLINE_SECONDS)
        late.join(DEADLINE_SECONDS)
        drainer.join(DEADLINE_SECONDS)
        results = [o for o in outcomes if isinstance(o, AppendResult)]
        refusals = [o for o in outcomes if isinstance(o, Unavailable)]
        assert [r.base_offset for r in results] == [0] and len(refusals) == 1
        assert "shutting down" in str(refusals[0])
        assert drained == [True]
        assert engine.describe_topic("t").next_offset == 1  # the late one was not written
    finally:
        client.close()
        engine.close()


def test_a_batch_over_the_budget_is_refused_alone_and_a_full_budget_pushes_back(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data")
    one = to_input_batch([{"value": b"x" * 1000}], 1 << 30, "json").get_total_buffer_size()
    budget = ByteBudget(one + one // 2)  # room for one such append in flight, not two
    bounds = connections.FLIGHT.replace(request_seconds=0.2)
    service = FlightService(engine, "grpc://127.0.0.1:0", budget=budget, bounds=bounds)
    held = _HeldAppends(service)
    client = odradek.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        client.create_topic("t")
        with pytest.raises(RequestTooLarge):
            client.append("t", [{"value": b"y" * 10_000}])
        holding: list[AppendResult] = []
        first = threading.Thread(target=lambda: holding.append(client.append("t", [{"value": b"x" * 1000}])))
        first.start()
        _until(lambda: held.submitted == 1, "the first append to hold its bytes")
        # No room comes free while the first is held: the second waits, then is refused.
        with pytest.raises(Unavailable, match="in-flight budget"):
            client.append("t", [{"value": b"x" * 1000}])
        held.release.set()
        first.join(DEADLINE_SECONDS)
        assert [r.base_offset for r in holding] == [0]
        assert client.append("t", [{"value": b"x" * 1000}]).base_offset == 1
        assert budget.in_use_bytes == 0
    finally:
        client.close()
        service.drain(5.0)
        engine.close()


def test_many_threads_fit_in_one_call_slot(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data")
    bounds = connections.FLIGHT.replace(connections_per_peer_max=2)  # the stream and one call
    service = FlightService(engine, "grpc://127.0.0.1:0", bounds=bounds)
    client = odradek.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        client.create_topic("t")
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def append() -> None:
            start.wait()
            try:
                for _ in range(25):
                    client.append("t", [{"value": "x"}])
            except Unavailable as exc:
                errors.append(exc)

        workers = [threading.Thread(target=append) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert client.describe_topic("t").next_offset == 200
    finally:
        client.close()
        service.drain(5.0)
        engine.close()


def test_a_server_without_append_streams_is_served_over_doput(
    server: FlightService, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An older server takes every DoExchange for a consumer group and refuses the command.
    monkeypatch.setattr(flight_server.messages, "is_append_stream", lambda raw: False)
    with odradek.connect(url) as client:
        client.create_topic("t")
        assert client.append("t", [{"key": "a", "value": "1"}]).versions == {b"a": 1}
        assert client._appends.supported is False
        with pytest.raises(ConflictError):
            client.append("t", [{"key": "a", "value": "2"}], expect={"a": 0})
        assert client.append("t", [{"key": "a", "value": "2"}], expect={"a": 1}).base_offset == 1


def test_the_wire_tags_each_answer_and_refuses_in_band(url: str, engine: Engine) -> None:
    engine.create_topic("t")
    plain = flight.connect(url)
    command = messages.encode_append_stream_command(4)
    writer, reader = plain.do_exchange(flight.FlightDescriptor.for_command(command))
    writer.begin(INPUT_SCHEMA)
    greeting = reader.read_chunk().app_metadata.to_pybytes()
    assert messages.decode_append_stream_ready(greeting) == 4
    batch = to_input_batch([{"key": b"k", "value": b"v"}], 1 << 20, "json")
    requests = [
        messages.encode_append_request(7, "t"),
        messages.encode_append_request(8, "t", expect={b"k": 5}),
        b'{"id": 9, "topic": "t", "producer": "not a pair"}',
        messages.encode_append_request(10, "t", expect={b"k": 1}),
    ]
    for metadata in requests:
        writer.write_with_metadata(batch, pa.py_buffer(metadata))
    answers = dict(
        messages.decode_append_answer(reader.read_chunk().app_metadata.to_pybytes()) for _ in requests
    )
    assert isinstance(answers[7], AppendResult) and answers[7].versions == {b"k": 1}
    assert isinstance(answers[8], ConflictError) and answers[8].actual == 1
    assert isinstance(answers[9], InvalidRequest)
    assert isinstance(answers[10], AppendResult) and answers[10].base_offset == 1
    # A request without an id cannot be answered: the stream ends with the error.
    writer.write_with_metadata(batch, pa.py_buffer(b'{"topic": "t"}'))
    with pytest.raises(flight.FlightServerError) as ended:
        reader.read_chunk()
    assert isinstance(messages.decode_error(ended.value.extra_info), InvalidRequest)
    with contextlib.suppress(flight.FlightServerError):  # close() reports the status again
        writer.close()
    assert engine.describe_topic("t").next_offset == 2


def test_the_async_client_shares_the_stream(url: str) -> None:
    async def run() -> list[AppendResult]:
        client = odradek.connect_async(url)
        try:
            await client.create_topic("t")
            assert isinstance(client.sync, RemoteClient)
            opened = _opens(client.sync)

            async def task(worker: int) -> list[AppendResult]:
                return [await client.append("t", [{"key": f"k{worker}", "value": "x"}]) for _ in range(10)]

            per_task = await asyncio.gather(*(task(w) for w in range(32)))
            assert opened == [1]
            for worker, results in enumerate(per_task):
                assert [r.versions[f"k{worker}".encode()] for r in results] == list(range(1, 11))
            return [r for results in per_task for r in results]
        finally:
            await client.close()

    results = asyncio.run(run())
    assert sorted(r.base_offset for r in results) == list(range(320))


_HOLDING_SERVER = """
import sys, threading
from odradek.engine import Engine
from odradek.protocols.flight.server import FlightService

engine = Engine(sys.argv[1])
service = FlightService(engine, "grpc://127.0.0.1:0")
submit = service._submit_append
count = 0
lock = threading.Lock()
never = threading.Event()


class Held:
    def wait(self):
        never.wait()


def held(topic, batch, options, size):
    global count
    submit(topic, batch, options, size)  # written to the log; its acknowledgement never comes
    with lock:
        count += 1
        print("submitted", count, flush=True)
    return Held()


service._submit_append = held
print("port", service.port, flush=True)
never.wait()
"""


def test_a_server_that_dies_fails_every_pending_append_and_a_retry_is_written_once(tmp_path: Path) -> None:
    script = tmp_path / "holding_server.py"
    script.write_text(_HOLDING_SERVER)
    data = tmp_path / "data"
    Engine(data).close()
    child = subprocess.Popen(
        [sys.executable, str(script), str(data)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(child.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        _until(lambda: any(line.startswith("port") for line in lines), "the server to start")
        port = int(next(line for line in lines if line.startswith("port")).split()[1])
        client = odradek.connect(f"grpc://127.0.0.1:{port}")
        client.create_topic("t")
        outcomes: dict[int, object] = {}

        def append(worker: int) -> None:
            try:
                outcomes[worker] = client.append("t", [{"value": f"{worker}"}], producer=(f"p{worker}", 0))
            except Unavailable as exc:
                outcomes[worker] = exc

        workers = [threading.Thread(target=append, args=(w,)) for w in range(6)]
        for worker in workers:
            worker.start()
        _until(lambda: "submitted 6\n" in lines, "six appends to be written and waiting")
        child.kill()
        for worker in workers:
            worker.join(DEADLINE_SECONDS)
        assert sorted(outcomes) == list(range(6))
        for outcome in outcomes.values():
            assert isinstance(outcome, Unavailable), outcome
            assert "may or may not have been written" in str(outcome)
            assert "same producer id and sequence" in str(outcome)
        client.close()
    finally:
        child.kill()
        child.wait()
        reader.join()
        child.stdout.close()  # type: ignore[union-attr]

    engine = Engine(data)  # the appends reached the log before the server died
    service = FlightService(engine, "grpc://127.0.0.1:0")
    try:
        with odradek.connect(f"grpc://127.0.0.1:{service.port}") as client:
            retries = [client.append("t", [{"value": f"{w}"}], producer=(f"p{w}", 0)) for w in range(6)]
            assert all(retry.duplicate for retry in retries)
            assert sorted(retry.base_offset for retry in retries) == list(range(6))
            assert client.describe_topic("t").next_offset == 6
    finally:
        service.drain(5.0)
        engine.close()


def test_closing_the_client_fails_its_pending_appends(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data")
    service = FlightService(engine, "grpc://127.0.0.1:0")
    held = _HeldAppends(service)
    client = odradek.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        client.create_topic("t")
        outcomes: list[BaseException] = []

        def append() -> None:
            try:
                client.append("t", [{"value": "x"}])
            except odradek.OdradekError as exc:
                outcomes.append(exc)

        pending = [threading.Thread(target=append) for _ in range(3)]
        for thread in pending:
            thread.start()
        _until(lambda: held.submitted == 3, "three appends in flight")
        client.close()
        for thread in pending:
            thread.join(DEADLINE_SECONDS)
        assert len(outcomes) == 3
        assert all(isinstance(o, odradek.ClosedError) and "may or may not" in str(o) for o in outcomes)
        with pytest.raises(odradek.ClosedError):
            client.append("t", [{"value": "y"}])
    finally:
        held.release.set()
        service.drain(5.0)
        engine.close()
