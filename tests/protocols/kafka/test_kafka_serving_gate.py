"""A cluster owner's Kafka door answers only while the agent owns the data.

Goal: decision 0013's rule that every door checks ownership before serving a call holds
for the Kafka door: an owner that stopped owning (its lease's safe window closed, or a
paused owner waking up after a new owner took over) must not answer Metadata naming
itself the leader (a chaos run saw librdkafka stall on such an answer); it closes the
connection instead, and the client looks for the leader again.
Method: a real Kafka listener with a ``serving`` check the test flips; raw ApiVersions
requests on a socket.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener


def _api_versions(connection: socket.socket, correlation: int) -> bytes:
    client = b"gate-test"
    header = struct.pack(">hhih", 18, 0, correlation, len(client)) + client
    connection.sendall(struct.pack(">i", len(header)) + header)
    prefix = connection.recv(4, socket.MSG_WAITALL)
    if len(prefix) < 4:
        return b""
    return connection.recv(struct.unpack(">i", prefix)[0], socket.MSG_WAITALL)


def test_a_door_that_no_longer_owns_closes_the_connection(tmp_path: Path) -> None:
    owning = [True]
    node = Node.open(os.fspath(tmp_path / "data"), fsync=False)
    listener = start_kafka_listener(node, "127.0.0.1", 0, serving=lambda: owning[0])
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
            assert struct.unpack(">i", _api_versions(connection, 1)[:4])[0] == 1
            owning[0] = False
            assert _api_versions(connection, 2) == b""  # closed, unanswered
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
            assert _api_versions(connection, 3) == b""
        owning[0] = True
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as connection:
            assert struct.unpack(">i", _api_versions(connection, 4)[:4])[0] == 4
    finally:
        listener.close()
        node.close()
