"""One raw connection to a Kafka door, speaking the protocol with the door's own codec:
the helper of the tests that send Kafka requests by hand."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from odradek.protocols.kafka.codec.api import decode_response, encode_request

W = TypeVar("W", bound="Wire")


class Wire:
    """Requests on one connection to ``127.0.0.1:port``, their correlation ids counted."""

    def __init__(self, port: int, *, timeout: float = 10.0, client_id: str | None = "odradek") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.client_id = client_id
        self.correlation = 0

    def send(self, api_key: int, version: int, body: Any) -> int:
        """Send a request; return its correlation id."""
        self.correlation += 1
        self.sock.sendall(encode_request(api_key, version, self.correlation, body, client_id=self.client_id))
        return self.correlation

    def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        """The next response: (correlation id, body)."""
        size = struct.unpack(">i", self._exactly(4))[0]
        return decode_response(api_key, version, self._exactly(size))

    def call(self, api_key: int, version: int, body: Any) -> Any:
        """Send a request and return its response's body (checked to answer it)."""
        sent = self.send(api_key, version, body)
        correlation, response = self.receive(api_key, version)
        assert correlation == sent
        return response

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the door closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def door_settled(door: Any) -> None:
    """Wait for the commits the door applies in the background (EndTxn is answered once
    a commit is decided, its records are appended after it: decision 0016)."""
    broker = door.listener.listener.broker
    if broker is not None:
        assert broker.transactions.wait_applied(30.0), "a commit was not applied within 30 s"


def door_values(door: Any, topic: str) -> list[bytes]:
    """Every value of ``topic`` as the door's engine holds it, in offset order, once the
    door's commits are applied."""
    door_settled(door)
    batches = door.engine.fetch(topic, 0)
    return [value for batch in batches for value in batch.column("value").to_pylist()]


@contextlib.contextmanager
def connections(make: Callable[[], W]) -> Iterator[Callable[[], W]]:
    """``connect()``: a new connection made by ``make``; all closed at the end."""
    wires: list[W] = []

    def connect() -> W:
        wires.append(make())
        return wires[-1]

    try:
        yield connect
    finally:
        for wire in wires:
            wire.close()
