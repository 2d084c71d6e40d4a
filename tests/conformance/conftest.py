"""Fixtures of the conformance suite: one ``client`` fixture, three doors.

* ``embedded``: ``odradek.open(dir)``, the engine in-process.
* ``cluster``: ``odradek.connect("grpc://a,b,c")`` against three cluster agents on a
  real etcd and moto's S3 server (tests/cluster/agents.py), the client's first URL a
  standby's, so every call starts by following a redirect to the owner.
* ``cells``: the same with the agents' topics spread over three cells (``--cells 3``,
  decision 0032), one served by each agent: a test's topics land in different cells,
  and the client follows each topic's redirects; a wildcard read is answered by the
  agent called with every cell's topics (decision 0035), and a group subscribing to a
  pattern has its member joined to every cell by that agent (decision 0038).
* ``remote``: ``odradek.connect(url)`` against an in-process Flight server on a free
  loopback port.
* ``async``: ``odradek.AsyncClient`` against the same kind of server, driven through
  an event loop by :class:`AsyncDriver`, which gives it the sync shape so that every
  test runs unchanged through all three (its consumers too, :class:`DrivenConsumer`).

The same suite runs on the engine's storage backends: ``memory`` is the embedded client
on an engine whose data lives in a ``memory://`` object store and ``s3`` the remote
client of a server whose engine's data lives in moto's S3 server (tests/storage), each
with a local directory that is only a cache (decision 0011); the three doors above use
a plain data directory.

``door`` yields the client with its node (node.py: the engine and its consumer
groups), for tests that drive the groups' clock. The server's door is built from a
node, as ``odradek serve`` builds it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
import odradek.client.aio
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.storage.agent import StoreSettings
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import ObjectStore, open_store

# The S3 server fixture of tests/storage, imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parents[1] / "storage"))
sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))
from agents import Cluster, wait_for
from etcd_servers import etcd_server  # noqa: F401  (a fixture)
from object_servers import moto_s3, unique_prefix  # noqa: F401  (a fixture)

# The engines of the suite refuse appends over 1 MiB, so RequestTooLarge is cheap to provoke.
APPEND_BYTES_MAX = 1024 * 1024
# On a store, every append waits for its journal flush: a short window keeps the suite fast.
STORE_SETTINGS = StoreSettings(flush_seconds=0.002)


class AsyncDriver:
    """Runs an AsyncClient's coroutines on a private event loop, one call at a time."""

    def __init__(self, client: odradek.AsyncClient) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()
        self.owner = threading.get_ident()

    def _run(self, coroutine: Any) -> Any:
        if threading.get_ident() != self.owner:  # a helper thread of a test: a loop of its own
            return asyncio.run(coroutine)
        return self.loop.run_until_complete(coroutine)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._run(method(*args, **kwargs))
            if isinstance(result, odradek.client.aio.AsyncConsumer):
                return DrivenConsumer(result, self)
            return result

        return call

    def read(self, pattern: str, **options: Any) -> Iterator[pa.RecordBatch]:
        batches: AsyncIterator[pa.RecordBatch] = self.client.read(pattern, **options)
        try:
            while True:
                try:
                    yield self._run(batches.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(batches.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        self._run(self.client.close())
        self.loop.close()


class DrivenConsumer:
    """An AsyncConsumer given the sync shape by the driver of its client."""

    def __init__(self, consumer: odradek.client.aio.AsyncConsumer, driver: AsyncDriver) -> None:
        self.consumer = consumer
        self.driver = driver

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.consumer, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.driver._run(attribute(*args, **kwargs))

        return call


@dataclasses.dataclass
class Door:
    """A client of one kind and the node behind it (for tests that set its clock)."""

    client: Any
    node: Node


def _store(request: pytest.FixtureRequest, kind: str) -> ObjectStore:
    if kind == "memory":
        name = f"conformance-{uuid.uuid4().hex}"
        request.addfinalizer(lambda: forget_memory_store(name))
        return open_store(f"memory://{name}/data")
    server = request.getfixturevalue("moto_s3")
    store: ObjectStore = server.open(unique_prefix())
    return store


@pytest.fixture(params=["embedded", "remote", "async", "memory", "s3", "cluster", "cells"])
def door(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Door]:
    kind = request.param
    options: dict[str, Any] = {"append_bytes_max": APPEND_BYTES_MAX}
    if kind in ("cluster", "cells"):
        yield from _cluster_door(request, tmp_path, options, cells=3 if kind == "cells" else 1)
        return
    if kind in ("memory", "s3"):
        options.update(store=_store(request, kind), store_settings=STORE_SETTINGS)
    if kind in ("embedded", "memory"):
        embedded = odradek.open(tmp_path / "data", **options)
        yield Door(embedded, embedded.node)
        embedded.close()
        return
    node = Node.open(tmp_path / "data", **options)
    server = FlightService(node, "grpc://127.0.0.1:0")
    url = f"grpc://127.0.0.1:{server.port}"
    remote: Any = AsyncDriver(odradek.connect_async(url)) if kind == "async" else odradek.connect(url)
    try:
        yield Door(remote, node)
    finally:
        remote.close()
        server.drain(5.0)
        node.close()


def _cluster_door(
    request: pytest.FixtureRequest, tmp_path: Path, options: dict[str, Any], cells: int = 1
) -> Iterator[Door]:
    etcd = request.getfixturevalue("etcd_server")
    store = request.getfixturevalue("moto_s3").open(unique_prefix())
    cluster = Cluster(
        tmp_path, etcd.url, store, store_settings=STORE_SETTINGS, engine_options=options, cells=cells
    )
    try:
        if cells > 1:  # one cell each, so that a test's topics spread over the three agents

            def one_each() -> bool:
                return sorted(len(agent.cells()) for agent in cluster.agents) == [1, 1, 1]

            wait_for(one_each, "one cell each")
        owner = cluster.owner()
        assert owner.node is not None
        urls = [agent.url for agent in cluster.standbys()] + [owner.url]
        remote = odradek.connect(",".join(urls))
        try:
            yield Door(remote, owner.node)
        finally:
            remote.close()
    finally:
        cluster.stop()


@pytest.fixture
def client(door: Door) -> Any:
    return door.client
