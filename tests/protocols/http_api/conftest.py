"""Fixtures of the HTTP API tests: the real listener in-process over a fresh node."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.node import Node
from odradek.protocols.registry import start_registry_listener

# The helpers beside this file are imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

from http_api_client import Api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    served = Api(node, listener)
    yield served
    listener.close()
    node.close()
