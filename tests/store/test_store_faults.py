"""Faults of the object store, as the engine's users see them.

Goal: whatever the store does — slow PUTs, 503 SlowDown, 500s, timeouts, PUTs that land
but whose answer is lost, a whole outage — an append is never acknowledged unless it is
durable in the store (a new agent on the same store finds every acknowledged record,
exactly once); during an outage appends fail with a retryable error saying the outcome
is unknown while reads keep being served (and show only acknowledged records); appends
succeed again once the store is back; an idempotent producer's retry after an unknown
outcome is written once.

Method: embedded engines over objectfaults.FaultyObjectStore wrapping a named memory
store (the faults sit under the store client's retries), with a short journal window
and a 1 s wait for the store; one outage against moto's S3 server stopped and started
again on the same port. Conditions are awaited with generous deadlines; nothing
asserts a duration.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from object_servers import free_ports
from stores import DEADLINE_SECONDS, History, moto_on_port, read_all, wait_for

import odradek
from odradek.errors import StorageError
from odradek.storage.agent import StoreSettings
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objectfaults import Fault, FaultyObjectStore
from odradek.storage.objects import PUT, ObjectStore, RetryPolicy, open_store

# A store the engine waits for 1 s at most, retrying quickly: faults show in seconds.
SETTINGS = StoreSettings(flush_seconds=0.002, wait_seconds=1.0)
RETRY = RetryPolicy(attempts=3, backoff_base_seconds=0.01, backoff_max_seconds=0.05)


@pytest.fixture
def memory_url() -> Iterator[str]:
    name = f"faults-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    forget_memory_store(name)


def _faulty(url: str, seed: int = 7) -> FaultyObjectStore:
    return FaultyObjectStore(open_store(url), seed=seed, retry=RETRY)


def _open(directory: Path, store: ObjectStore | str) -> odradek.EmbeddedClient:
    return odradek.open(directory, store=store, store_settings=SETTINGS)


def _append_until_it_succeeds(
    client: odradek.EmbeddedClient, records: list[dict[str, bytes]], producer: tuple[str, int] | None = None
) -> odradek.AppendResult:
    """Retry a retryable failure (an unknown outcome) until the append succeeds."""
    result: list[odradek.AppendResult] = []

    def attempt() -> bool:
        try:
            result.append(client.append("orders", records, producer=producer))
        except StorageError as exc:
            assert exc.retryable, exc
            return False
        return True

    wait_for(attempt, "an append once the store is back")
    return result[0]


def _values_once(table: object) -> None:
    values = table.column("value").to_pylist()  # type: ignore[attr-defined]
    assert len(values) == len(set(values)), "a record is in the log twice"


def test_an_outage_fails_appends_keeps_reads_and_passes(memory_url: str, tmp_path: Path) -> None:
    store = _faulty(memory_url)
    client = _open(tmp_path / "agent", store)
    history = History()
    try:
        client.create_topic("orders")
        for index in range(10):
            result = client.append("orders", [{"key": b"k%d" % (index % 3), "value": b"before-%d" % index}])
            history.record(result.base_offset, [b"k%d" % (index % 3)], [b"before-%d" % index])
        store.go_down()
        with pytest.raises(StorageError) as caught:
            client.append("orders", [{"key": b"k0", "value": b"during-0"}])
        assert caught.value.retryable
        assert "may or may not become durable" in caught.value.message
        # Reads are served, and show acknowledged records only (not the one in doubt).
        for _ in range(2):
            table = read_all(client, "orders")
            assert table.column("value").to_pylist() == [b"before-%d" % index for index in range(10)]
            assert client.read_key("orders", b"k1").num_rows == 3
        with pytest.raises(StorageError) as again:  # a later append fails too, retryable
            client.append("orders", [{"key": b"k0", "value": b"during-1"}])
        assert again.value.retryable
        store.come_back()
        after = _append_until_it_succeeds(client, [{"key": b"k1", "value": b"after"}])
        history.record(after.base_offset, [b"k1"], [b"after"])
        history.check(read_all(client, "orders"))
    finally:
        client.close()
    # A new agent on the same store: every acknowledged record, once.
    with _open(tmp_path / "next", memory_url) as restarted:
        table = read_all(restarted, "orders")
        history.check(table)
        _values_once(table)


def test_a_retry_after_a_lost_answer_is_written_once(memory_url: str, tmp_path: Path) -> None:
    store = _faulty(memory_url)
    client = _open(tmp_path / "agent", store)
    try:
        client.create_topic("orders")
        client.append("orders", [{"key": b"a", "value": b"first"}], producer=("p", 0))
        # Every journal PUT times out and lands later: the append's outcome is unknown.
        store.inject(Fault.TIMEOUT_THEN_WRITTEN, kinds=PUT, keys="wal/", probability=1.0)
        with pytest.raises(StorageError) as caught:
            client.append("orders", [{"key": b"a", "value": b"second"}], producer=("p", 1))
        assert caught.value.retryable
        store.clear()
        assert store.land_late_writes() >= 1  # the lost PUTs land now
        retried = _append_until_it_succeeds(client, [{"key": b"a", "value": b"second"}], producer=("p", 1))
        assert retried.base_offset == 1
        table = read_all(client, "orders")
        assert table.column("value").to_pylist() == [b"first", b"second"]
    finally:
        client.close()
    with _open(tmp_path / "next", memory_url) as restarted:
        assert read_all(restarted, "orders").column("value").to_pylist() == [b"first", b"second"]
        assert restarted.append("orders", [{"key": b"a", "value": b"second"}], producer=("p", 1)).duplicate


def test_appends_under_every_kind_of_fault_are_durable_once(memory_url: str, tmp_path: Path) -> None:
    store = _faulty(memory_url, seed=11)
    client = _open(tmp_path / "agent", store)
    history = History()
    client.create_topic("orders")
    store.set_latency(PUT, (0.0, 0.01))
    store.inject(Fault.SLOWDOWN, kinds=PUT, probability=0.1)
    store.inject(Fault.INTERNAL_ERROR, kinds=PUT, probability=0.05)
    store.inject(Fault.TIMEOUT, kinds=PUT, probability=0.05)
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, probability=0.1)

    def produce(writer: int) -> None:
        try:
            for sequence in range(40):
                key, value = b"key-%d" % (sequence % 5), b"w%d-%d" % (writer, sequence)
                result = _append_until_it_succeeds(
                    client, [{"key": key, "value": value}], producer=(f"writer-{writer}", sequence)
                )
                history.record(result.base_offset, [key], [value])
        except BaseException as exc:  # noqa: BLE001  (reported by the test below)
            history.fail(exc)

    threads = [threading.Thread(target=produce, args=(writer,)) for writer in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_SECONDS * 3)
        assert not any(thread.is_alive() for thread in threads)
        assert not history.failures, history.failures
        assert len(history.acked) == 120
        assert sum(store.injected.values()) > 0, "no fault was injected"
    finally:
        store.clear()
        client.close()
    with _open(tmp_path / "next", memory_url) as restarted:
        table = read_all(restarted, "orders")
        history.check(table)
        _values_once(table)
        assert table.num_rows == 120  # every retry was recognized: nothing written twice


def test_a_store_that_refuses_at_start_is_named_and_leaves_the_cache_free(
    memory_url: str, tmp_path: Path
) -> None:
    store = _faulty(memory_url)
    store.go_down()
    with pytest.raises(StorageError) as caught:
        _open(tmp_path / "agent", store)
    assert f"cannot attach to the object store {memory_url}" in caught.value.message
    store.come_back()
    with _open(tmp_path / "agent", store) as client:  # the LOCK was let go
        client.create_topic("orders")


def test_an_s3_server_that_stops_and_starts_again(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with moto_on_port(tmp_path / "moto-1", port) as server:
        store = open_store(server.url("agent"), options=server.options, retry=RETRY)
        client = _open(tmp_path / "agent", store)
        client.create_topic("orders")
        acked = [client.append("orders", [{"key": b"k", "value": b"v%d" % i}]).base_offset for i in range(5)]
        assert acked == [0, 1, 2, 3, 4]
    try:
        # The server is stopped: appends fail, retryable; reads are served.
        with pytest.raises(StorageError) as caught:
            client.append("orders", [{"key": b"k", "value": b"during"}])
        assert caught.value.retryable
        assert read_all(client, "orders").column("value").to_pylist() == [b"v%d" % i for i in range(5)]
        # Started again on the same port (moto keeps objects in memory: it comes back
        # empty, its bucket made anew): the journal goes on and appends succeed.
        with moto_on_port(tmp_path / "moto-2", port):
            result = _append_until_it_succeeds(client, [{"key": b"k", "value": b"after"}])
            assert result.base_offset >= 5
            values = read_all(client, "orders").column("value").to_pylist()
            assert values[:5] == [b"v%d" % i for i in range(5)] and values[-1] == b"after"
            client.close()
    finally:
        client.close()
