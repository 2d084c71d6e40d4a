"""One member of an ``odradek`` consumer group, as a door holds it.

A :class:`Membership` joins on creation, joins again by itself when the group dropped
it for silence (UnknownMember on a poll: its deliveries went back to the group), and
leaves on :meth:`close`. The embedded client's ``Consumer`` (client/consumer.py) and
the Flight door's DoExchange member (protocols/flight/subscription.py) are both one;
every decision (what to deliver, when to redeliver, what to dead-letter) stays with
the group (group.py).

Leaving cleanly (``close()``) gives the unsettled deliveries back without counting an
attempt; ``close(failed=True)`` gives them back counting one each: the member may have
died of one of them, which must reach the dead-letter topic after ``max_deliveries``
(group.py, "Attempts").
"""

from __future__ import annotations

from odradek import defaults
from odradek.errors import ClosedError, UnknownMember
from odradek.groups.delivery import AckResult, DeliveryBatch, Settleable
from odradek.groups.info import GroupInfo
from odradek.groups.manager import GroupManager
from odradek.groups.options import GroupOptions


class Membership:
    """One member of ``group`` reading ``pattern``. Thread-safe."""

    def __init__(
        self,
        groups: GroupManager,
        pattern: str,
        group: str,
        options: GroupOptions,
        member_id: str | None = None,
    ) -> None:
        """``member_id``: the id to join as, and to join again as after the group
        dropped the member (else the group gives a new one each time)."""
        self._groups = groups
        self.pattern = pattern
        self.group = group
        self.options = options
        self._requested = member_id
        self.member_id = groups.join(group, pattern, options, member_id=member_id)
        self.closed = False

    def poll_batches(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[DeliveryBatch]:
        """Up to ``max_records`` deliveries as Arrow record batches (one per topic),
        waiting up to ``timeout`` seconds for the first."""
        self._check_open()
        try:
            return self._groups.poll_batches(self.group, self.member_id, max_records, timeout)
        except UnknownMember:
            # The group removed us after ack_timeout of silence; our deliveries went
            # back to it. Join again as a new member and carry on.
            requested = self._requested
            self.member_id = self._groups.join(self.group, self.pattern, self.options, member_id=requested)
            return self._groups.poll_batches(self.group, self.member_id, max_records, timeout)

    def ack(self, deliveries: Settleable) -> AckResult:
        """Settle one delivery, a batch, or any number of them at once.

        The result counts what was settled and lists, with a reason, each delivery that
        was not: ``"done"`` (already settled), ``"stale"`` (redelivered since, e.g. after
        its ack timeout: only the newer delivery can settle it) or ``"unknown"``.
        """
        self._check_open()
        return self._groups.ack(self.group, self.member_id, deliveries)

    def nack(self, deliveries: Settleable, delay: float = defaults.nack_delay_seconds) -> AckResult:
        """Give deliveries back: each is redelivered after ``delay`` seconds (before
        any later record of its key), or dead-lettered after ``max_deliveries``."""
        self._check_open()
        return self._groups.nack(self.group, self.member_id, deliveries, delay)

    def describe(self) -> GroupInfo:
        return self._groups.describe_group(self.group)

    def close(self, *, failed: bool = False) -> None:
        """Leave the group: unsettled deliveries go back to it at once, each counting
        an attempt if ``failed`` (the member could not process them)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._groups.leave(self.group, self.member_id, failed=failed)
        except ClosedError:
            pass

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the consumer of group {self.group!r} is closed")
