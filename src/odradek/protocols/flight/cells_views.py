"""Every cell's topics as a view of the home cell reads them (decision 0041).

Over a cluster whose topics are spread over cells (decision 0032) a view lives in the
home cell, as on one cell: its definition, table and positions are the home cell's
engine's, and the view actions go to the agent serving the home cell. Its pattern
matches topics of every cell, so its applier reads them through :class:`CellsTopics`:

* **which topics**: the placements (every agent's view of ``catalog/cells/``), matched
  by the pattern, engine names;
* **a topic of a cell this agent serves**: that cell's engine, here;
* **a topic of another cell**: the agent serving that cell, with a ``describe_topic``
  action and a ``fetch`` ticket (the view's ``value_format`` on it), sent with this
  agent's own credentials when authentication is on (decision 0040); records in the
  cell's sealed segments are read from the store instead (decision 0042), so a view
  catching up on another cell's history costs that cell's agent nothing.

A cell changing hands answers ``Unavailable`` (or ``NotOwner``) for a while: the view
skips the topic for that round and reads it again at the next (views/view.py). The
applier is woken by its own engine's arrivals only, so it looks for other cells'
records every ``limits.view_cells_poll_seconds``.

Appends waiting for a view (``wait_for=["view:NAME"]``) need nothing more: the client
asks the agent serving the home cell to check and wait (its ``check_waiters`` and
``wait_for`` actions), where the view's positions of every cell's topics are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from odradek.cluster.keys import HOME_CELL
from odradek.protocols.flight import messages

if TYPE_CHECKING:
    from odradek.node import Node
    from odradek.protocols.flight.server import FlightService
    from odradek.types import TopicInfo


class CellsTopics:
    """The topics of every cell, read here or through the agent serving each."""

    def __init__(self, service: FlightService) -> None:
        self._service = service

    def list_topics(self, pattern: str | None = None) -> list[str]:
        return self._service.engine.list_topics(pattern)  # the placements (server.py's _CellRouter)

    def describe_topic(self, name: str) -> TopicInfo:
        node = self._node(name)
        if node is not None:
            return node.engine.describe_topic(name)
        url, header = self._peer(name)
        peers = self._service.peers
        return messages.decode_topic_info(
            peers.action(url, "describe_topic", messages.dump({"name": name}), header)
        )

    def fetch(
        self, topic: str, offset: int, *, max_records: int, max_bytes: int, value_format: str
    ) -> list[pa.RecordBatch]:
        node = self._node(topic)
        if node is not None:
            return node.engine.fetch(
                topic, offset, max_records=max_records, max_bytes=max_bytes, value_format=value_format
            )
        replica = self._service.replica_of(topic)
        if replica is not None:  # its sealed segments from the store (decision 0042)
            answered = replica.fetch(
                topic, offset, max_records=max_records, max_bytes=max_bytes, value_format=value_format
            )
            if answered is not None:
                return answered
        url, header = self._peer(topic)
        request = messages.FetchRequest(
            topic, offset, max_records, max_bytes, None if value_format == "typed" else value_format
        )
        return list(self._service.peers.read(url, messages.encode_ticket(request), header, lambda: False))

    def _node(self, topic: str) -> Node | None:
        """The node of ``topic``'s cell when this agent serves it."""
        cluster = self._service.cluster
        assert cluster is not None
        cell = cluster.cell_of(topic)
        return self._service.cell_node(cell if cell else HOME_CELL)

    def _peer(self, topic: str) -> tuple[str, str | None]:
        """The agent serving ``topic``'s cell and the credentials to ask it with."""
        cluster = self._service.cluster
        assert cluster is not None
        return self._service.owner_url(cluster.cell_of(topic)), self._service.agent_authorization()
