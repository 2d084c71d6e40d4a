"""The remote client refuses clearly when a server does not know snapshots.

Goal: ``read_key(..., from_snapshot=True)`` against a server that predates snapshots
(it ignores the ticket's ``from_snapshot``) raises InvalidRequest instead of returning
the key's plain stream as if it were one from a snapshot. Method: an in-process Flight
server whose ``read_key`` ticket decoder drops ``from_snapshot``, as an older one does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek.errors import InvalidRequest
from odradek.node import Node
from odradek.protocols.flight import messages
from odradek.protocols.flight.server import FlightService


def test_a_server_without_snapshots_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decode = messages._TICKET_DECODERS[messages.KIND_READ_KEY]

    def older(document: dict[str, Any]) -> messages.ReadKeyRequest:
        return dataclasses.replace(decode(document), from_snapshot=False)

    monkeypatch.setitem(messages._TICKET_DECODERS, messages.KIND_READ_KEY, older)
    node = Node.open(tmp_path / "data")
    server = FlightService(node, "grpc://127.0.0.1:0")
    try:
        with odradek.connect(f"grpc://127.0.0.1:{server.port}") as client:
            client.create_topic("acc")
            client.append("acc", [{"key": b"k", "value": b"v"}])
            with pytest.raises(InvalidRequest, match="does not know read_key"):
                client.read_key("acc", b"k", from_snapshot=True)
            assert client.read_key("acc", b"k").num_rows == 1
    finally:
        server.drain(5.0)
        node.close()
