"""Consumer groups where the key, not a partition, is the unit of ordering and failure.

Engine-side and socket-free: :class:`GroupManager` (a node's ``groups``, node.py) is the
API the doors call for members (through membership.py), and the node's directory
(directory.py) the one they call to list, describe and delete groups of every kind.
See ``docs/decisions/0004-consumer-group-state.md`` for the design and
``docs/decisions/0008-consumer-groups-one-system.md`` for the two kinds.
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
