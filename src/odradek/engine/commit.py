"""Group commit: one fsync acknowledges every append written before it started.

Rules
-----
* A writer appends under the topic's writer lock, notes its *ticket* (the log's next
  offset after its frame; the topic keeps the highest one written), releases the lock,
  and calls :meth:`GroupCommit.wait` with that ticket.
* The first waiter that finds no fsync in flight becomes the leader: it takes the
  highest ticket written so far and a duplicate of the active segment's descriptor,
  fsyncs without holding any lock, then publishes that ticket as durable and wakes all
  waiters. Waiters whose ticket is now durable return; the rest elect a new leader.
* On a disk whose syncs take a flush window and a PUT (an object store's journal,
  ``Disk.syncs_in_flight_max`` > 1), a waiter whose ticket no round in flight covers
  leads a round of its own beside them, up to that many: each waits for the journal
  flush holding its writes, and the journal commits flushes in order, so a round that
  ends has made every earlier ticket durable too. Durability is published as the
  highest goal reached, and listeners hear only of increases.
* Segments are fsync'd when they are sealed, so syncing the active segment covers
  every ticket taken before the leader looked.
* If an fsync fails, what is on disk is unknown (the kernel may have dropped the dirty
  pages): the commit is poisoned, every waiter gets StorageError, and the topic must be
  reopened (recovered from disk) before it accepts writes again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from odradek.errors import StorageError
from odradek.storage.disk import LOCAL, Disk


class FsyncObserver(Protocol):
    def fsynced(self, seconds: float, appends: int, records: int) -> None:
        """One fsync took ``seconds`` and made ``appends`` appends (``records`` records)
        durable; called by the round's leader, outside every lock."""


#: Told of every fsync when set (a server's metrics, protocols/observe.py); None: nobody.
observer: FsyncObserver | None = None


class GroupCommit:
    def __init__(
        self,
        durable: int,
        take_handle: Callable[[], tuple[int, int]],
        fsync: bool,
        disk: Disk = LOCAL,
    ) -> None:
        """``take_handle`` returns (highest ticket written, dup'd fd) under the writer lock;
        the leader syncs and closes that descriptor through ``disk``."""
        self._condition = threading.Condition()
        self._take_handle = take_handle
        self._fsync = fsync
        self._disk = disk
        self._syncs_max = max(1, disk.syncs_in_flight_max)
        self._syncing = 0  # rounds in flight
        self._covered = durable  # the highest goal a round in flight or done has taken
        self.durable = durable
        self.error: StorageError | None = None
        self.fsyncs = 0
        self._waiting = 0  # appends waiting since the last fsync began (for the observer)
        self._listeners: list[Callable[[int], None]] = []

    def on_durable(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def publish(self, ticket: int) -> None:
        """Mark ``ticket`` durable without syncing (used when fsync is off or at open)."""
        with self._condition:
            if ticket > self.durable:
                self.durable = ticket
            self._condition.notify_all()
        for listener in self._listeners:
            listener(ticket)

    def wait(self, ticket: int) -> None:
        if not self._fsync:  # nothing to sync: what is written is as durable as it gets
            if self.error is not None:
                raise self.error
            if ticket > self.durable:
                self.publish(ticket)
            return
        with self._condition:
            self._waiting += 1
            while True:
                if self.error is not None:
                    raise self.error
                if self.durable >= ticket:
                    return
                if self._syncing == 0 or (self._syncing < self._syncs_max and ticket > self._covered):
                    self._syncing += 1
                    break
                self._condition.wait()
        goal = ticket
        try:
            goal, fd = self._take_handle()
            with self._condition:
                self._covered = max(self._covered, goal)
                appends, self._waiting = self._waiting, 0
                before = self.durable
            started = time.perf_counter()
            try:
                self._disk.fdatasync(fd)  # fsync is on: wait() returned above otherwise
            finally:
                self._disk.close(fd)
        except BaseException as exc:
            # Whatever went wrong, the waiters must not wait for a leader that is gone.
            with self._condition:
                if isinstance(exc, StorageError):
                    self.error = exc
                else:
                    self.error = StorageError(
                        f"fsync failed ({exc}); the topic is being recovered from disk, retry the append"
                    )
                self._syncing -= 1
                self._condition.notify_all()
            raise self.error from exc
        with self._condition:
            self.fsyncs += 1
            self._syncing -= 1
            raised = goal > self.durable
            if raised:
                self.durable = goal
            self._condition.notify_all()
        if raised:
            for listener in self._listeners:
                listener(goal)
        watching = observer
        if watching is not None:
            watching.fsynced(time.perf_counter() - started, appends, max(0, goal - before))
        if goal < ticket:  # cannot happen: our own ticket was written before we looked
            self.wait(ticket)
