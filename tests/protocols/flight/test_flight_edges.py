"""The network edge: the server survives whatever arrives and keeps serving.

Goal: garbage bytes, truncated and oversized messages, clients killed in the middle of
a write or a follow, and a thousand idle connections neither crash the server nor
leave it unable to serve; a vanished reader's read ends instead of holding a thread.
Method: an in-process server on a loopback port; raw sockets for garbage and idle
connections, plain Flight calls for malformed requests, and client subprocesses that
are SIGKILLed mid-call. After each abuse a normal client must still work.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek import limits
from odradek.engine import Engine
from odradek.protocols.flight.server import FlightService

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _still_serves(url: str) -> None:
    with odradek.connect(url, timeout=10) as client:
        client.create_topic("alive", exist_ok=True)
        result = client.append("alive", [{"value": b"ok"}])
        assert client.fetch("alive", result.base_offset)[0].column("value").to_pylist() == [b"ok"]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _error_code(caught: pytest.ExceptionInfo[flight.FlightError]) -> str:
    return str(json.loads(caught.value.extra_info)["code"])


def test_garbage_bytes_on_the_port(url: str) -> None:
    payloads = [
        os.urandom(65536),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        HTTP2_PREFACE + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + os.urandom(100),
        HTTP2_PREFACE + b"\x00\x10",  # a frame header cut short
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello to a plaintext port
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as raw:
            raw.sendall(payload)
            raw.settimeout(0.5)
            try:
                raw.recv(1024)
            except (TimeoutError, ConnectionError):
                pass
    _still_serves(url)


def test_malformed_requests_get_clear_errors(url: str) -> None:
    plain = flight.connect(url)
    with pytest.raises(flight.FlightServerError) as caught:
        plain.do_get(flight.Ticket(b"\x00\x01 not json")).read_all()
    assert _error_code(caught) == "invalid_request"
    huge = b'{"pattern": "' + b"a" * limits.flight_command_bytes_max + b'"}'
    with pytest.raises(flight.FlightServerError) as caught:
        plain.do_get(flight.Ticket(huge)).read_all()
    assert _error_code(caught) == "request_too_large"
    with pytest.raises(flight.FlightServerError) as caught:
        list(plain.do_action(flight.Action("create_topic", b"{{{{")))
    assert _error_code(caught) == "invalid_request"
    with pytest.raises(flight.FlightServerError) as caught:
        plain.get_flight_info(flight.FlightDescriptor.for_command(b"garbage"))
    assert _error_code(caught) == "invalid_request"
    odradek.connect(url).create_topic("t")
    wrong = pa.RecordBatch.from_pydict({"value": pa.array([1, 2])})  # values must be binary
    writer, reader = plain.do_put(flight.FlightDescriptor.for_path("t"), wrong.schema)
    with pytest.raises(flight.FlightServerError) as caught:
        writer.write_batch(wrong)
        writer.done_writing()
        reader.read()
        writer.close()
    assert _error_code(caught) == "invalid_request"
    _still_serves(url)


def test_oversized_batch_is_refused(url: str) -> None:
    odradek.connect(url).create_topic("t")
    plain = flight.connect(url)
    big = pa.RecordBatch.from_pydict({"value": [b"x" * (1 << 20)] * 66})  # over flight_message_bytes_max
    assert big.nbytes > limits.flight_message_bytes_max
    writer, reader = plain.do_put(flight.FlightDescriptor.for_path("t"), big.schema)
    with pytest.raises(flight.FlightServerError) as caught:
        writer.write_batch(big)
        writer.done_writing()
        reader.read()
        writer.close()
    assert _error_code(caught) == "request_too_large"
    assert odradek.connect(url).describe_topic("t").next_offset == 0
    _still_serves(url)


_WRITER = """
import sys, pyarrow as pa, pyarrow.flight as flight
plain = flight.connect(sys.argv[1])
batch = pa.RecordBatch.from_pydict({"value": [b"x" * 1000] * 1000})
writer, reader = plain.do_put(flight.FlightDescriptor.for_path("t"), batch.schema)
while True:
    writer.write_batch(batch)
    reader.read()
    print("acked", flush=True)
"""

_FOLLOWER = """
import sys, odradek
for batch in odradek.connect(sys.argv[1]).read("t", start="earliest", follow=True):
    print("batch", flush=True)
"""


def _spawn_until(script: str, url: str, line: str, count: int) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for _ in range(count):
        assert process.stdout.readline().strip() == line
    return process


def test_writer_killed_mid_stream(url: str) -> None:
    odradek.connect(url).create_topic("t")
    process = _spawn_until(_WRITER, url, "acked", 5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.stdout is not None
    process.stdout.close()
    with odradek.connect(url) as client:
        records = client.describe_topic("t").next_offset
        assert records >= 5000 and records % 1000 == 0  # whole appends only
        assert sum(batch.num_rows for batch in client.read("t", wait=0)) == records
    _still_serves(url)


@pytest.fixture
def active_reads(engine: Engine) -> Iterator[list[int]]:
    """Counts the engine reads in progress, to see a vanished reader's read end."""
    count = [0]
    original = engine.read

    def read(*args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        batches = original(*args, **kwargs)

        def counted() -> Iterator[pa.RecordBatch]:
            count[0] += 1
            try:
                yield from batches
            finally:
                count[0] -= 1

        return counted()

    engine.read = read  # type: ignore[method-assign]
    yield count
    engine.read = original  # type: ignore[method-assign]


def test_follower_killed_mid_read_releases_its_read(url: str, active_reads: list[int]) -> None:
    with odradek.connect(url) as client:
        client.create_topic("t")
        client.append("t", [{"value": b"x"}])
    process = _spawn_until(_FOLLOWER, url, "batch", 1)
    assert active_reads[0] == 1
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.stdout is not None
    process.stdout.close()
    deadline = time.monotonic() + 10
    while active_reads[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert active_reads[0] == 0
    _still_serves(url)


def test_a_read_left_early_is_cancelled(url: str, active_reads: list[int]) -> None:
    with odradek.connect(url) as client:
        client.create_topic("t")
        client.append("t", [{"value": b"x"}])
        with client.read("t", follow=True) as stream:
            assert next(stream).num_rows == 1
        deadline = time.monotonic() + 10
        while active_reads[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert active_reads[0] == 0


def test_a_thousand_idle_connections(url: str) -> None:
    connections = []
    try:
        for index in range(1000):
            raw = socket.create_connection(("127.0.0.1", _port(url)), timeout=5)
            if index % 2:
                raw.sendall(HTTP2_PREFACE)  # half of them at least begin to speak HTTP/2
            connections.append(raw)
        _still_serves(url)
    finally:
        for raw in connections:
            raw.close()
    _still_serves(url)


def test_drain_refuses_new_calls(engine: Engine) -> None:
    service = FlightService(engine, "grpc://127.0.0.1:0")
    url = f"grpc://127.0.0.1:{service.port}"
    odradek.connect(url).create_topic("t")
    assert service.drain(5.0)
    with pytest.raises(odradek.Unavailable):
        odradek.connect(url, timeout=2).list_topics()
