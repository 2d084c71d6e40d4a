"""A bytes producer id over Flight survives a server restart.

Goal: an idempotent append with a bytes producer id, acknowledged by a server that is
then stopped and started again on the same data directory, is answered as a
duplicate when a new client retries it (its original offsets, nothing written), and
the producer's next sequence follows on; the str id of the same text stays another
producer across the restart too.

Method: a node and an in-process Flight server on a free loopback port, drained and
closed, then a new node and server on the same directory; fsync stays on, as
``odradek serve`` runs.
"""

from __future__ import annotations

from pathlib import Path

import odradek
from odradek.node import Node
from odradek.protocols.flight.server import FlightService


class Server:
    def __init__(self, data: Path) -> None:
        self.node = Node.open(data)
        self.service = FlightService(self.node, "grpc://127.0.0.1:0")
        self.url = f"grpc://127.0.0.1:{self.service.port}"

    def stop(self) -> None:
        self.service.drain(5.0)
        self.node.close()


def test_a_bytes_producer_id_dedupes_across_a_server_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    try:
        with odradek.connect(server.url) as client:
            client.create_topic("t")
            client.append("t", [{"value": b"before"}])
            first = client.append("t", [{"key": b"k", "value": b"v"}], producer=(b"\xc3\x28id", 0))
    finally:
        server.stop()
    server = Server(tmp_path / "data")
    try:
        with odradek.connect(server.url) as client:
            retry = client.append("t", [{"key": b"k", "value": b"v"}], producer=(b"\xc3\x28id", 0))
            assert retry.duplicate is True
            assert (retry.base_offset, retry.count, dict(retry.versions)) == (1, 1, {b"k": 1})
            assert first.base_offset == 1
            following = client.append("t", [{"value": b"next"}], producer=(b"\xc3\x28id", 1))
            assert (following.base_offset, following.duplicate) == (2, False)
            assert client.append("t", [{"value": b"str"}], producer=("\xc3\x28id", 0)).duplicate is False
            assert client.describe_topic("t").next_offset == 4
    finally:
        server.stop()
