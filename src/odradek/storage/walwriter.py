"""The journal writer: entries batched into flushes, one object per flush, in order.

Theory of operation (decision record 0011)
------------------------------------------
* Entries are added to the *open* flush under one lock, in the order the engine's calls
  happen. A flush is cut ``flush_seconds`` after its first entry, or once it holds
  ``flush_bytes``, or at once when a caller waits for it and no flush is uploading (so
  a lone fsync does not wait out the window on an idle agent).
* Cut flushes are uploaded by a pool of threads, at most ``in_flight_max`` at a time,
  each with create-if-absent at the next free slot. A flush is *committed* once it and
  every earlier flush landed; ``wait(flush)`` returns when ``flush`` is committed.
* A failed upload is retried for as long as the writer runs (the object store's own
  retries first, then this writer's backoff); waiters give up after ``wait_seconds``
  with StoreUnavailable (the outcome is unknown: the flush may still land). The bytes
  of flushes not yet committed are bounded by ``backlog_bytes_max``: past it ``add``
  refuses, and the write that called it fails before anything is written.
* Waiters sleep on a condition of the flush they wait for, all sharing the writer's
  lock: a commit wakes only the waiters of the flushes it committed (fencing, closing
  and a timeout wake them all), so a flush landing does not wake every appender of the
  flushes still uploading. At 1,000 single appends a second that herd was a hundred
  threads woken per event, each taking the lock and the GIL to go back to sleep.
* Once a wait timed out, the store is *stuck* until a flush commits again: a wait for
  any flush that existed at that moment (up to the one then open) fails at once instead
  of waiting a timeout of its own, since the store took nothing for a whole timeout
  after those flushes were cut. A flush opened later waits its own timeout. So an
  engine closing during an outage (one fsync per topic, then ``flush_all``) stops
  after about one timeout, not one per topic.
* A slot taken already holds either this very flush (an upload whose answer was lost,
  which the object store recognizes), an older epoch's object (a replaced agent's
  leftover: the flush moves to a later slot), or a newer epoch's (this agent is fenced:
  every wait and add fails with Fenced from then on).

Lock order: the writer's lock only (its conditions share it); uploads run outside it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import random
import threading
import time
from typing import Protocol

from odradek import errors
from odradek.errors import StorageError
from odradek.storage import journal

log = logging.getLogger(__name__)


class Store(Protocol):
    """What the journal needs of an object store (storage/objects.py provides it)."""

    def put_new(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes | None: ...


class StoreUnavailable(StorageError):
    """The object store did not take the journal in time; the outcome is unknown."""


class Fenced(errors.Fenced):
    """Another agent took over this store: this one may no longer write."""


@dataclasses.dataclass
class _Flush:
    number: int
    entries: list[journal.Entry] = dataclasses.field(default_factory=list)
    size: int = 0
    opened: float = 0.0
    landed: bool = False
    slot: int = -1


class JournalWriter:
    def __init__(
        self,
        store: Store,
        *,
        epoch: int,
        first_slot: int,
        flush_seconds: float,
        flush_bytes: int,
        in_flight_max: int,
        backlog_bytes_max: int,
        wait_seconds: float,
        retry_seconds_max: float = 5.0,
    ) -> None:
        self.store = store
        self.epoch = epoch
        self.flush_seconds = flush_seconds
        self.flush_bytes = flush_bytes
        self.backlog_bytes_max = backlog_bytes_max
        self.wait_seconds = wait_seconds
        self.retry_seconds_max = retry_seconds_max
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)  # the timer, the backoff: windows, closing
        self._waiters: dict[int, threading.Condition] = {}  # flush -> where its waiters sleep
        self._next_slot = first_slot
        self._next_number = 1
        self._open = _Flush(self._next_number)
        self._next_number += 1
        self._cut: collections.deque[_Flush] = collections.deque()  # cut, not committed; in order
        self._uploading = 0
        self.committed = 0  # every flush up to this number is committed
        self._backlog = 0
        self._landed: list[tuple[int, int]] = []  # (flush, slot) of landed flushes not collected yet
        self._highest_landed = -1
        self._stuck_upto = 0  # after a timeout: waits for flushes up to this fail at once...
        self._stuck_committed = -1  # ...while ``committed`` is still this
        self.fenced: Fenced | None = None
        self.failure: str | None = None  # the last upload failure, while it lasts
        self.closed = False
        self.flushes = 0
        self.bytes = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=in_flight_max, thread_name_prefix="odradek-journal"
        )
        self._in_flight_max = in_flight_max
        self._timer = threading.Thread(target=self._tick, name="odradek-journal-timer", daemon=True)
        self._timer.start()

    # -- adding -------------------------------------------------------------------------

    def add(self, entry: journal.Entry) -> int:
        """Add ``entry`` to the open flush; return that flush's number."""
        size = entry.size
        with self._condition:
            self._check_writable()
            if self._backlog + size > self.backlog_bytes_max and self._backlog:
                raise StoreUnavailable(
                    f"the object store has not taken {self._backlog} bytes of journal yet "
                    f"({self.failure or 'uploads are slow'}); writes wait until it does"
                )
            flush = self._open
            if not flush.entries:
                flush.opened = time.monotonic()
                self._condition.notify_all()  # the timer looks at the new window
            flush.entries.append(entry)
            flush.size += size
            self._backlog += size
            if flush.size >= self.flush_bytes:
                self._cut_open()
            return flush.number

    def cut(self) -> int:
        """Cut the open flush now; return the number of the last flush holding entries
        (every entry added so far is in a flush up to it). Checkpoints call it under the
        StoreDisk's lock to fix their journal position."""
        with self._condition:
            self._cut_open()
            return self._open.number - 1

    def take_landed(self, upto: int) -> list[int]:
        """The slots of the landed flushes numbered up to ``upto`` that may be deleted,
        forgotten here (a checkpoint deletes them once its manifest holds their changes).

        Slots within ``in_flight_max`` of the highest landed one are kept for a later
        checkpoint: a new agent fences every empty slot in that window below the highest
        it lists (agent.fence), taking it for a slot this agent's upload may still fill,
        and a fence there would make the objects after it invalid. Once the highest
        landed slot moved a window further, no agent fences them any more.
        """
        with self._condition:
            below = self._highest_landed - self._in_flight_max
            taken = [slot for number, slot in self._landed if number <= upto and slot <= below]
            self._landed = [(n, slot) for n, slot in self._landed if not (n <= upto and slot <= below)]
            return taken

    def floor_after(self, upto: int) -> int:
        """The lowest slot that may hold a flush numbered after ``upto`` (a checkpoint as
        of ``upto`` names it as its manifest's floor, so that recovery reads the journal
        from there, not from this agent's first slot). Slots are taken in flush order and
        a moved flush only moves up, so every later flush lies at or above it."""
        with self._condition:
            slots = [flush.slot for flush in self._cut if flush.number > upto and flush.slot >= 0]
            slots += [slot for number, slot in self._landed if number > upto]
            return min(slots, default=self._next_slot)

    def open_number(self) -> int:
        """The number of the flush entries go into now."""
        with self._condition:
            return self._open.number

    @property
    def stuck(self) -> bool:
        """Whether a wait timed out and no flush committed since."""
        return self._stuck_upto > 0 and self.committed == self._stuck_committed

    def _check_writable(self) -> None:
        if self.fenced is not None:
            raise self.fenced
        if self.closed:
            raise StoreUnavailable("the journal is closed")

    # -- waiting ------------------------------------------------------------------------

    def wait(self, number: int) -> None:
        """Return once flush ``number`` (and every one before it) is committed."""
        deadline = time.monotonic() + self.wait_seconds
        with self._condition:
            while self.committed < number:
                if self.fenced is not None:
                    raise self.fenced
                if self.closed:
                    raise StoreUnavailable(
                        "the journal was closed before the object store took this write; it may or "
                        "may not become durable"
                    )
                if self._open.number <= number and self._open.entries and not self._uploading:
                    self._cut_open()  # nobody else will fill it soon: do not wait the window out
                remaining = deadline - time.monotonic()
                stuck = number <= self._stuck_upto and self.committed == self._stuck_committed
                if remaining <= 0 or stuck:
                    if not stuck:
                        self._stuck_upto = max(self._stuck_upto, self._open.number)
                        self._stuck_committed = self.committed
                        self._wake_all()  # the other waits up to it fail at once too
                    raise StoreUnavailable(
                        f"the object store did not take the journal within {self.wait_seconds:g} s "
                        f"({self.failure or 'uploads are slow'}); the write may or may not become "
                        "durable: retry it (an idempotent producer's retry is written once)"
                    )
                self._waiting_on(number).wait(min(remaining, 0.5))

    def _waiting_on(self, number: int) -> threading.Condition:
        """The condition the waiters of flush ``number`` sleep on (the lock is held)."""
        waiting = self._waiters.get(number)
        if waiting is None:
            waiting = self._waiters[number] = threading.Condition(self._lock)
        return waiting

    def _wake_committed(self) -> None:
        """Wake the waiters of every committed flush, and only them (the lock is held)."""
        for number in [number for number in self._waiters if number <= self.committed]:
            self._waiters.pop(number).notify_all()

    def _wake_all(self) -> None:
        """Wake every waiter: the writer is fenced, closed or stuck (the lock is held)."""
        for waiting in self._waiters.values():
            waiting.notify_all()
        self._waiters.clear()

    # -- cutting and uploading ----------------------------------------------------------

    def _cut_open(self) -> None:
        """Cut the open flush (the condition is held) and start its upload if allowed."""
        flush = self._open
        if not flush.entries:
            return
        self._open = _Flush(self._next_number)
        self._next_number += 1
        self._cut.append(flush)
        self._start_uploads()

    def _start_uploads(self) -> None:
        for flush in self._cut:
            if self._uploading >= self._in_flight_max:
                return
            if flush.slot < 0 and not flush.landed:
                flush.slot = self._next_slot
                self._next_slot += 1
                self._uploading += 1
                self._pool.submit(self._upload, flush)

    def _tick(self) -> None:
        """Cut the open flush when its window has passed."""
        with self._condition:
            while not self.closed:
                flush = self._open
                if flush.entries:
                    due = flush.opened + self.flush_seconds - time.monotonic()
                    if due <= 0:
                        self._cut_open()
                        continue
                    self._condition.wait(due)
                else:
                    self._condition.wait(1.0)

    def _upload(self, flush: _Flush) -> None:
        delay = 0.05
        while True:
            data = journal.encode(self.epoch, flush.number, flush.slot, flush.entries)
            try:
                outcome = self._put(flush, data)
            except StorageError as exc:
                with self._condition:
                    self.failure = str(exc)
                    if self.closed:
                        self._uploading -= 1
                        return
                log.warning("journal upload of flush %d failed (%s); retrying", flush.number, exc)
                with self._condition:  # a backoff that closing cuts short
                    self._condition.wait_for(lambda: self.closed, delay * random.uniform(0.5, 1.0))
                    if self.closed:
                        self._uploading -= 1
                        return
                delay = min(delay * 2, self.retry_seconds_max)
                continue
            with self._condition:
                if outcome == "landed":
                    flush.landed = True
                    self._landed.append((flush.number, flush.slot))
                    self._highest_landed = max(self._highest_landed, flush.slot)
                    self.failure = None
                    self.flushes += 1
                    self.bytes += len(data)
                    self._commit_prefix()
                elif outcome == "fenced":
                    if self.fenced is None:  # said once, whatever number of uploads see it
                        self.fenced = Fenced(
                            f"another agent took over the store at slot {flush.slot} (a newer epoch "
                            f"than {self.epoch}): this agent stops accepting writes"
                        )
                        log.error("%s", self.fenced.message)
                    self._wake_all()
                else:  # moved: the slot held an older agent's leftover
                    flush.slot = self._next_slot
                    self._next_slot += 1
                    self._condition.notify_all()
                    continue
                self._uploading -= 1
                self._start_uploads()
                if not self._uploading and self._open.number in self._waiters:
                    self._cut_open()  # its waiters would cut it themselves: spare them the wake-up
                self._condition.notify_all()
                return

    def _put(self, flush: _Flush, data: bytes) -> str:
        """ "landed", "moved" (the slot holds an older epoch's object) or "fenced"."""
        key = journal.slot_key(flush.slot)
        if self.store.put_new(key, data):
            return "landed"
        there = self.store.get(key)
        if there is None:  # deleted meanwhile (cannot happen below the commit floor): retry
            raise StoreUnavailable(f"journal slot {flush.slot} vanished while being written")
        try:
            epoch, number, _, kind = journal.decode_head(there)
        except journal.JournalDamaged:
            return "moved"  # a torn leftover of a replaced agent
        if epoch > self.epoch:
            return "fenced"
        if epoch == self.epoch and number == flush.number and kind == journal.KIND_JOURNAL:
            return "landed"  # ours: an upload whose answer was lost
        return "moved"

    def _commit_prefix(self) -> None:
        """Commit the landed flushes at the front (the condition is held)."""
        while self._cut and self._cut[0].landed:
            flush = self._cut.popleft()
            self.committed = flush.number
            self._backlog -= flush.size
            flush.entries = []
        self._wake_committed()

    # -- closing ------------------------------------------------------------------------

    def flush_all(self) -> None:
        """Cut the open flush and wait until everything added is committed."""
        with self._condition:
            number = self._open.number if self._open.entries else self._open.number - 1
            self._cut_open()
        if number > 0:
            self.wait(number)

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()
            self._wake_all()
        self._pool.shutdown(wait=True, cancel_futures=False)
