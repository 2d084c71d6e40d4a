"""What the Kafka door of one cell asks of its cluster agent (decision 0033).

With several cells (decision 0032) every cell the agent serves has a Kafka door of its
own: Kafka broker ``index + 1`` (the home cell is broker 1, as a one-cell cluster's
door), listening on the agent's Kafka port plus the cell's index. ``KafkaSeat`` is that
door's view of the cluster (protocols/kafka/cells.py's ``KafkaCells``):

* ``nodes``: every cell with a known owner as a broker, at its owner's advertised Kafka
  address plus the cell's index (what Metadata lists);
* ``coordinator``/``placed_node``: the home cell's broker, and the broker of a topic's
  cell (its partitions' leader);
* ``shape``/``shapes``: how the other cells' doors show their topics (``ShapeRecord``
  in etcd: id and partition count), read with a short cache, for Metadata;
* ``publish``: this cell's topics as its door shows them, written to etcd when they
  change (only the changes: a steady cell writes nothing);
* ``claim``/``release``: placing a topic the door creates in this cell, and deleting
  the placement of a topic it deleted.

Every method blocks on etcd (at most the agent's retry time): the door calls them on
its thread pool, never on its event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from odradek import limits
from odradek.cluster.etcd import OwnershipLost
from odradek.cluster.keys import HOME_CELL, Layout, ShapeRecord, cell_index
from odradek.cluster.placement import PlacementView
from odradek.errors import DataDamaged, OdradekError
from odradek.protocols.kafka.cells import node_of_cell

if TYPE_CHECKING:
    from odradek.cluster.agent import ClusterAgent
    from odradek.cluster.etcd import EtcdCluster

log = logging.getLogger(__name__)

SHAPES_CACHE_SECONDS = limits.kafka_shapes_cache_seconds


class KafkaSeat:
    """The Kafka door of ``cell`` on ``agent`` (see the module docstring)."""

    def __init__(self, agent: ClusterAgent, cell: str) -> None:
        self.agent = agent
        self.cell = cell
        self.node_id = node_of_cell(cell)
        self._lock = threading.Lock()
        self._shapes: dict[str, ShapeRecord] = {}
        self._shapes_read = 0.0  # monotonic time of the cached listing (0: none)
        self._published: dict[str, ShapeRecord] | None = None  # None: not read from etcd yet
        self._shape_cache: dict[str, tuple[ShapeRecord | None, float]] = {}  # topic: (shape, read at)
        # The epoch the agent serves the cell at as the door opens: the door's writes of
        # transactions' enlistments are fenced by it (a door outliving its agent's
        # ownership, a paused agent waking, changes nothing).
        self.epoch = agent.epoch_of(cell)
        # The Kafka cluster id every cell's door gives: the same for all, from the cluster's name.
        digest = hashlib.sha256(f"odradek/{agent.settings.cluster}".encode()).digest()[:16]
        self.cluster_id = base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _view(self) -> PlacementView:
        view = self.agent.placement
        if view is None:  # a cluster of one cell has no seats
            raise OdradekError("a cluster of one cell has no Kafka seats")
        return view

    # --- brokers and leaders ------------------------------------------------------------

    def _node(self, cell: str) -> tuple[int, str, int] | None:
        """(broker id, host, port) of ``cell``'s door: its owner's advertised Kafka
        address plus the cell's index; None while no owner with a Kafka door is known."""
        address = self.agent.cell_door("kafka", cell)
        if address is None:
            return None
        host, port = address
        return node_of_cell(cell), host, port + cell_index(cell)

    def nodes(self) -> list[tuple[int, str, int]]:
        """(broker id, host, port) of every cell whose owner is known and has a Kafka door."""
        return [node for node in map(self._node, self.agent.cells) if node is not None]

    def coordinator(self) -> tuple[int, str, int] | None:
        """The home cell's broker (groups, offsets and transactions live there), or None
        while it has no known owner."""
        return self._node(HOME_CELL)

    def placed_node(self, topic: str) -> int | None:
        """The broker of the cell holding ``topic``, or None when it is placed nowhere."""
        cell = self._view().cell_of(topic)
        if cell is None:
            record = self.agent.placement_of(topic)
            cell = record.cell if record is not None else None
        return node_of_cell(cell) if cell is not None else None

    # --- shapes -------------------------------------------------------------------------

    def shapes(self) -> dict[str, ShapeRecord]:
        """Every topic's shape, as etcd had it at most ``SHAPES_CACHE_SECONDS`` ago."""
        with self._lock:
            if time.monotonic() - self._shapes_read < SHAPES_CACHE_SECONDS:
                return dict(self._shapes)
        shapes = self.agent.etcd_call(lambda cluster: cluster.shapes(), "the topics' Kafka shapes")
        with self._lock:
            self._shapes, self._shapes_read = shapes, time.monotonic()
        return dict(shapes)

    def shape(self, topic: str) -> ShapeRecord | None:
        """``topic``'s shape, as etcd had it at most ``SHAPES_CACHE_SECONDS`` ago: from
        the listing if it is that fresh, else read for this topic alone (a topic just
        created elsewhere is seen)."""
        now = time.monotonic()
        with self._lock:
            if now - self._shapes_read < SHAPES_CACHE_SECONDS:  # a fresh listing answers for all
                return self._shapes.get(topic)
            cached = self._shape_cache.get(topic)
            if cached is not None and now - cached[1] < SHAPES_CACHE_SECONDS:
                return cached[0]
        record = self.agent.etcd_call(lambda cluster: cluster.shape(topic), f"the Kafka shape of {topic!r}")
        with self._lock:
            if len(self._shape_cache) >= limits.cluster_placements_max:
                self._shape_cache.clear()  # bounded: a cache, read again when needed
            self._shape_cache[topic] = (record, time.monotonic())
        return record

    def publish(self, shapes: dict[str, tuple[str, int]]) -> int:
        """Make etcd show this cell's topics as ``shapes`` says (topic: (incarnation,
        partitions)): writes the shapes that changed, deletes those of this cell whose
        topic is gone from it (compared on the value: a shape the topic's new cell wrote
        stays). How many keys it wrote or deleted."""
        if len(shapes) > limits.cluster_placements_max:
            raise OdradekError(f"cell {self.cell} has {len(shapes)} topics, more than etcd keeps shapes of")
        if self._published is None:
            known = self.agent.etcd_call(lambda cluster: cluster.shapes(), "the topics' Kafka shapes")
            self._published = {topic: record for topic, record in known.items() if record.cell == self.cell}
        published = self._published
        changes = 0
        for topic, (incarnation, partitions) in shapes.items():
            record = ShapeRecord(topic, self.cell, incarnation, partitions)
            if published.get(topic) != record:
                self.agent.etcd_call(functools.partial(_put, record=record), f"the Kafka shape of {topic!r}")
                published[topic] = record
                changes += 1
        for topic in [topic for topic in published if topic not in shapes]:
            record = published.pop(topic)
            self.agent.etcd_call(functools.partial(_delete, record=record), f"the Kafka shape of {topic!r}")
            changes += 1
        if changes:
            with self._lock:
                self._shapes_read = 0.0  # the next listing reads again
        return changes

    # --- topics the door creates and deletes --------------------------------------------

    def claim(self, topic: str) -> bool:
        """Place ``topic`` in this cell unless it is placed already: whether it is this
        cell's now (False: another cell holds it)."""
        self._view()
        return self.agent.claim(topic, self.cell)

    def release(self, topic: str) -> None:
        """Drop ``topic``'s placement if it names this cell (the door deleted the topic)."""
        self.agent.forget(topic, self.cell)

    # --- Kafka transactions over cells (decision 0037) ---------------------------------

    def enlistments(self, hashed: str) -> dict[str, tuple[bytes, int]]:
        """A transactional id's enlistments by cell, as etcd has them now: (value,
        revision)."""
        return self.agent.etcd_call(
            lambda cluster: cluster.enlistments(hashed), "a Kafka transaction's enlistments"
        )

    def swap_enlistments(
        self, hashed: str, changes: Mapping[str, tuple[bytes, int]]
    ) -> dict[str, int] | None:
        """Write each cell's enlistment if its revision is still the one given, all or
        none: the new revisions, or None if one changed; only while this agent still
        serves the door's cell at the epoch it opened under (OwnershipLost if not)."""
        epoch = self.epoch
        if epoch is None:
            raise OwnershipLost(f"this agent did not serve cell {self.cell} when its Kafka door opened")
        return self.agent.etcd_call(
            lambda cluster: cluster.swap_enlistments(hashed, changes, owner=(self.cell, epoch)),
            "a Kafka transaction's enlistments",
        )

    def follow_enlistments(
        self, notify: Callable[[str | None, str | None, bytes | None, int], None]
    ) -> Callable[[], None]:
        """Call ``notify(id hash, cell, value, revision)`` when an enlistment changes,
        ``notify(None, None, None, 0)`` when changes may have been missed, until the
        function returned is called (``notify`` runs on the agent's loop: it must not
        block)."""
        layout = Layout(self.agent.settings.cluster)

        def changed(change: tuple[bytes, bytes | None, int] | None) -> None:
            if change is None:
                notify(None, None, None, 0)
                return
            key, value, revision = change
            try:
                hashed, cell = layout.of_enlistment(key)
            except DataDamaged as exc:
                log.warning("an enlistment key is not one: %s", exc)
                return
            notify(hashed, cell, value, revision)

        return self.agent.follow_keys(
            lambda cluster: cluster.layout.transactions_prefix, changed, "the Kafka transactions' enlistments"
        )


async def _put(cluster: EtcdCluster, record: ShapeRecord) -> int:
    return await cluster.put_shape(record)


async def _delete(cluster: EtcdCluster, record: ShapeRecord) -> bool:
    return await cluster.delete_shape(record)
