"""Consumer groups where the key, not a partition, is the unit of ordering and failure.

Engine-side and socket-free: :class:`GroupManager` (``Engine.groups``) is the API the
doors call. See ``docs/decisions/0004-consumer-group-state.md`` for the design.
"""

from odradek.groups.delivery import AckResult, Delivery, DeliveryBatch, Rejection
from odradek.groups.info import GroupInfo, MemberInfo, TopicLag
from odradek.groups.manager import GroupManager
from odradek.groups.options import GroupOptions

__all__ = [
    "AckResult",
    "Delivery",
    "DeliveryBatch",
    "GroupInfo",
    "GroupManager",
    "GroupOptions",
    "MemberInfo",
    "Rejection",
    "TopicLag",
]
