"""Hostile peers against every door: what one peer can make a door hold stays bounded.

Goal: on the Kafka door a partial frame is dropped at its deadline and its bytes leave
the in-flight budget, idle connections are closed, a connection over the door's cap
or over its peer's cap is refused while another peer is served, and a connection
waits (is not read) while the budget is exhausted; on the Flight door a batch over the
budget or over the message limit is refused with a clear error and the server keeps
serving, and calls over the cap are refused until one ends; the metrics endpoint's
threads stay bounded under many idle connections; slow-loris and idle connections to
the Schema Registry are dropped while it keeps answering.
Method: real listeners in-process on loopback ports, with short timeouts and small
caps set through their bounds (as ``odradek serve`` sets them from its settings), and
raw sockets as the hostile peers. A second peer address is 127.0.0.2 (every 127/8
address is local on Linux). Waits poll a condition against a generous deadline; no
assertion depends on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek import limits
from odradek.budget import ByteBudget
from odradek.engine import Engine
from odradek.errors import RequestTooLarge
from odradek.protocols import connections
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.protocols.metrics import Metrics
from odradek.protocols.registry import start_registry_listener
from odradek.protocols.registry.server import RegistryListener

# Generous: a loaded machine may take a while; no assertion is about speed.
deadline_seconds = 30.0
# Short bounds, so that the dropping is seen in a test's time (set as serve sets them).
short_request_seconds = 0.5
short_idle_seconds = 0.5
other_peer = "127.0.0.2"

KiB = 1024
MiB = 1024 * KiB


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(deadline_seconds)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _answers_until_closed(sockets: list[socket.socket], expected: int) -> list[bytes]:
    """What each of ``sockets`` received until it was closed, for the first ``expected``
    of them to be closed (the others stay open)."""
    received = {sock: b"" for sock in sockets}
    answers: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + deadline_seconds
        while len(answers) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(answers)} of {expected} connections were closed")
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk
                else:
                    selector.unregister(sock)
                    answers.append(received[sock])
    return answers


def _bounds(defaults: connections.DoorLimits, **changes: float) -> connections.DoorLimits:
    return dataclasses.replace(defaults, **changes)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(tmp_path / "data", fsync=False)
    yield engine
    engine.close()


# -- Kafka door ------------------------------------------------------------------------------


def _api_versions(correlation_id: int) -> bytes:
    """An ApiVersions v0 request frame (api key 18, no client id, empty body)."""
    body = struct.pack(">hhih", 18, 0, correlation_id, -1)
    return struct.pack(">i", len(body)) + body


def _answered(sock: socket.socket, correlation_id: int) -> bool:
    sock.sendall(_api_versions(correlation_id))
    head = b""
    while len(head) < 8:
        chunk = sock.recv(8 - len(head))
        if not chunk:
            return False
        head += chunk
    size, answered_id = struct.unpack(">ii", head)
    remaining = size - 4
    while remaining:
        remaining -= len(sock.recv(min(remaining, 65536)))
    return answered_id == correlation_id


@dataclasses.dataclass
class KafkaDoor:
    listener: KafkaListenerHandle
    budget: ByteBudget

    @property
    def port(self) -> int:
        return self.listener.port

    @property
    def slots(self) -> connections.ConnectionSlots:
        return self.listener.listener.slots


@pytest.fixture
def kafka(engine: Engine) -> Iterator[Callable[..., KafkaDoor]]:
    started: list[KafkaListenerHandle] = []

    def start(budget_bytes: int = 16 * MiB, **changes: float) -> KafkaDoor:
        budget = ByteBudget(budget_bytes)
        bounds = _bounds(connections.KAFKA, **changes)
        listener = start_kafka_listener(engine, "127.0.0.1", 0, bounds=bounds, budget=budget)
        started.append(listener)
        return KafkaDoor(listener, budget)

    yield start
    for listener in started:
        listener.close()


def test_kafka_partial_frame_is_dropped_at_its_deadline_and_its_bytes_freed(
    kafka: Callable[..., KafkaDoor],
) -> None:
    door = kafka(request_seconds=short_request_seconds)
    with _connect(door.port) as hostile:
        hostile.sendall(struct.pack(">i", 1 * MiB) + b"x" * 1000)  # 1 MiB declared, 1000 bytes sent
        _wait_until(lambda: door.budget.in_use_bytes == 1 * MiB, "the frame's size is reserved")
        assert _read_until_closed(hostile) == b""  # dropped, without an answer
    _wait_until(lambda: door.budget.in_use_bytes == 0, "the partial frame's bytes are released")
    with _connect(door.port) as client:
        assert _answered(client, 7)  # the door serves others


def test_kafka_idle_connection_is_closed(kafka: Callable[..., KafkaDoor]) -> None:
    door = kafka(idle_seconds=short_idle_seconds)
    with _connect(door.port) as idle:
        assert _answered(idle, 1)
        assert _read_until_closed(idle) == b""
    _wait_until(lambda: door.slots.open == 0, "the idle connection's slot is free")


def test_kafka_client_that_reads_no_responses_is_dropped(kafka: Callable[..., KafkaDoor]) -> None:
    door = kafka(idle_seconds=short_idle_seconds)
    hostile = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up soon
    hostile.settimeout(deadline_seconds)
    hostile.connect(("127.0.0.1", door.port))
    requests = b"".join(_api_versions(number) for number in range(100_000))

    def flood() -> None:
        with contextlib.suppress(OSError):  # until the server drops the connection
            hostile.sendall(requests)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    _wait_until(lambda: door.slots.open == 1, "the connection is served")
    # The door stops reading once responses wait unwritten, and drops the connection once
    # its client takes no response bytes for the idle timeout.
    _wait_until(lambda: door.slots.open == 0, "the connection is dropped")
    sender.join(deadline_seconds)
    hostile.close()
    with _connect(door.port) as client:
        assert _answered(client, 5)


def test_kafka_connection_over_the_door_cap_is_refused(
    kafka: Callable[..., KafkaDoor], caplog: pytest.LogCaptureFixture
) -> None:
    door = kafka(connections_max=2)
    held = [_connect(door.port) for _ in range(2)]
    for number, sock in enumerate(held):
        assert _answered(sock, number)
    with caplog.at_level(logging.WARNING, "odradek.connections"), _connect(door.port) as extra:
        assert _read_until_closed(extra) == b""
    assert any(
        "connections_max=2" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records
    )
    held.pop().close()
    _wait_until(lambda: door.slots.open == 1, "a slot is free again")
    with _connect(door.port) as later:
        assert _answered(later, 9)
    held[0].close()


def test_kafka_peer_over_its_cap_is_refused_while_another_peer_is_served(
    kafka: Callable[..., KafkaDoor], caplog: pytest.LogCaptureFixture
) -> None:
    door = kafka(connections_per_peer_max=1)
    with _connect(door.port) as first:
        assert _answered(first, 1)
        with caplog.at_level(logging.WARNING, "odradek.connections"), _connect(door.port) as second:
            assert _read_until_closed(second) == b""
        assert any("connections_per_peer_max=1" in r.getMessage() for r in caplog.records)
        with _connect(door.port, source=other_peer) as elsewhere:
            assert _answered(elsewhere, 2)


def test_kafka_connection_is_not_read_while_the_budget_is_exhausted(
    kafka: Callable[..., KafkaDoor],
) -> None:
    door = kafka(budget_bytes=1 * MiB)
    held = door.budget.reserve(1 * MiB, timeout=0)  # as if other requests held it all
    with _connect(door.port) as client:
        client.sendall(_api_versions(3))
        _wait_until(lambda: door.budget.waiting == 1, "the frame waits for room")
        held.release()
        head = client.recv(8)
        assert struct.unpack(">ii", head)[1] == 3
    _wait_until(lambda: door.budget.in_use_bytes == 0, "the frame's bytes are released")


def test_kafka_frame_larger_than_the_whole_budget_is_refused(
    kafka: Callable[..., KafkaDoor], caplog: pytest.LogCaptureFixture
) -> None:
    door = kafka(budget_bytes=1 * KiB)
    with caplog.at_level(logging.WARNING), _connect(door.port) as client:
        client.sendall(struct.pack(">i", 2 * KiB))
        assert _read_until_closed(client) == b""
    assert any("in-flight budget of 1024 bytes" in r.getMessage() for r in caplog.records)
    assert door.budget.in_use_bytes == 0


# -- Flight door ------------------------------------------------------------------------------


@pytest.fixture
def flight_door(engine: Engine) -> Iterator[Callable[..., FlightService]]:
    started: list[FlightService] = []

    def start(budget_bytes: int = 16 * MiB, **changes: float) -> FlightService:
        service = FlightService(
            engine,
            "grpc://127.0.0.1:0",
            bounds=_bounds(connections.FLIGHT, **changes),
            budget=ByteBudget(budget_bytes),
        )
        started.append(service)
        return service

    yield start
    for service in started:
        service.drain(deadline_seconds)


def _raw_put(port: int, topic: str, batch: pa.RecordBatch) -> None:
    client = flight.connect(f"grpc://127.0.0.1:{port}")
    try:
        writer, reader = client.do_put(flight.FlightDescriptor.for_path(topic), batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()
    finally:
        client.close()


def _values_batch(size_bytes: int) -> pa.RecordBatch:
    return pa.record_batch({"value": pa.array([b"x" * size_bytes], pa.binary())})


def test_flight_batch_over_the_budget_is_refused_clearly_and_the_door_keeps_serving(
    engine: Engine, flight_door: Callable[..., FlightService]
) -> None:
    service = flight_door(budget_bytes=1 * MiB)
    engine.create_topic("big")
    client = odradek.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        with pytest.raises(RequestTooLarge, match="in-flight budget of 1048576 bytes"):
            client.append("big", [{"value": b"x" * (2 * MiB)}])
        assert client.append("big", [{"value": b"small"}]).base_offset == 0
    finally:
        client.close()
    _wait_until(lambda: service.budget.in_use_bytes == 0, "the budget is whole again")


def test_flight_message_over_the_message_limit_is_refused_and_the_door_keeps_serving(
    engine: Engine, flight_door: Callable[..., FlightService], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = flight_door()
    engine.create_topic("big")
    monkeypatch.setattr(limits, "flight_message_bytes_max", 1 * MiB)
    with pytest.raises(flight.FlightServerError, match="over the limit of 1048576 bytes per message"):
        _raw_put(service.port, "big", _values_batch(2 * MiB))
    _raw_put(service.port, "big", _values_batch(100))
    assert engine.describe_topic("big").next_offset == 1
    assert service.budget.in_use_bytes == 0


def test_flight_calls_over_the_cap_are_refused_until_one_ends(
    engine: Engine, flight_door: Callable[..., FlightService], caplog: pytest.LogCaptureFixture
) -> None:
    service = flight_door(connections_max=1)
    engine.create_topic("t")
    client = flight.connect(f"grpc://127.0.0.1:{service.port}")
    try:
        ticket = flight.Ticket(json.dumps({"pattern": "t", "start": "earliest", "follow": True}).encode())
        following = client.do_get(ticket)  # a read that stays open holds the one slot
        _wait_until(lambda: service.slots.open == 1, "the read holds its slot")
        with caplog.at_level(logging.WARNING, "odradek.connections"):
            with pytest.raises(flight.FlightUnavailableError, match="connections_max=1"):
                list(client.do_action(flight.Action("ping", b"{}")))
        following.cancel()
        _wait_until(lambda: service.slots.open == 0, "the read's slot is given back")
        assert list(client.do_action(flight.Action("ping", b"{}")))
    finally:
        client.close()


# -- metrics endpoint ---------------------------------------------------------------------------


def test_metrics_threads_stay_bounded_under_many_idle_connections(engine: Engine) -> None:
    bounds = _bounds(connections.METRICS, connections_max=8, connections_per_peer_max=4)
    listener = Metrics(engine).serve("127.0.0.1", 0, bounds)
    try:
        threads_before = threading.active_count()
        idle = [_connect(listener.port) for _ in range(200)]
        try:
            _wait_until(lambda: listener.server.slots.open == 4, "four connections hold their slots")
            # The refused ones are told why, then closed, without a thread of their own.
            answers = _answers_until_closed(idle, expected=196)
            assert all(answer.startswith(b"HTTP/1.1 503") for answer in answers)
            assert b"connections_per_peer_max=4" in answers[0]
            assert threading.active_count() <= threads_before + 4
            # Another peer is still served.
            with _connect(listener.port, source=other_peer) as scrape:
                scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = _read_until_closed(scrape)
            assert answer.startswith(b"HTTP/1.1 200") and b"odradek_topic_records" in answer
        finally:
            for sock in idle:
                sock.close()
    finally:
        listener.close()


# -- Schema Registry door -------------------------------------------------------------------------


@pytest.fixture
def registry_door(engine: Engine) -> Iterator[Callable[..., RegistryListener]]:
    started: list[RegistryListener] = []

    def start(**changes: float) -> RegistryListener:
        bounds = _bounds(connections.REGISTRY, **changes)
        listener = start_registry_listener(engine, str(engine.path), "127.0.0.1", 0, bounds=bounds)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.close()


def _registry_answers(listener: RegistryListener, source: str = "127.0.0.1") -> bool:
    connection = http.client.HTTPConnection(
        listener.host, listener.port, timeout=deadline_seconds, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/subjects")
        return connection.getresponse().status == 200
    finally:
        connection.close()


def test_registry_slow_loris_connections_are_dropped_and_the_registry_keeps_answering(
    registry_door: Callable[..., RegistryListener],
) -> None:
    listener = registry_door(request_seconds=short_request_seconds, idle_seconds=deadline_seconds)
    trickling = [_connect(listener.port) for _ in range(8)]
    closed: list[socket.socket] = []
    request = b"GET /subjects HTTP/1.1\r\nHost: x\r\nX-Slow: "

    def trickle(sock: socket.socket) -> None:
        """One byte at a time, never finishing the request, until the server closes."""
        try:
            position = 0
            while True:
                sock.sendall(request[position % len(request) : position % len(request) + 1])
                position += 1
                time.sleep(0.01)  # well inside the idle timeout: only the request deadline ends it
        except OSError:
            closed.append(sock)

    threads = [threading.Thread(target=trickle, args=(sock,), daemon=True) for sock in trickling]
    for thread in threads:
        thread.start()
    assert _registry_answers(listener)  # answered while the slow clients hold their threads
    for sock in trickling:
        assert _read_until_closed(sock) == b""  # dropped at the deadline, with no answer
    for thread in threads:
        thread.join(deadline_seconds)
    assert len(closed) == len(trickling)
    _wait_until(lambda: listener.server.slots.open == 0, "every slow client's slot is free")
    assert _registry_answers(listener)
    for sock in trickling:
        sock.close()


def test_registry_idle_keep_alive_connection_is_closed(
    registry_door: Callable[..., RegistryListener],
) -> None:
    listener = registry_door(idle_seconds=short_idle_seconds)
    connection = http.client.HTTPConnection(listener.host, listener.port, timeout=deadline_seconds)
    connection.request("GET", "/subjects")
    assert connection.getresponse().read() == b"[]"
    idle = connection.sock
    assert idle is not None
    assert _read_until_closed(idle) == b""  # closed by the server once idle
    connection.close()
    _wait_until(lambda: listener.server.slots.open == 0, "the idle connection's slot is free")


def test_registry_peer_over_its_cap_gets_503_while_another_peer_is_served(
    registry_door: Callable[..., RegistryListener],
) -> None:
    listener = registry_door(connections_per_peer_max=2)
    held = [
        http.client.HTTPConnection(listener.host, listener.port, timeout=deadline_seconds) for _ in range(2)
    ]
    for connection in held:
        connection.request("GET", "/subjects")
        assert connection.getresponse().read() == b"[]"
    with _connect(listener.port) as extra:
        extra.sendall(b"GET /subjects HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = _read_until_closed(extra).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert "connections_per_peer_max=2" in json.loads(body)["message"]
    assert _registry_answers(listener, source=other_peer)
    for connection in held:
        connection.close()
