"""A poll of a member that is a member of several cells' groups (decision 0038), for
whichever door holds the parts: the Flight door's subscription over cells
(protocols/flight/cells_group.py) and the HTTP API's member over cells
(protocols/http_api/cells_member.py).

The poll asks first every part without waiting, one after the other, starting at
``first`` and with what is left of ``max_records``: records found there are answered
at once. Else every part waits at the same time, for at most
``limits.cluster_group_poll_slice_seconds``, each for its share of ``max_records``,
until one brings records or the poll's time is up. A record arriving while a member
waits reaches it within one slice. A part that fails does not take the other parts'
records with it (``poll_parts``).

Nothing here does IO: ``poll(part, max_records, wait)`` asks one part, and
``together(calls, wait)`` makes calls at the same time (each call on its part, the
answers in the calls' order, failing with the first failure).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import itertools
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from odradek import limits

T = TypeVar("T")

Calls = Sequence[tuple[int, Callable[[], list[T]]]]


def poll_parts(
    parts: int,
    first: int,
    max_records: int,
    timeout: float,
    poll: Callable[[int, int, float], list[T]],
    size: Callable[[T], int],
    together: Callable[[Calls[T], float], list[list[T]]],
    keep: Callable[[Exception], bool] = lambda _failure: True,
) -> list[T]:
    """What ``parts`` parts deliver to one poll (the module's docstring); ``size`` is
    how many records one item ``poll`` answers holds.

    A part that fails does not take what the others delivered with it: those records
    are the member's now (handed out by their cells), and dropped they would come back
    only once the member expired there, each such loss counting a delivery attempt; a
    member whose poll failed on a cell failing over again and again would see them
    dead-lettered without ever getting them. So records found are answered if
    ``keep(failure)`` says so (the caller keeps the failure for the next poll, or
    drops it when the part will fail again), and the failure is raised otherwise, or
    when nothing was found."""
    failures: list[Exception] = []

    def guarded(index: int, budget: int, wait: float) -> list[T]:
        try:
            return poll(index, budget, wait)
        except Exception as exc:  # noqa: BLE001 - weighed once every part answered
            failures.append(exc)
            return []

    order = [*range(first % parts, parts), *range(first % parts)]
    found: list[T] = []
    budget = max_records
    for index in order:  # what is there now, from every part
        if budget <= 0:
            break
        call = functools.partial(guarded, index, budget, 0.0)
        for item in together([(index, call)], 0.0)[0]:
            found.append(item)
            budget -= size(item)
    if failures:
        return _answered(found, failures[0], keep)
    if found or timeout <= 0:
        return found
    deadline = time.monotonic() + timeout
    while True:
        wait = min(deadline - time.monotonic(), limits.cluster_group_poll_slice_seconds)
        if wait <= 0:
            return []
        calls = [
            (index, functools.partial(guarded, index, share, wait))
            for index, share in shares(max_records, order)
        ]
        found = list(itertools.chain.from_iterable(together(calls, wait)))
        if failures:
            return _answered(found, failures[0], keep)
        if found:
            return found


def _answered(found: list[T], failure: Exception, keep: Callable[[Exception], bool]) -> list[T]:
    if found and keep(failure):
        return found
    raise failure


def together(
    pool: concurrent.futures.Executor,
    calls: Sequence[tuple[int, Callable[[], T]]],
    *,
    timeout: float | None = None,
    late: Callable[[int], None] | None = None,
) -> list[T]:
    """Each call's answer, in the calls' order, the calls made at the same time on
    ``pool`` (each in a copy of the caller's context); a call not done within
    ``timeout`` has ``late(part)`` called (which ends it: its call then fails). The
    first failure is raised once every call ended."""
    futures = [(index, pool.submit(contextvars.copy_context().run, call)) for index, call in calls]
    if timeout is not None and late is not None:
        _, pending = concurrent.futures.wait([future for _, future in futures], timeout=timeout)
        for index, future in futures:
            if future in pending:
                late(index)
    answers: list[T] = []
    failure: BaseException | None = None
    for _, future in futures:
        try:
            answers.append(future.result())
        except BaseException as exc:  # noqa: BLE001 - the first is raised below
            failure = failure or exc
    if failure is not None:
        raise failure
    return answers


def shares(max_records: int, order: list[int]) -> list[tuple[int, int]]:
    """``max_records`` shared among the parts in ``order``; a part whose share is 0 (more
    parts than records) waits out this round."""
    base, extra = divmod(max_records, len(order))
    given = [(index, base + (1 if position < extra else 0)) for position, index in enumerate(order)]
    return [(index, share) for index, share in given if share > 0]
