"""One raw connection to a Kafka door, speaking the protocol with the door's own codec:
the helper of the tests that send Kafka requests by hand."""

from __future__ import annotations

import socket
import struct
from typing import Any

from odradek.protocols.kafka.codec.api import decode_response, encode_request


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
