"""The in-flight byte budget shared by the doors.

Goal: reservations never exceed the capacity; a request larger than the whole budget
is refused at once with a clear error; waiters (threads and asyncio tasks alike) are
woken by a release from any thread, in arrival order; a wait that runs out or is
cancelled leaves nothing reserved.
Method: a small ByteBudget driven from threads and an event loop; waits for a waiter
to be queued poll ``budget.waiting`` against a generous deadline (no sleeps that
assume a quiet machine). Timeouts that must run out are short because nothing can
release in the meantime.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from odradek.budget import BudgetExhausted, ByteBudget, Reservation
from odradek.errors import RequestTooLarge, Unavailable

# Generous: no assertion is about speed.
deadline_seconds = 30.0


def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


def test_reservations_stay_within_the_capacity_and_release_once() -> None:
    budget = ByteBudget(100)
    first = budget.try_reserve(60)
    assert first is not None
    assert budget.try_reserve(41) is None  # would exceed 100
    second = budget.try_reserve(40)
    assert second is not None
    assert budget.in_use_bytes == 100
    first.release()
    first.release()  # a second release gives nothing back twice
    assert budget.in_use_bytes == 40
    with second:
        pass
    assert budget.in_use_bytes == 0


def test_a_request_larger_than_the_whole_budget_is_refused_at_once() -> None:
    budget = ByteBudget(1000)
    with pytest.raises(RequestTooLarge) as refused:
        budget.reserve(1001, timeout=deadline_seconds)
    assert "1001" in refused.value.message and "1000" in refused.value.message
    assert budget.in_use_bytes == 0 and budget.waiting == 0


def test_a_waiting_thread_gets_its_bytes_when_another_releases() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(80, timeout=0)
    got: list[Reservation] = []
    waiter = threading.Thread(target=lambda: got.append(budget.reserve(50, timeout=deadline_seconds)))
    waiter.start()
    _wait_until(lambda: budget.waiting == 1, "the thread waits")
    assert not got
    held.release()
    waiter.join(deadline_seconds)
    assert got and got[0].size == 50
    assert budget.in_use_bytes == 50


def test_a_wait_that_runs_out_holds_nothing() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(100, timeout=0)
    with pytest.raises(BudgetExhausted) as refused:
        budget.reserve(10, timeout=0.01)
    assert isinstance(refused.value, Unavailable) and refused.value.retryable
    assert budget.waiting == 0 and budget.in_use_bytes == 100
    held.release()
    assert budget.in_use_bytes == 0


def test_waiters_are_served_in_arrival_order() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(90, timeout=0)
    large: list[Reservation] = []
    waiter = threading.Thread(target=lambda: large.append(budget.reserve(60, timeout=deadline_seconds)))
    waiter.start()
    _wait_until(lambda: budget.waiting == 1, "the large request waits")
    # 10 bytes are free, but a small request may not overtake the waiting one.
    assert budget.try_reserve(5) is None
    held.release()
    waiter.join(deadline_seconds)
    assert large and budget.in_use_bytes == 60


def test_an_asyncio_waiter_is_woken_by_a_release_from_another_thread() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(100, timeout=0)

    async def scenario() -> Reservation:
        waiting = asyncio.create_task(budget.reserve_async(30, timeout=deadline_seconds))
        while budget.waiting == 0:
            await asyncio.sleep(0.001)
        threading.Thread(target=held.release).start()
        return await waiting

    reservation = asyncio.run(scenario())
    assert reservation.size == 30 and budget.in_use_bytes == 30


def test_an_asyncio_wait_that_runs_out_or_is_cancelled_holds_nothing() -> None:
    budget = ByteBudget(100)
    held = budget.reserve(100, timeout=0)

    async def scenario() -> None:
        with pytest.raises(BudgetExhausted):
            await budget.reserve_async(10, timeout=0.01)
        waiting = asyncio.create_task(budget.reserve_async(10, timeout=deadline_seconds))
        while budget.waiting == 0:
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert budget.waiting == 0 and budget.in_use_bytes == 100
    held.release()
    assert budget.in_use_bytes == 0
