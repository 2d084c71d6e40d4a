"""Concurrency: many writers, asyncio tasks and readers on one engine.

Goal: appends from many threads, and from asyncio tasks through ``asyncio.to_thread``,
to one topic are serialized: offsets stay dense, every append's records are contiguous
and in order, each key's versions are 1, 2, 3… in offset order, every AppendResult
matches what was stored, and nothing is lost or duplicated. Readers never block
writers (writers finish while readers sit in long-polls) and never see a partial
append or a gap. Concurrent creation of one topic has one winner. The real group
commit (fsync on) behaves the same.

Method: worker threads tag every value with (worker, append, record); after they all
finish, a full read is checked against the returned AppendResults. Joins and queue
reads carry generous timeouts only so that a deadlock fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.errors import ClosedError, OdradekError, StorageError, TopicExists, TopicNotFound
from odradek.types import AppendResult

KEYS = [b"a", b"b", b"c", b"d", b"", None]
JOIN_TIMEOUT = 120.0


def records_for(worker: int, append: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"key": rng.choice(KEYS), "value": f"{worker}/{append}/{index}".encode()}
        for index in range(rng.randint(1, 5))
    ]


def run_threads(target: Callable[[int], None], count: int) -> None:
    failures: list[BaseException] = []

    def wrapped(number: int) -> None:
        try:
            target(number)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread, which re-raises it
            failures.append(error)

    threads = [threading.Thread(target=wrapped, args=(n,), name=f"worker-{n}") for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    if failures:
        raise failures[0]


def check_log(
    table: pa.Table, results: dict[tuple[int, int], tuple[list[dict[str, Any]], AppendResult]]
) -> None:
    """The stored log is exactly the appends, serialized."""
    total = sum(len(records) for records, _ in results.values())
    assert table.column("offset").to_pylist() == list(range(total))
    spans = sorted((r.base_offset, r.count) for _, r in results.values())
    position = 0
    for base, count in spans:
        assert base == position  # no overlap, no gap
        position += count
    values = table.column("value").to_pylist()
    keys = table.column("key").to_pylist()
    versions = table.column("version").to_pylist()
    for (worker, append), (records, result) in results.items():
        stored = values[result.base_offset : result.next_offset]
        assert stored == [f"{worker}/{append}/{i}".encode() for i in range(len(records))]
        assert keys[result.base_offset : result.next_offset] == [r["key"] for r in records]
        last_version: dict[bytes, int] = {}
        for offset in range(result.base_offset, result.next_offset):
            if keys[offset] is not None:
                last_version[keys[offset]] = versions[offset]
        assert dict(result.versions) == last_version
    heads: dict[bytes, int] = {}
    for key, version in zip(keys, versions):
        if key is None:
            assert version is None
        else:
            heads[key] = heads.get(key, 0) + 1
            assert version == heads[key]


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


def test_appends_from_many_threads_are_serialized(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    results: dict[tuple[int, int], tuple[list[dict[str, Any]], AppendResult]] = {}
    lock = threading.Lock()

    def worker(number: int) -> None:
        rng = random.Random(number)
        previous = -1
        for append in range(40):
            records = records_for(number, append, rng)
            result = client.append(topic, records)
            assert result.base_offset > previous  # a thread's own appends stay in its order
            previous = result.base_offset
            with lock:
                results[(number, append)] = (records, result)

    run_threads(worker, 8)
    check_log(read_all(client, topic), results)
    assert client.describe_topic(topic).keys == 5


def test_appends_from_asyncio_tasks_are_serialized(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    results: dict[tuple[int, int], tuple[list[dict[str, Any]], AppendResult]] = {}

    async def task(number: int) -> None:
        rng = random.Random(1000 + number)
        for append in range(8):
            records = records_for(number, append, rng)
            results[(number, append)] = (records, await asyncio.to_thread(client.append, topic, records))

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(task(n) for n in range(40))), JOIN_TIMEOUT)

    asyncio.run(main())
    assert len(results) == 320
    check_log(read_all(client, topic), results)


def test_with_fsync_group_commit(
    open_client: Callable[..., odradek.EmbeddedClient], read_all: Callable[..., pa.Table]
) -> None:
    client = open_client(fsync=True)
    client.create_topic("t")
    results: dict[tuple[int, int], tuple[list[dict[str, Any]], AppendResult]] = {}
    lock = threading.Lock()

    def worker(number: int) -> None:
        rng = random.Random(number)
        for append in range(15):
            records = records_for(number, append, rng)
            result = client.append("t", records)
            with lock:
                results[(number, append)] = (records, result)

    run_threads(worker, 6)
    check_log(read_all(client, "t"), results)
    fsyncs = client.engine.topic_stats("t")["fsyncs"]
    assert 1 <= fsyncs <= len(results)


def test_long_polling_readers_do_not_stall_writers(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    client.create_topic("idle")
    client.create_topic("t.sub")
    readers = [
        background_read(client.read(topic, wait=60)),
        background_read(client.read("idle", wait=60)),  # never gets anything
        background_read(client.read("t.>", wait=60, follow=True)),
        background_read(client.read(topic, start="latest", follow=True)),
    ]

    def writer(number: int) -> None:
        for append in range(50):
            client.append(topic, [{"key": f"w{number}", "value": f"{number}/{append}"}])
        client.append("t.sub", [{"value": f"sub {number}"}])

    run_threads(writer, 4)  # fails if the readers held up the writers
    assert readers[0].take(200).column("offset").to_pylist() == list(range(200))
    assert readers[3].take(200).column("offset").to_pylist() == list(range(200))
    assert sorted(readers[2].take(4).column("value").to_pylist()) == [f"sub {n}".encode() for n in range(4)]
    assert not readers[1].done.is_set()
    client.close()
    for reader in readers:
        reader.finish()


def test_concurrent_reads_never_see_a_partial_append_or_a_gap(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    stop = threading.Event()
    sizes: dict[str, int] = {}
    writers_left = [3]
    lock = threading.Lock()

    def writer(number: int) -> None:
        if number >= 3:
            return reader()
        try:
            rng = random.Random(number)
            for append in range(60):
                count = rng.randint(1, 20)
                tag = f"{number}/{append}"
                sizes[tag] = count
                client.append(topic, [{"key": b"k", "value": tag.encode()} for _ in range(count)])
        finally:
            with lock:
                writers_left[0] -= 1
                if not writers_left[0]:
                    stop.set()

    def reader() -> None:
        while not stop.is_set():
            batches = list(client.read(topic, wait=0, max_records=7))
            offsets = [o for b in batches for o in b.column("offset").to_pylist()]
            assert offsets == list(range(len(offsets)))
            versions = [v for b in batches for v in b.column("version").to_pylist()]
            assert versions == list(range(1, len(versions) + 1))
            seen: dict[str, int] = {}
            for batch in batches:
                for value in batch.column("value").to_pylist():
                    seen[value.decode()] = seen.get(value.decode(), 0) + 1
            for tag, count in seen.items():
                assert count == sizes[tag], f"append {tag} seen with {count} of {sizes[tag]} records"

    run_threads(writer, 5)
    assert client.describe_topic(topic).next_offset == sum(sizes.values())


def test_concurrent_creation_of_one_topic_has_one_winner(client: odradek.EmbeddedClient) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8, timeout=JOIN_TIMEOUT)

    def creator(number: int) -> None:
        barrier.wait()
        try:
            client.create_topic("contested")
            outcome = "created"
        except TopicExists:
            outcome = "exists"
        with lock:
            outcomes.append(outcome)

    run_threads(creator, 8)
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert client.list_topics() == ["contested"]


def test_admin_and_data_operations_interleave(client: odradek.EmbeddedClient) -> None:
    """Topics created and deleted while others are written: no deadlock, no mix-up."""
    for name in ("keep.0", "keep.1"):
        client.create_topic(name)

    def worker(number: int) -> None:
        if number < 2:
            for append in range(100):
                client.append(f"keep.{number}", [{"key": b"k", "value": str(append)}])
        else:
            for round_number in range(15):
                name = f"churn.{number}.{round_number}"
                client.create_topic(name)
                client.append(name, [{"value": b"x"}])
                assert client.describe_topic(name).next_offset == 1
                client.delete_topic(name)

    run_threads(worker, 4)
    assert client.list_topics() == ["keep.0", "keep.1"]
    for name in ("keep.0", "keep.1"):
        assert client.key_version(name, b"k") == 100


def test_idempotent_producers_from_many_threads(client: odradek.EmbeddedClient, topic: str) -> None:
    def producer(number: int) -> None:
        for sequence in range(30):
            records = [{"key": f"p{number}", "value": f"{number}/{sequence}"}]
            first = client.append(topic, records, producer=(f"p{number}", sequence))
            retry = client.append(topic, records, producer=(f"p{number}", sequence))
            assert retry == AppendResult(first.base_offset, 1, first.versions, duplicate=True)
            assert first.versions == {f"p{number}".encode(): sequence + 1}

    run_threads(producer, 6)
    assert client.describe_topic(topic).next_offset == 180


def delete_under_writers(client: odradek.EmbeddedClient) -> None:
    """Four threads append to "t" while a fifth deletes it."""
    started = threading.Barrier(5, timeout=JOIN_TIMEOUT)
    deleted = threading.Event()

    def worker(number: int) -> None:
        started.wait()
        if number == 4:
            client.append("t", [{"value": b"first"}])
            client.delete_topic("t")
            deleted.set()
            return
        while not deleted.is_set():
            try:
                client.append("t", [{"key": b"k", "value": b"x"}])
            except TopicNotFound:
                return
            except OdradekError as error:  # the topic was closed under this append
                assert isinstance(error, (StorageError, ClosedError)), error

    run_threads(worker, 5)


@pytest.mark.parametrize("fsync", [False, True], ids=["fsync off", "fsync on"])
def test_deleting_a_topic_under_writers(
    open_client: Callable[..., odradek.EmbeddedClient], fsync: bool
) -> None:
    """Appends racing a delete succeed or fail with a typed error; nothing hangs; the
    name can be used again at once."""
    client = open_client(fsync=fsync)
    for _ in range(5):
        client.create_topic("t")
        delete_under_writers(client)
        assert client.list_topics() == []
        client.create_topic("t")
        assert client.append("t", [{"key": b"k", "value": b"new"}]) == AppendResult(0, 1, {b"k": 1})
        client.delete_topic("t")


def test_closing_the_engine_under_writers_and_readers(
    open_client: Callable[..., odradek.EmbeddedClient],
    background_read: Callable[..., Any],
    reopen: Callable[..., odradek.EmbeddedClient],
    read_all: Callable[..., pa.Table],
) -> None:
    client = open_client(fsync=True)
    client.create_topic("t")
    reader = background_read(client.read("t", follow=True))
    acknowledged: list[AppendResult] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        if number == 4:
            while len(acknowledged) < 20:
                stop.wait(0.001)
            client.close()
            stop.set()
            return
        while True:
            try:
                result = client.append("t", [{"key": f"w{number}", "value": b"x"}])
            except (ClosedError, StorageError, TopicNotFound):
                return
            with lock:
                acknowledged.append(result)

    run_threads(writer, 5)
    reader.finish()
    assert reader.error is None
    client = reopen(client)
    stored = read_all(client, "t").column("offset").to_pylist()
    assert stored == list(range(len(stored)))
    for result in acknowledged:  # every acknowledged append survived the close
        assert result.next_offset <= len(stored)
