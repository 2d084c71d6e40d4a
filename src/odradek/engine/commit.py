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
* On a journaled disk (an object store's, ``Disk.journaled``) there are no rounds: an
  append's "fsync" is a wait for the journal flush holding its frame, and the flushes
  behind it take a window and a PUT each. So the writer, still under its lock, notes
  :meth:`written` (ticket, the journal position of its write, a mark for the segment's
  handle), and each waiter waits for its own ticket's position, side by side with the
  others. The journal commits its flushes in order, so when one reaches position P
  every append noted at or before P is durable: durability is published as the
  highest such ticket. An append is acknowledged at the flush holding its own write,
  never at a later one, and never before every earlier flush is in the store too.
* Segments are fsync'd when they are sealed, so syncing the active segment covers
  every ticket taken before the leader looked.
* If an fsync (or the journal's wait) fails, what is on disk is unknown (the kernel may
  have dropped the dirty pages; the store may or may not take the flush): the commit is
  poisoned, every waiter gets StorageError, and the topic must be reopened (recovered
  from disk) before it accepts writes again. Listeners hear only of increases.
"""

from __future__ import annotations

import bisect
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
        #: Whether appends wait for their own journal position (see :meth:`written`).
        self.journaled = fsync and disk.journaled
        self._syncing = False  # a round in flight
        self.durable = durable
        self.error: StorageError | None = None
        self.fsyncs = 0
        self._waiting = 0  # appends waiting since the last fsync began (for the observer)
        self._listeners: list[Callable[[int], None]] = []
        # Journaled: the appends written and not yet durable, in ticket order, as three
        # columns from ``_start`` on (bisected by a waiter, cut in front as they become
        # durable). Positions never decrease: the writer lock orders both.
        self._tickets: list[int] = []
        self._positions: list[int] = []
        self._marks: list[Callable[[], None] | None] = []
        self._start = 0

    def on_durable(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def written(self, ticket: int, position: int, mark: Callable[[], None] | None = None) -> None:
        """On a journaled disk: the append ending at ``ticket`` was written to journal
        ``position``; ``mark`` is called once it is durable. The writer lock is held."""
        with self._condition:
            self._tickets.append(ticket)
            self._positions.append(position)
            self._marks.append(mark)

    def publish(self, ticket: int) -> None:
        """Mark ``ticket`` durable without syncing (used when fsync is off or at open)."""
        with self._condition:
            if ticket > self.durable:
                self.durable = ticket
            if self.journaled:
                self._forget(bisect.bisect_right(self._tickets, ticket, self._start))
            self._condition.notify_all()
        for listener in self._listeners:
            listener(ticket)

    def _forget(self, end: int) -> None:
        """Drop the noted appends before index ``end`` (the condition is held)."""
        self._start = max(self._start, end)
        if self._start > 1024 and self._start * 2 > len(self._tickets):
            del self._tickets[: self._start], self._positions[: self._start], self._marks[: self._start]
            self._start = 0

    def wait(self, ticket: int) -> None:
        if not self._fsync:  # nothing to sync: what is written is as durable as it gets
            if self.error is not None:
                raise self.error
            if ticket > self.durable:
                self.publish(ticket)
            return
        if self.journaled:
            self._wait_journal(ticket)
            return
        with self._condition:
            self._waiting += 1
            while True:
                if self.error is not None:
                    raise self.error
                if self.durable >= ticket:
                    return
                if not self._syncing:
                    self._syncing = True
                    break
                self._condition.wait()
        goal = ticket
        try:
            goal, fd = self._take_handle()
            with self._condition:
                appends, self._waiting = self._waiting, 0
                before = self.durable
            started = time.perf_counter()
            try:
                self._disk.fdatasync(fd)  # fsync is on: wait() returned above otherwise
            finally:
                self._disk.close(fd)
        except BaseException as exc:
            self._poison(exc)
            raise self._poisoned() from exc
        with self._condition:
            self.fsyncs += 1
            self._syncing = False
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

    def _wait_journal(self, ticket: int) -> None:
        """Wait for the journal position of the first append noted at or after
        ``ticket`` (the append itself, for its own ticket), then publish every append
        noted up to the position the journal has committed by then."""
        with self._condition:
            if self.error is not None:
                raise self.error
            if self.durable >= ticket:
                return
            index = bisect.bisect_left(self._tickets, ticket, self._start)
            position = self._positions[index] if index < len(self._tickets) else -1
        if position < 0:  # a ticket nobody noted (cannot happen): the file's position now
            _, fd = self._take_handle()
            try:
                position = self._disk.sync_position(fd)
            finally:
                self._disk.close(fd)
        started = time.perf_counter()
        try:
            committed = self._disk.wait_position(position)
        except BaseException as exc:
            self._poison(exc)
            raise self._poisoned() from exc
        mark: Callable[[], None] | None = None
        with self._condition:
            before = self.durable
            # Every append noted up to what the journal has committed is durable, the
            # later flushes' too when they committed meanwhile.
            end = bisect.bisect_right(self._positions, committed, self._start)
            appends = end - self._start
            goal = self._tickets[end - 1] if appends > 0 else ticket
            if appends > 0:
                mark = self._marks[end - 1]
                self._forget(end)
            raised = goal > self.durable
            if raised:
                self.durable = goal
                self.fsyncs += 1
        if raised:
            for listener in self._listeners:
                listener(goal)
            if mark is not None:
                mark()
            watching = observer
            if watching is not None:
                watching.fsynced(time.perf_counter() - started, appends, goal - before)

    def _poison(self, exc: BaseException) -> None:
        """A sync failed: every waiter must hear it, none wait for a leader that is gone."""
        with self._condition:
            if self.error is None:
                if isinstance(exc, StorageError):
                    self.error = exc
                else:
                    self.error = StorageError(
                        f"fsync failed ({exc}); the topic is being recovered from disk, retry the append"
                    )
            self._syncing = False
            self._condition.notify_all()

    def _poisoned(self) -> StorageError:
        error = self.error
        if error is None:  # not an assert: it must hold under python -O too
            raise RuntimeError("a failed sync left no error")
        return error
