"""The Kafka door of one cell of a cluster whose topics are spread over cells
(decision 0033).

Each cell an agent serves has a Kafka door of its own, which is Kafka broker
``index + 1`` (the home cell's door is broker 1, as a one-cell cluster's): a door serves
the topics of its cell, and Metadata names, for every other topic, the broker of the
cell that holds it as the leader of its partitions (the other cells' doors publish how
they show their topics, in etcd). A Produce, Fetch or ListOffsets for a topic of another
cell is answered ``NOT_LEADER_OR_FOLLOWER``, after which Kafka clients read Metadata
again and go to the right broker. Groups, committed offsets and transactions live in
the home cell: FindCoordinator names broker 1, and another cell's door closes the
connection of a request only a coordinator serves (clients find their coordinator
again). Producer ids are unique in the cluster: a cell's door hands out ids above
``index << 48``.

``KafkaCells`` is what the door asks of its cluster agent (cluster/kafka_seat.py); the
door itself knows nothing of etcd.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from odradek.cluster.keys import HOME_CELL, cell_index
from odradek.protocols.kafka.codec.api import ApiKey

#: Requests only a coordinator serves (groups, offsets, transactions): the home cell's door.
COORDINATOR_ONLY = frozenset(
    {
        ApiKey.JOIN_GROUP,
        ApiKey.SYNC_GROUP,
        ApiKey.HEARTBEAT,
        ApiKey.LEAVE_GROUP,
        ApiKey.OFFSET_COMMIT,
        ApiKey.OFFSET_FETCH,
        ApiKey.DESCRIBE_GROUPS,
        ApiKey.DELETE_GROUPS,
        ApiKey.OFFSET_DELETE,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        ApiKey.CONSUMER_GROUP_DESCRIBE,
        ApiKey.SHARE_GROUP_HEARTBEAT,
        ApiKey.SHARE_GROUP_DESCRIBE,
        ApiKey.ADD_PARTITIONS_TO_TXN,
        ApiKey.ADD_OFFSETS_TO_TXN,
        ApiKey.END_TXN,
        ApiKey.TXN_OFFSET_COMMIT,
        ApiKey.DESCRIBE_TRANSACTIONS,
    }
)

#: A cell's door hands out producer ids from ``index << PRODUCER_ID_SHIFT`` on, so that
#: no two cells give the same id (the home cell's start at 0, as a one-cell cluster's).
PRODUCER_ID_SHIFT = 48


class Shape(Protocol):
    """How the door of a topic's cell shows it (cluster/keys.py's ShapeRecord)."""

    @property
    def topic(self) -> str: ...
    @property
    def cell(self) -> str: ...
    @property
    def incarnation(self) -> str: ...
    @property
    def partitions(self) -> int: ...


class KafkaCells(Protocol):
    """The door's view of its cluster (cluster/kafka_seat.py's KafkaSeat). Every
    method may block on etcd: the door calls them on its thread pool."""

    node_id: int
    cell: str  # the cell this door serves
    cluster_id: str  # the same for every cell's door

    def nodes(self) -> list[tuple[int, str, int]]: ...
    def coordinator(self) -> tuple[int, str, int] | None: ...
    def placed_node(self, topic: str) -> int | None: ...
    def shapes(self) -> Mapping[str, Shape]: ...
    def shape(self, topic: str) -> Shape | None: ...
    def publish(self, shapes: dict[str, tuple[str, int]]) -> int: ...
    def claim(self, topic: str) -> bool: ...
    def release(self, topic: str) -> None: ...
    # Transactions writing topics of several cells (txn_cells.py): a transactional id's
    # enlistments by cell, (value, revision); an all-or-nothing compare-and-swap of
    # them; and a watch calling notify(id hash, cell, value, revision) as each changes,
    # notify(None, None, None, 0) when changes may have been missed (it must not
    # block), until the function returned is called.
    def enlistments(self, hashed: str) -> dict[str, tuple[bytes, int]]: ...
    def swap_enlistments(
        self, hashed: str, changes: Mapping[str, tuple[bytes, int]]
    ) -> dict[str, int] | None: ...
    def follow_enlistments(
        self, notify: Callable[[str | None, str | None, bytes | None, int], None]
    ) -> Callable[[], None]: ...


def node_of_cell(cell: str) -> int:
    """The broker id of ``cell``'s door (``_cell`` is 1, ``_cell.<n>`` is n + 1;
    InvalidRequest for a name that is no cell's)."""
    return cell_index(cell) + 1


def cell_of_node(node: int) -> str:
    """The cell whose door is broker ``node`` (the inverse of node_of_cell)."""
    return HOME_CELL if node == 1 else f"{HOME_CELL}.{node - 1}"
