"""Fixtures of the storage tests: the real S3 servers (object_servers.py) and
``object_store``, a fresh ObjectStore under a unique prefix on each backend in turn:
memory, a local directory, moto's S3 server and SeaweedFS."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers beside this file are imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

from object_servers import moto_s3, seaweedfs_s3, unique_prefix  # noqa: F401  (fixtures)

from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import ObjectStore, open_store

BACKENDS = ["memory", "file", "moto", "seaweedfs"]


def open_backend(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, **settings: object
) -> ObjectStore:
    """A fresh store on ``backend``: its own prefix, so tests sharing a server never meet."""
    if backend == "memory":
        name = f"test-{uuid.uuid4().hex}"
        request.addfinalizer(lambda: forget_memory_store(name))
        return open_store(f"memory://{name}/{unique_prefix()}", **settings)  # type: ignore[arg-type]
    if backend == "file":
        return open_store(f"file://{tmp_path / 'store'}", **settings)  # type: ignore[arg-type]
    server = request.getfixturevalue("moto_s3" if backend == "moto" else "seaweedfs_s3")
    return server.open(unique_prefix(), **settings)  # type: ignore[no-any-return]


@pytest.fixture(params=BACKENDS)
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    yield open_backend(request, request.param, tmp_path)
