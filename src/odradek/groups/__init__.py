"""Consumer groups where the key, not a partition, is the unit of ordering and failure.

Engine-side and socket-free: :class:`GroupManager` (a node's ``groups``, node.py) is the
API the doors call for members (through membership.py), and the node's directory
(directory.py) the one they call to list, describe and delete groups of every kind.
See ``docs/decisions/0004-consumer-group-state.md`` for the design and
``docs/decisions/0008-consumer-groups-one-system.md`` for the two kinds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from odradek.groups.info import GroupInfo, MemberInfo, OffsetReset, TopicLag

if TYPE_CHECKING:
    from odradek.groups.delivery import AckResult, Delivery, DeliveryBatch, Rejection
    from odradek.groups.manager import GroupManager
    from odradek.groups.options import GroupOptions

# Imported on first use (PEP 562): a remote client reads GroupInfo without loading the
# engine the manager runs on.
_LAZY = {
    "AckResult": "odradek.groups.delivery",
    "Delivery": "odradek.groups.delivery",
    "DeliveryBatch": "odradek.groups.delivery",
    "Rejection": "odradek.groups.delivery",
    "GroupManager": "odradek.groups.manager",
    "GroupOptions": "odradek.groups.options",
}


def __getattr__(name: str) -> Any:
    try:
        module_name = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'odradek.groups' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


__all__ = [
    "AckResult",
    "Delivery",
    "DeliveryBatch",
    "GroupInfo",
    "GroupManager",
    "GroupOptions",
    "MemberInfo",
    "OffsetReset",
    "Rejection",
    "TopicLag",
]
