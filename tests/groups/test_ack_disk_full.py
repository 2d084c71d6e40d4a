"""A consumer-group ack on a full disk: refused, never half-done, written when retried.

Goal: issue 11's finding, reproduced: an ack whose progress write failed with ENOSPC
had already settled its deliveries in memory, so its retry was answered "done"
although nothing was on disk, and after a restart the records came again. Now a
group settles only after the progress write and its fsync succeeded: the failed ack
raises StorageError saying "no space left on device", the deliveries stay in flight,
the retry once space is freed settles and persists them, and the group goes on without
a restart. Dead letters follow the same order: a dead letter whose progress write
failed is not written twice, and is settled once the write succeeds. A snapshot
rewrite while an ack waits for its fsync keeps that ack.

Method: fault injection in the progress file's system calls (``os.write`` as
``groups/state.py`` reaches it, failing only for progress frames, which start with
the file's magic; ``os.fdatasync`` for the fsync), as tests/engine/test_faults.py does
for segments; restarts by reopening the data directory; the group's fake clock for the
dead-letter retry delay.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.errors import StorageError
from odradek.groups import state

TOPIC = "t"
DISK_FULL = r"(?i)no space left on device"


def _fail_progress_writes(patch: pytest.MonkeyPatch, error: int = errno.ENOSPC) -> list[int]:
    """Progress frames fail to be written with ``error``; returns the failures seen."""
    real = os.write
    failures: list[int] = []

    def write(fd: int, data: Any) -> int:
        if bytes(memoryview(data)[: len(state.MAGIC)]) == state.MAGIC:
            failures.append(fd)
            raise OSError(error, os.strerror(error))
        return real(fd, data)

    patch.setattr(state.os, "write", write)
    return failures


def _lag(client: odradek.EmbeddedClient) -> tuple[int, int]:
    (topic,) = client.describe_group("g").topics
    return topic.committed, topic.in_flight


def test_an_ack_that_failed_on_a_full_disk_is_written_when_retried(
    open_client: Callable[..., odradek.EmbeddedClient],
    append_keyed: Any,
    reopen: Callable[..., odradek.EmbeddedClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = open_client(fsync=True)
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"c"])
    consumer = client.subscribe(TOPIC, group="g")
    deliveries = consumer.poll(10, timeout=0)
    assert len(deliveries) == 3
    with monkeypatch.context() as patch:
        failures = _fail_progress_writes(patch)
        with pytest.raises(StorageError, match=DISK_FULL):
            consumer.ack(deliveries)
        assert failures, "the fault was not injected"
        assert _lag(client) == (0, 3), "a failed ack settled its deliveries"
        with pytest.raises(StorageError, match=DISK_FULL):
            consumer.ack(deliveries)  # still failing: still nothing settled
        assert _lag(client) == (0, 3)
    result = consumer.ack(deliveries)  # space was freed: the retry is written
    assert (result.settled, result.rejected) == (3, [])
    assert _lag(client) == (3, 0)
    # The group goes on without a restart.
    append_keyed(client, TOPIC, [b"a", b"d"])
    more = consumer.poll(10, timeout=0)
    assert sorted(d.offset for d in more) == [3, 4] and consumer.ack(more).ok
    consumer.close()
    client = reopen(client, fsync=True)
    with client.subscribe(TOPIC, group="g") as again:
        assert again.poll(10, timeout=0) == [], "acknowledged records came back after a restart"


def test_an_ack_whose_fsync_failed_is_not_settled(
    open_client: Callable[..., odradek.EmbeddedClient], append_keyed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(fsync=True)
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b"])
    consumer = client.subscribe(TOPIC, group="g")
    deliveries = consumer.poll(10, timeout=0)

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(state.os, "fdatasync", failing_fdatasync)
        with pytest.raises(StorageError, match="fsync"):
            consumer.ack(deliveries)
        assert _lag(client) == (0, 2)
    result = consumer.ack(deliveries)
    assert (result.settled, result.rejected) == (2, [])
    assert _lag(client) == (2, 0)
    consumer.close()


def test_a_dead_letter_whose_progress_write_failed_is_written_once(
    client: odradek.EmbeddedClient,
    clock: Any,
    append_keyed: Any,
    reopen: Callable[..., odradek.EmbeddedClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b"])
    consumer = client.subscribe(TOPIC, group="g", max_deliveries=1)
    deliveries = consumer.poll(10, timeout=0)
    with monkeypatch.context() as patch:
        failures = _fail_progress_writes(patch)
        assert consumer.nack(deliveries).settled == 2  # the nack itself writes nothing
        assert failures, "the dead letters' progress was not written"
        assert client.describe_group("g").counters["dead_lettered"] == 2  # appended...
        assert _lag(client) == (0, 2)  # ...but not settled
    clock.advance(5)  # past the retry delay: the next poll writes the progress
    assert consumer.poll(10, timeout=0) == []
    assert _lag(client) == (2, 0)
    consumer.close()
    letters = pa.Table.from_batches(list(client.read("dlq.g", wait=0)))
    assert sorted(letters.column("key").to_pylist()) == [b"a", b"b"], "a dead letter was written twice"
    client = reopen(client)
    with client.subscribe(TOPIC, group="g", max_deliveries=1) as again:
        assert again.poll(10, timeout=0) == []
    assert client.describe_topic("dlq.g").next_offset == 2


def test_a_snapshot_taken_while_an_ack_awaits_its_fsync_keeps_the_ack(
    open_client: Callable[..., odradek.EmbeddedClient],
    append_keyed: Any,
    reopen: Callable[..., odradek.EmbeddedClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = open_client(fsync=True)
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"c"])
    consumer = client.subscribe(TOPIC, group="g")
    deliveries = consumer.poll(10, timeout=0)
    group = client.node.groups._groups["g"]
    store = group._store
    real_sync = store.sync

    def sync_after_a_rewrite(ticket: int) -> None:
        group.rewrite_progress()  # another thread's ack rewrote the file meanwhile
        real_sync(ticket)

    monkeypatch.setattr(store, "sync", sync_after_a_rewrite)
    assert consumer.ack(deliveries[1:]).settled == 2
    monkeypatch.undo()
    consumer.close()
    client = reopen(client, fsync=True)
    with client.subscribe(TOPIC, group="g") as again:
        assert [d.offset for d in again.poll(10, timeout=0)] == [deliveries[0].offset]
