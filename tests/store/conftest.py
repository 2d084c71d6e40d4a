"""Fixtures of the object-store agent tests: the S3 servers of tests/storage, the
`odradek serve` subprocesses of tests/cli (killed if a test leaves them running), and
a store URL per backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers of these directories are imported by name under any --import-mode.
_TESTS = Path(__file__).parents[1]
for _directory in (_TESTS / "store", _TESTS / "storage", _TESTS / "cli"):
    if str(_directory) not in sys.path:
        sys.path.insert(0, str(_directory))

from object_servers import moto_s3  # noqa: E402, F401  (a fixture)
from stores import StoreServer, StoreURL, file_store, moto_store  # noqa: E402


@pytest.fixture
def start_store_server() -> Iterator[type[StoreServer]]:
    started: list[StoreServer] = []

    class Tracked(StoreServer):
        def __init__(self, data_dir: Path, store: StoreURL, *args: str) -> None:
            super().__init__(data_dir, store, *args)
            started.append(self)

    yield Tracked
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


@pytest.fixture(params=["file", "moto"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> StoreURL:
    if request.param == "file":
        return file_store(tmp_path)
    return moto_store(request.getfixturevalue("moto_s3"))
