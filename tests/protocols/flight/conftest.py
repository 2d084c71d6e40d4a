"""A Flight server over a fresh engine, in-process, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.engine import Engine
from odradek.protocols.flight.server import FlightService


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(tmp_path / "data")
    yield engine
    engine.close()


@pytest.fixture
def server(engine: Engine) -> Iterator[FlightService]:
    service = FlightService(engine, "grpc://127.0.0.1:0")
    yield service
    service.drain(5.0)


@pytest.fixture
def url(server: FlightService) -> str:
    return f"grpc://127.0.0.1:{server.port}"
