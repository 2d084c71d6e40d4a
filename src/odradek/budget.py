"""The in-flight byte budget: how many bytes of requests the doors hold at once.

Theory of operation
-------------------
One :class:`ByteBudget` is shared by every door of a server (``odradek serve`` makes
it from ``--inflight-bytes``). A door *reserves* a request's size before it buffers the
request's bytes (the Kafka door as soon as a frame's size prefix is read, the registry
before it reads a body; the Flight door as soon as gRPC hands it a batch, since gRPC
reads a message whole before the service sees it) and *releases* the reservation once
the bytes are no longer held. While the budget is exhausted, a door waits for a
reservation instead of reading: the peer's bytes stay in its socket and TCP slows the
peer down (back-pressure).

Rules
-----
* A request larger than the whole budget can never be granted: it is refused at once
  with :class:`~odradek.errors.RequestTooLarge`, which names both sizes.
* Waiters are granted in arrival order: a large request is not starved by a stream of
  small ones that would fit before it.
* A wait is bounded (``timeout``); when it runs out the caller gets
  :class:`BudgetExhausted` (an :class:`~odradek.errors.Unavailable`: retry later) and
  holds nothing.
* Threads wait with :meth:`ByteBudget.reserve`, asyncio tasks with
  :meth:`ByteBudget.reserve_async`; a release from any thread wakes both kinds. A
  cancelled asyncio wait leaves nothing reserved.
* :meth:`Reservation.release` may be called more than once and from any thread; only
  the first call gives the bytes back.
"""

from __future__ import annotations

import asyncio
import collections
import threading

from odradek.errors import RequestTooLarge, Unavailable


class BudgetExhausted(Unavailable):
    """No room in the in-flight budget came free in time; nothing is reserved."""


class Reservation:
    """Bytes held from a :class:`ByteBudget` until :meth:`release`; a context manager."""

    __slots__ = ("_budget", "_released", "size")

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        self._budget._release(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Waiter:
    """One request waiting for room: woken through an Event (a thread) or a future
    on its event loop (a task)."""

    __slots__ = ("event", "future", "granted", "loop", "size")

    def __init__(
        self,
        size: int,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.size = size
        self.event = event
        self.loop = loop
        self.future = future
        self.granted = False


class ByteBudget:
    """At most ``capacity_bytes`` reserved at once, shared by threads and event loops."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError(f"an in-flight budget must be at least 1 byte, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def in_use_bytes(self) -> int:
        """Bytes reserved now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for room now."""
        return len(self._waiters)

    def try_reserve(self, size: int) -> Reservation | None:
        """A reservation if ``size`` fits now (and nobody waits before it), else None."""
        self._check(size)
        with self._lock:
            if self._fits(size):
                self._in_use += size
                return Reservation(self, size)
        return None

    def reserve(self, size: int, timeout: float) -> Reservation:
        """Wait up to ``timeout`` seconds for ``size`` bytes (a thread's call)."""
        self._check(size)
        with self._lock:
            if self._fits(size):
                self._in_use += size
                return Reservation(self, size)
            event = threading.Event()
            waiter = _Waiter(size, event=event)
            self._waiters.append(waiter)
        event.wait(max(timeout, 0.0))
        if self._settle(waiter):
            return Reservation(self, size)
        raise self._exhausted(size, timeout)

    async def reserve_async(self, size: int, timeout: float) -> Reservation:
        """Wait up to ``timeout`` seconds for ``size`` bytes (an asyncio task's call)."""
        self._check(size)
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._fits(size):
                self._in_use += size
                return Reservation(self, size)
            granted: asyncio.Future[None] = loop.create_future()
            waiter = _Waiter(size, loop=loop, future=granted)
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(granted), max(timeout, 0.0))
        except TimeoutError:
            if self._settle(waiter):  # granted as the wait ran out
                return Reservation(self, size)
            raise self._exhausted(size, timeout) from None
        except BaseException:  # cancelled: the task holds nothing afterwards
            self._abandon(waiter)
            raise
        return Reservation(self, size)

    # -- inside ---------------------------------------------------------------------------

    def _check(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cannot reserve a negative size ({size})")
        if size > self.capacity_bytes:
            raise RequestTooLarge(
                f"a request of {size} bytes is larger than the server's whole in-flight budget "
                f"of {self.capacity_bytes} bytes (odradek serve --inflight-bytes); send it in "
                "smaller requests or raise the budget"
            )

    def _fits(self, size: int) -> bool:
        return not self._waiters and self._in_use + size <= self.capacity_bytes

    def _exhausted(self, size: int, timeout: float) -> BudgetExhausted:
        return BudgetExhausted(
            f"the server is busy: no room for a request of {size} bytes in its in-flight budget "
            f"of {self.capacity_bytes} bytes came free within {timeout:g} s; retry later"
        )

    def _settle(self, waiter: _Waiter) -> bool:
        """After a wait ran out: True if the waiter was granted after all, else it
        leaves the queue."""
        with self._lock:
            if waiter.granted:
                return True
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._grant_waiters()  # those behind it may fit now
            return False

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter gave up: take back what it was granted, or take it out of the queue."""
        with self._lock:
            if waiter.granted:
                self._in_use -= waiter.size
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            self._grant_waiters()  # those behind it may fit now

    def _release(self, reservation: Reservation) -> None:
        with self._lock:
            if reservation._released:
                return
            reservation._released = True
            self._in_use -= reservation.size
            self._grant_waiters()

    def _grant_waiters(self) -> None:
        """Grant waiters in order while the first one fits (the lock is held)."""
        while self._waiters and self._in_use + self._waiters[0].size <= self.capacity_bytes:
            waiter = self._waiters.popleft()
            self._in_use += waiter.size
            waiter.granted = True
            if waiter.event is not None:
                waiter.event.set()
            elif waiter.loop is not None and waiter.future is not None:
                try:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
                except RuntimeError:  # its loop is closed: nobody is left to take the bytes
                    self._in_use -= waiter.size
                    waiter.granted = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
