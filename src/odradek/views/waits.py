"""Synchronous commit: ``append(..., wait_for=["group:billing", "view:balances"])``.

Rules
-----
* The waiters are checked **before** anything is written: each must be
  ``group:NAME`` (an ``odradek`` consumer group that exists) or ``view:NAME`` (a view
  that exists), and must read the topic (its pattern matches it); otherwise the append
  is refused with ``InvalidRequest`` (``ViewNotFound`` for a view) and nothing is written.
* The append is then written and made durable as any other, holding the topic's writer
  only as long as any append does: the wait comes after, so other appends go on.
* It is acknowledged once every waiter has processed the appended offsets: a view has
  applied up to ``result.next_offset``, a group has settled (acked or dead-lettered)
  every record below it (its committed offset).
* Waiting sleeps on one condition that views notify after each applied batch and
  groups after each ack, rechecking at least every ``wait_for_recheck_seconds``: never
  a tight loop.
* At the timeout, or at once when a waiter cannot finish (its view stopped on an
  error, or it was deleted), the append stays durable and the caller gets
  ``WaitTimeout`` with ``.pending`` (the waiters not done) and ``.result``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, ViewNotFound, WaitTimeout
from odradek.names import compile_pattern
from odradek.types import AppendResult
from odradek.views.view import STATUS_FAILED

if TYPE_CHECKING:
    from odradek.groups.manager import GroupManager
    from odradek.views.manager import ViewManager

GROUP = "group"
VIEW = "view"


@dataclasses.dataclass(frozen=True)
class Waiter:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class Waits:
    def __init__(self, groups: GroupManager) -> None:
        self._groups = groups
        self.views: ViewManager | None = None  # set by the node once made
        self._condition = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        """Something a waiter waits for moved: a view applied, a group acked."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    # -- before the append ----------------------------------------------------------------------

    def check(self, topic: str, wait_for: object, timeout: object) -> tuple[list[Waiter], float]:
        """The waiters and timeout of an append to ``topic``; refuses bad ones (rules)."""
        waiters, seconds = parse(wait_for, timeout)
        for waiter in waiters:
            self._check_reads(waiter, topic)
        return waiters, seconds

    def _check_reads(self, waiter: Waiter, topic: str) -> None:
        if waiter.kind == VIEW:
            if self.views is None:
                raise ViewNotFound(f"there is no view {waiter.name!r}", waiter.name)
            self.views.view(waiter.name)  # raises ViewNotFound
            if not self.views.matches(waiter.name, topic):
                raise InvalidRequest(
                    f"view {waiter.name!r} does not read topic {topic!r}: it would never apply it"
                )
            return
        if not self._groups.exists(waiter.name):
            raise InvalidRequest(f"wait_for names group {waiter.name!r}, which does not exist")
        pattern, _ = self._groups.committed(waiter.name, topic)
        if pattern is not None and not compile_pattern(pattern)(topic):
            raise InvalidRequest(
                f"group {waiter.name!r} reads {pattern!r}, not topic {topic!r}: it would never ack it"
            )

    # -- after the append -------------------------------------------------------------------------

    def wait(self, topic: str, waiters: list[Waiter], result: AppendResult, timeout: float) -> AppendResult:
        """Return ``result`` once every waiter processed it; else WaitTimeout (rules)."""
        end = result.next_offset
        deadline = time.monotonic() + timeout
        pending = list(waiters)
        while True:
            with self._condition:
                generation = self._generation
            reasons: list[str] = []
            still: list[Waiter] = []
            for waiter in pending:
                done, reason = self._progress(waiter, topic, end)
                if reason is not None:
                    reasons.append(f"{waiter}: {reason}")
                    still.append(waiter)
                elif not done:
                    still.append(waiter)
            pending = still
            if not pending:
                return result
            remaining = deadline - time.monotonic()
            if reasons or remaining <= 0:
                names = ", ".join(str(waiter) for waiter in pending)
                why = "; ".join(reasons) if reasons else f"still working after {timeout} s"
                raise WaitTimeout(
                    f"the append to {topic} (offsets {result.base_offset} to {end - 1}) is durable, "
                    f"but {names} did not process it: {why}",
                    [str(waiter) for waiter in pending],
                    result,
                )
            with self._condition:
                if self._generation == generation:
                    self._condition.wait(min(remaining, limits.wait_for_recheck_seconds))

    def _progress(self, waiter: Waiter, topic: str, end: int) -> tuple[bool, str | None]:
        """(done, why it never will be) of one waiter."""
        try:
            if waiter.kind == VIEW:
                if self.views is None:
                    return False, "the views are closed"
                view = self.views.view(waiter.name)
                if view.position(topic) >= end:
                    return True, None
                if view.status == STATUS_FAILED:
                    return False, f"the view stopped: {view.error}"
                return False, None
            _, committed = self._groups.committed(waiter.name, topic)
            return committed is not None and committed >= end, None
        except OdradekError as exc:  # deleted meanwhile, or closing
            return False, exc.message


def parse(wait_for: object, timeout: object) -> tuple[list[Waiter], float]:
    """The waiters (without duplicates) and the timeout of a ``wait_for``, checked for
    form only: whether they exist is :meth:`Waits.check`'s question."""
    if isinstance(wait_for, (str, bytes)) or not isinstance(wait_for, Sequence):
        raise InvalidRequest(
            f"wait_for must be a list of 'group:NAME' or 'view:NAME', got {type(wait_for).__name__}"
        )
    if len(wait_for) > limits.wait_for_waiters_max:
        raise InvalidRequest(f"wait_for names {len(wait_for)} waiters, at most {limits.wait_for_waiters_max}")
    seconds = _check_timeout(timeout)
    waiters: list[Waiter] = []
    for item in wait_for:
        waiter = _parse(item)
        if waiter not in waiters:
            waiters.append(waiter)
    return waiters, seconds


def _parse(item: object) -> Waiter:
    if not isinstance(item, str):
        raise InvalidRequest(f"a wait_for entry must be 'group:NAME' or 'view:NAME', got {item!r}")
    kind, separator, name = item.partition(":")
    if not separator or kind not in (GROUP, VIEW) or not name:
        raise InvalidRequest(f"a wait_for entry must be 'group:NAME' or 'view:NAME', got {item[:300]!r}")
    return Waiter(kind, name)


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidRequest(f"timeout must be a number of seconds, got {timeout!r}")
    seconds = float(timeout)
    if not 0 < seconds <= limits.wait_for_timeout_seconds_max:  # NaN too
        raise InvalidRequest(
            f"timeout must be more than 0 and at most {limits.wait_for_timeout_seconds_max} s, "
            f"got {timeout!r}"
        )
    return seconds
