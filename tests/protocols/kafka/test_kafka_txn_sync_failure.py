"""A commit whose decision could not be synced, then aborted, stays aborted.

Goal: EndTxn(commit) writes the transaction's decision to its staging file and syncs it
(the commit point, decision 0016). When that sync fails the client is answered an error
and may abort instead; the decision's bytes may still reach the disk (the page cache
writes them back later, or they were written and only the sync's answer failed). The
abort the client is then told succeeded must hold after a restart: the aborted records
never appear, and the id's next transaction commits as usual. While the abort itself
cannot be made durable it is refused (retriable), so the client never hears "aborted"
for a decision a restart would apply.

Method: an in-process Kafka door on a data directory whose disk fails the staging
file's syncs on demand (storage/faults.py), raw requests on one connection, a restart
on the same directory; what topics hold is read through the engine.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_kafka_transactions_wire import TxnWire
from wire import door_values

from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.storage.faults import FaultyDisk

TOPIC = "orders.txn"


class Door:
    def __init__(self, data_dir: str, disk: FaultyDisk) -> None:
        self.data_dir = data_dir
        self.node = Node.open(data_dir, disk=disk)  # fsync on: the staging files are synced
        self.listener = start_kafka_listener(self.node, "127.0.0.1", 0)

    @property
    def engine(self) -> object:
        return self.node.engine

    def close(self) -> None:
        self.listener.close()
        self.node.close()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[tuple[Door, FaultyDisk]]:
    disk = FaultyDisk()
    opened = Door(os.path.join(tmp_path, "data"), disk)
    try:
        yield opened, disk
    finally:
        opened.close()


def _commit_whose_sync_fails(
    kafka: Door, disk: FaultyDisk, transactional_id: str, value: bytes
) -> tuple[TxnWire, int, int]:
    """A transaction of ``value`` whose EndTxn(commit) is answered an error because the
    staging file's sync fails (the disk still failing them); its wire, pid and epoch."""
    kafka.node.engine.create_topic(TOPIC)
    wire = TxnWire(kafka.listener.port)
    init = wire.init(transactional_id)
    pid, epoch = init.producer_id, init.producer_epoch
    wire.add(transactional_id, pid, epoch, {TOPIC: [0]})
    assert wire.produce(transactional_id, TOPIC, [value], pid, epoch, 0)[0] == ErrorCode.NONE
    disk.fail_syncs(errno.EIO, paths=".stage")
    assert wire.end(transactional_id, pid, epoch, True) != ErrorCode.NONE  # the decision is not durable
    return wire, pid, epoch


def test_an_abort_after_a_failed_commit_sync_survives_a_restart(door: tuple[Door, FaultyDisk]) -> None:
    kafka, disk = door
    wire, pid, epoch = _commit_whose_sync_fails(kafka, disk, "doubtful", b"never")
    assert wire.end("doubtful", pid, epoch, False) != ErrorCode.NONE  # nor can the abort be
    disk.heal()
    assert wire.end("doubtful", pid, epoch, False) == ErrorCode.NONE  # the client is told: aborted
    assert door_values(kafka, TOPIC) == []
    wire.close()
    kafka.close()

    restarted = Door(kafka.data_dir, FaultyDisk())
    wire = TxnWire(restarted.listener.port)
    try:
        assert door_values(restarted, TOPIC) == [], "an aborted transaction was applied at the restart"
        # The id goes on: its next transaction commits.
        init = wire.init("doubtful")
        pid, epoch = init.producer_id, init.producer_epoch
        wire.add("doubtful", pid, epoch, {TOPIC: [0]})
        assert wire.produce("doubtful", TOPIC, [b"next"], pid, epoch, 0)[0] == ErrorCode.NONE
        assert wire.end("doubtful", pid, epoch, True) == ErrorCode.NONE
        assert door_values(restarted, TOPIC) == [b"next"]
    finally:
        wire.close()
        restarted.close()


def test_a_commit_retried_after_a_failed_sync_is_applied_once(door: tuple[Door, FaultyDisk]) -> None:
    kafka, disk = door
    wire, pid, epoch = _commit_whose_sync_fails(kafka, disk, "retried", b"once")
    disk.heal()
    assert wire.end("retried", pid, epoch, True) == ErrorCode.NONE
    assert door_values(kafka, TOPIC) == [b"once"]
    wire.close()
    kafka.close()
    restarted = Door(kafka.data_dir, FaultyDisk())
    try:
        assert door_values(restarted, TOPIC) == [b"once"]
    finally:
        restarted.close()
