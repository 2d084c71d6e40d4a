"""A Flight server over a fresh node (an engine and its consumer groups), in-process,
on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.engine import Engine
from odradek.node import Node
from odradek.protocols.flight.server import FlightService


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = Node.open(tmp_path / "data")
    yield node
    node.close()


@pytest.fixture
def engine(node: Node) -> Engine:
    return node.engine


@pytest.fixture
def server(node: Node) -> Iterator[FlightService]:
    service = FlightService(node, "grpc://127.0.0.1:0")
    yield service
    service.drain(5.0)


@pytest.fixture
def url(server: FlightService) -> str:
    return f"grpc://127.0.0.1:{server.port}"
