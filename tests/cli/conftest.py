"""Fixtures: `odradek serve` subprocesses that are killed if a test leaves them running."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers beside this file are imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

from odradek_process import Server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(
            self, data_dir: Path | None = None, *args: str, env: dict[str, str] | None = None
        ) -> None:
            super().__init__(data_dir or tmp_path / "data", *args, env=env)
            started.append(self)

    yield Tracked
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


@pytest.fixture
def server(start_server: type[Server]) -> Server:
    return start_server()
