"""Shared fixtures of the consumer-group tests.

Clients are opened with ``fsync=False``: these tests check semantics; only
test_durability.py, which kills a consumer process, turns fsync on. Time-dependent
behaviour (ack timeouts, member expiry, nack delays) is driven by a fake monotonic
clock installed on the engine's group manager, so no test sleeps through a timeout
and none asserts on wall-clock durations; waits in threads are bounded by generous
hang guards only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.client.consumer import Consumer
from odradek.groups import Delivery

# A thread of a test that takes longer than this is hung, not slow.
HANG_GUARD_SECONDS = 60.0


class FakeClock:
    """A monotonic clock that moves only when told to. Thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def data_dir(tmp_path: os.PathLike[str]) -> str:
    return os.path.join(os.fspath(tmp_path), "data")


@pytest.fixture
def open_client(data_dir: str) -> Iterator[Callable[..., odradek.EmbeddedClient]]:
    """``open_client(**options)`` opens the test's data directory (fsync off by
    default); every client it opened is closed at the end of the test."""
    opened: list[odradek.EmbeddedClient] = []

    def factory(**options: Any) -> odradek.EmbeddedClient:
        options.setdefault("fsync", False)
        options.setdefault("retention_check_seconds", 3600)
        client = odradek.open(data_dir, **options)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def client(open_client: Callable[..., odradek.EmbeddedClient]) -> odradek.EmbeddedClient:
    return open_client()


@pytest.fixture
def clock(client: odradek.EmbeddedClient) -> FakeClock:
    """A fake clock driving the groups of ``client``."""
    fake = FakeClock()
    client.node.groups.clock = fake
    return fake


def _append_keyed(
    client: odradek.EmbeddedClient, topic: str, keys: list[bytes | None], prefix: str = "v"
) -> list[int]:
    values = [f"{prefix}{index}".encode() for index in range(len(keys))]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(keys, pa.binary()), pa.array(values, pa.binary())], ["key", "value"]
    )
    result = client.append(topic, batch)
    return list(range(result.base_offset, result.next_offset))


def _drain(
    consumer: Consumer, *, ack: bool = True, rounds: int = 1000, max_records: int = 500
) -> list[Delivery]:
    received: list[Delivery] = []
    for _ in range(rounds):
        deliveries = consumer.poll(max_records, timeout=0)
        if not deliveries:
            return received
        received.extend(deliveries)
        if ack:
            result = consumer.ack(deliveries)
            assert result.ok, result.rejected
    raise AssertionError("drain did not finish")


@pytest.fixture
def append_keyed() -> Callable[..., list[int]]:
    """``append_keyed(client, topic, keys, prefix="v")``: one record per entry of
    ``keys`` (None = keyless), values ``prefix<index>``; returns their offsets."""
    return _append_keyed


@pytest.fixture
def drain() -> Callable[..., list[Delivery]]:
    """``drain(consumer, ack=True)``: poll without waiting until nothing comes,
    acking everything (and checking the acks) unless ``ack=False``."""
    return _drain


@pytest.fixture
def reopen(open_client: Callable[..., odradek.EmbeddedClient]) -> Callable[..., odradek.EmbeddedClient]:
    """``reopen(client)`` closes ``client`` cleanly and opens the same directory again."""

    def do_reopen(old: odradek.EmbeddedClient, **options: Any) -> odradek.EmbeddedClient:
        old.close()
        return open_client(**options)

    return do_reopen
