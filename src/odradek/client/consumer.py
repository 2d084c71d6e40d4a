"""A member of a consumer group, as ``client.subscribe(...)`` returns it.

The consumer is a :class:`~odradek.groups.membership.Membership` of the node's groups
(groups/manager.py): every decision (what to deliver, when to redeliver, what to
dead-letter) is the group's. The membership joins on creation, joins again by itself
when the group dropped it for silence (UnknownMember on poll), and leaves on
``close``; the consumer adds Delivery objects and the ``with`` block.

Leaving cleanly (``close()``, or a ``with`` block left normally) gives the unsettled
deliveries back without counting an attempt. A ``with`` block left by an exception,
or ``close(failed=True)``, gives them back counting one each: the consumer may have
died of one of them, which must reach the dead-letter topic after ``max_deliveries``
(groups/group.py, "Attempts"). ``KeyboardInterrupt`` and ``SystemExit`` stop a
consumer cleanly.
"""

from __future__ import annotations

from odradek import defaults
from odradek.groups import Delivery
from odradek.groups.delivery import decodable_deliveries
from odradek.groups.membership import Membership


class Consumer(Membership):
    """One member of ``group`` reading ``pattern``. Thread-safe; usually one per thread."""

    def poll(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[Delivery]:
        """Up to ``max_records`` deliveries; waits up to ``timeout`` seconds for the first.

        Records of one key come in version order, never more than the group's
        ``max_in_flight_per_key`` at once: ack (or nack) a delivery to get the next
        record of its key. A record that cannot be a Delivery (stored before appends
        refused undecodable records) is nacked and left out.
        """
        return decodable_deliveries(self.poll_batches(max_records, timeout), self.nack)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self.close(failed=isinstance(error, Exception))

    def __repr__(self) -> str:
        return f"Consumer(group={self.group!r}, pattern={self.pattern!r}, member={self.member_id!r})"
