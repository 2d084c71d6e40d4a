"""Group commit rounds on a file system: one at a time, each taking what queued.

Goal: on a disk whose syncs cover every write before them (a file system) one fsync is
in flight and the next round takes every append that queued meanwhile; durability only
grows, listeners hear each increase once, and a failed sync poisons the commit for
every waiter. (On a store each append waits for its own journal flush instead:
tests/store/test_store_ack.py.)

Method: a GroupCommit over a disk whose fdatasync blocks until the test releases it, so
the order of rounds is decided by the test, not by timing.
"""

from __future__ import annotations

import threading

import pytest

from odradek.engine.commit import GroupCommit
from odradek.errors import StorageError
from odradek.storage.disk import Disk

DEADLINE = 30.0


class GatedDisk(Disk):
    """fdatasync blocks until released; counts the syncs in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.started = threading.Semaphore(0)
        self.gates: list[threading.Event] = []
        self.fail_next = False

    def fdatasync(self, fd: int) -> None:
        gate = threading.Event()
        with self.lock:
            self.gates.append(gate)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            fail = self.fail_next
        self.started.release()
        assert gate.wait(DEADLINE)
        with self.lock:
            self.in_flight -= 1
        if fail:
            raise OSError(5, "Input/output error")

    def close(self, fd: int) -> None:
        pass


class Log:
    """The highest ticket written, as the topic's writer hands it to a leader."""

    def __init__(self) -> None:
        self.written = 0

    def take(self) -> tuple[int, int]:
        return self.written, -1


def _waiter(commit: GroupCommit, ticket: int, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            commit.wait(ticket)
        except StorageError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_on_a_file_system_one_round_at_a_time_takes_what_queued() -> None:
    disk, log, heard, errors = GatedDisk(), Log(), [], []
    commit = GroupCommit(0, log.take, fsync=True, disk=disk)
    commit.on_durable(heard.append)
    log.written = 1
    first = _waiter(commit, 1, errors)
    assert disk.started.acquire(timeout=DEADLINE)
    log.written = 3
    queued = [_waiter(commit, ticket, errors) for ticket in (2, 3)]
    assert not disk.started.acquire(timeout=0.2)  # no second round while one is in flight
    disk.gates[0].set()
    first.join(DEADLINE)
    assert disk.started.acquire(timeout=DEADLINE)  # the next round, for both queued appends
    disk.gates[1].set()
    for thread in queued:
        thread.join(DEADLINE)
    assert disk.most_in_flight == 1 and len(disk.gates) == 2
    assert heard == [1, 3] and commit.durable == 3 and not errors


def test_a_failed_round_poisons_the_commit_for_every_waiter() -> None:
    disk, log, errors = GatedDisk(), Log(), []
    commit = GroupCommit(0, log.take, fsync=True, disk=disk)
    disk.fail_next = True
    log.written = 1
    first = _waiter(commit, 1, errors)
    assert disk.started.acquire(timeout=DEADLINE)
    log.written = 2
    second = _waiter(commit, 2, errors)  # queued behind the round in flight
    disk.gates[0].set()
    first.join(DEADLINE)
    second.join(DEADLINE)
    assert not first.is_alive() and not second.is_alive()
    assert len(errors) == 2 and all(isinstance(error, StorageError) for error in errors)
    assert len(disk.gates) == 1 and commit.durable == 0  # no round after the failure
    with pytest.raises(StorageError):
        commit.wait(2)
