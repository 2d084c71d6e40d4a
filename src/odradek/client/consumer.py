"""A member of a consumer group, as ``client.subscribe(...)`` returns it.

The consumer is a thin door over ``Engine.groups`` (groups/manager.py): every
decision (what to deliver, when to redeliver, what to dead-letter) is the engine's.
What the consumer adds: it joins on creation, joins again by itself when the group
dropped it for silence (UnknownMember on poll), and leaves on ``close``.
"""

from __future__ import annotations

from odradek.errors import ClosedError, UnknownMember
from odradek.groups import AckResult, Delivery, DeliveryBatch, GroupInfo, GroupManager, GroupOptions
from odradek.groups.delivery import Settleable


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
        record of its key.
        """
        deliveries: list[Delivery] = []
        for batch in self.poll_batches(max_records, timeout):
            deliveries.extend(batch.deliveries())
        return deliveries

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

    def close(self) -> None:
        """Leave the group: unsettled deliveries go back to it at once."""
        if self.closed:
            return
        self.closed = True
        try:
            self._groups.leave(self.group, self.member_id)
        except ClosedError:
            pass

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the consumer of group {self.group!r} is closed")

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, pattern={self.pattern!r}, member={self.member_id!r})"
