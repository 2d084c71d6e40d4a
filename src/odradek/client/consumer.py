"""A member of a consumer group, as ``client.subscribe(...)`` returns it.

The consumer is a thin door over ``Engine.groups`` (groups/manager.py): every
decision (what to deliver, when to redeliver, what to dead-letter) is the engine's.
What the consumer adds: it joins on creation, joins again by itself when the group
dropped it for silence (UnknownMember on poll), and leaves on ``close``.

Leaving cleanly (``close()``, or a ``with`` block left normally) gives the unsettled
deliveries back without counting an attempt. A ``with`` block left by an exception,
or ``close(failed=True)``, gives them back counting one each: the consumer may have
died of one of them, which must reach the dead-letter topic after ``max_deliveries``
(groups/group.py, "Attempts"). ``KeyboardInterrupt`` and ``SystemExit`` stop a
consumer cleanly.
"""

from __future__ import annotations

from odradek.errors import ClosedError, UnknownMember
from odradek.groups import AckResult, Delivery, DeliveryBatch, GroupInfo, GroupManager, GroupOptions
from odradek.groups.delivery import Settleable, decodable_deliveries


class Consumer:
    """One member of ``group`` reading ``pattern``. Thread-safe; usually one per thread."""

    def __init__(self, groups: GroupManager, pattern: str, group: str, options: GroupOptions) -> None:
        self._groups = groups
        self.pattern = pattern
        self.group = group
        self.options = options
        self.member_id = groups.join(group, pattern, options)
        self.closed = False

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``max_records`` deliveries; waits up to ``timeout`` seconds for the first.

        Records of one key come in version order, never more than the group's
        ``max_in_flight_per_key`` at once: ack (or nack) a delivery to get the next
        record of its key. A record that cannot be a Delivery (stored before appends
        refused undecodable records) is nacked and left out.
        """
        return decodable_deliveries(self.poll_batches(max_records, timeout), self.nack)

    def poll_batches(self, max_records: int = 500, timeout: float = 1.0) -> list[DeliveryBatch]:
        """Like :meth:`poll`, as Arrow record batches (one per topic): no per-record
        objects. Ack a whole batch with ``ack(batch)``."""
        self._check_open()
        try:
            return self._groups.poll_batches(self.group, self.member_id, max_records, timeout)
        except UnknownMember:
            # The group removed us after ack_timeout of silence; our deliveries went
            # back to it. Join again as a new member and carry on.
            self.member_id = self._groups.join(self.group, self.pattern, self.options)
            return self._groups.poll_batches(self.group, self.member_id, max_records, timeout)

    def ack(self, deliveries: Settleable) -> AckResult:
        """Settle one delivery, a batch, or any number of them at once.

        The result counts what was settled and lists, with a reason, each delivery that
        was not: ``"done"`` (already settled), ``"stale"`` (redelivered since, e.g. after
        its ack timeout: only the newer delivery can settle it) or ``"unknown"``.
        """
        self._check_open()
        return self._groups.ack(self.group, self.member_id, deliveries)

    def nack(self, deliveries: Settleable, delay: float = 0.0) -> AckResult:
        """Give deliveries back: each is redelivered after ``delay`` seconds (before
        any later record of its key), or dead-lettered after ``max_deliveries``."""
        self._check_open()
        return self._groups.nack(self.group, self.member_id, deliveries, delay)

    def describe(self) -> GroupInfo:
        return self._groups.describe_group(self.group)

    def close(self, *, failed: bool = False) -> None:
        """Leave the group: unsettled deliveries go back to it at once, each counting
        an attempt if ``failed`` (the consumer could not process them)."""
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

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self.close(failed=isinstance(error, Exception))

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, pattern={self.pattern!r}, member={self.member_id!r})"
