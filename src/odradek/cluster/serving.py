"""What a cluster agent serves, and how it changes role (cluster/agent.py's ``Role``).

The agent's Flight door and metrics endpoint listen from the start, whatever its role:
a standby's Flight door answers NotOwner naming the owner (and ``ping`` and
``cluster_status``); its metrics say it stands by. When the agent becomes the owner it
opens the node on the store (attaching fences the previous owner: decision 0011), hands
it to the Flight door and the metrics, starts the Kafka door on its configured port and
adds the node's registry, HTTP API and console to the agent's registry listener (which
listens for the agent's whole life: decisions 0034 and 0036). When it stops owning, it
undoes that in reverse order.

A standby's Kafka port is not silent: it relays what leads a Kafka client to the owner
(protocols/kafka/relay.py). The relay gives the port up when the agent becomes the
owner (before the Kafka door binds it) and takes it again when the agent stops owning.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from odradek.cluster.agent import CELL
from odradek.errors import OdradekError, Unavailable
from odradek.node import Node

if TYPE_CHECKING:
    from odradek.cluster.agent import ClusterAgent
    from odradek.protocols.flight.server import FlightService
    from odradek.protocols.metrics import Metrics

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AgentDoors:
    """How to open the data and start the owner-only doors (from serve's settings)."""

    open_node: Callable[[], Node]
    # Each starts a door over the node and returns what closes it (None: the door is off).
    owner_doors: list[Callable[[Node], Any]] = dataclasses.field(default_factory=list)
    # Each starts a door of a standby (no node: the Kafka relay, protocols/kafka/relay.py)
    # on the port an owner door takes when the agent owns the data; returns what closes it.
    standby_doors: list[Callable[[], Any]] = dataclasses.field(default_factory=list)
    # Opens a cell other than the home cell (decision 0032): its engine on the cell's
    # prefix of the store, without the owner doors (which serve the home cell). None: the
    # cluster has the home cell only.
    open_cell: Callable[[str], Node] | None = None
    # Each starts a door over a cell other than the home cell (the cell's Kafka door,
    # decision 0033) and returns what closes it (None: the door is off).
    cell_doors: list[Callable[[Node, str], Any]] = dataclasses.field(default_factory=list)


class AgentGate:
    """The Flight door's view of its cluster agent (the door's ``ClusterGate``). The door
    is made first (the agent registers the door's address), the agent set here after."""

    def __init__(self) -> None:
        self.agent: ClusterAgent | None = None

    def _agent(self) -> ClusterAgent:
        if self.agent is None:
            raise Unavailable("the agent is joining its cluster; retry")
        return self.agent

    def check_owner(self, cell: str = CELL) -> None:
        self._agent().check_owner(cell)

    def not_owner(self, cell: str = CELL) -> OdradekError:
        return self._agent().not_owner(cell)

    def status(self) -> dict[str, Any]:
        return self._agent().status()

    def cell_count(self) -> int:
        return self._agent().cell_count()

    def cell_of(self, topic: str) -> str:
        return self._agent().cell_of(topic)

    def place(self, topic: str) -> str:
        return self._agent().place(topic)

    def claim(self, topic: str, cell: str) -> bool:
        return self._agent().claim(topic, cell)

    def forget(self, topic: str, cell: str) -> None:
        self._agent().forget(topic, cell)

    def authorization(self) -> str:
        return self._agent().credentials.authorization

    def topics(self) -> list[str]:
        return self._agent().topics()

    def move_target(self, cell: str, to: str | None, target: str | None) -> tuple[str, str, str | None]:
        return self._agent().move_target(cell, to, target)

    def moved(self, topic: str, from_cell: str, to_cell: str) -> None:
        self._agent().moved(topic, from_cell, to_cell)

    def hand_over(self, to: str | None) -> dict[str, Any]:
        return self._agent().hand_over(to)


class AgentRole:
    """``Role`` for ``odradek serve --etcd`` (see the module docstring)."""

    def __init__(self, doors: AgentDoors, flight: FlightService, metrics: Metrics | None) -> None:
        self.doors = doors
        self.flight = flight
        self.metrics = metrics
        self._lock = threading.Lock()
        self.node: Node | None = None  # the home cell's, while this agent owns it
        self.cells: dict[str, Node] = {}  # the other cells' it owns (decision 0032)
        self._cell_doors: dict[str, list[Any]] = {}  # the doors running over each of them
        self._opened: list[Any] = []
        self._standing_by: list[Any] = []  # the standby doors running
        self._closed = False

    def start_standby(self) -> None:
        """Start the standby doors (before the agent joins: it stands by until it owns)."""
        with self._lock:
            self._start_standby()

    def become_owner(self, epoch: int, cell: str = CELL) -> None:
        if cell != CELL:
            self._open_cell(epoch, cell)
            return
        with self._lock:
            if self.node is not None:  # a previous ownership not closed: close it first
                self._close(graceful=False, stand_by=False)
            self._stop_standby()  # their ports go to the owner doors
            try:
                node = self.doors.open_node()
                opened = _start_doors(
                    node, [functools.partial(start, node) for start in self.doors.owner_doors]
                )
            except BaseException:
                self._start_standby()
                raise
            self.node = node
            self._opened = opened
            if self.metrics is not None:
                self.metrics.attach(node)
            self.flight.serve_node(node)
            log.info("serving the data as the owner (epoch %d)", epoch)

    def stop_owning(self, graceful: bool, cell: str = CELL) -> None:
        with self._lock:
            if cell == CELL:
                self._close(graceful)
            else:
                self._close_cell(cell, graceful)

    def topics(self, cell: str) -> list[str]:
        with self._lock:
            node = self.node if cell == CELL else self.cells.get(cell)
            return node.engine.list_topics() if node is not None else []

    def take_back(self, cell: str, keep: Callable[[str], bool]) -> list[str]:
        with self._lock:
            node = self.node if cell == CELL else self.cells.get(cell)
            if node is None or node.engine.store is None:
                return []
            taken = [topic for topic in node.engine.released_topics() if keep(topic)]
            for topic in taken:
                node.engine.adopt_topic(topic)
            return taken

    def close(self) -> None:
        """Stop serving for good (the agent left): the owner's doors and the standby's."""
        with self._lock:
            self._closed = True
            for cell in list(self.cells):
                self._close_cell(cell, graceful=True)
            self._close(graceful=True, stand_by=False)
            self._stop_standby()

    def _open_cell(self, epoch: int, cell: str) -> None:
        """Open and serve a cell other than the home cell (its engine only: the owner
        doors and the metrics are the home cell's)."""
        if self.doors.open_cell is None:
            raise Unavailable(f"this agent serves the home cell only; cell {cell} is not its to open")
        with self._lock:
            if cell in self.cells:  # a previous ownership not closed: close it first
                self._close_cell(cell, graceful=False)
            node = self.doors.open_cell(cell)
            opened = _start_doors(
                node, [functools.partial(start, node, cell) for start in self.doors.cell_doors]
            )
            self.cells[cell] = node
            self._cell_doors[cell] = opened
            self.flight.serve_node(node, cell)
            log.info("serving cell %s as its owner (epoch %d)", cell, epoch)

    def _close_cell(self, cell: str, graceful: bool) -> None:
        node = self.flight.unserve(cell) or self.cells.get(cell)
        for door in reversed(self._cell_doors.pop(cell, [])):
            _close_quietly(door)
        self.cells.pop(cell, None)
        if node is not None:
            node.close()  # as in _close: what the journal holds commits
            log.info("stopped serving cell %s (%s)", cell, "handed over" if graceful else "ownership lost")

    def _start_standby(self) -> None:
        if self._closed or self._standing_by:
            return
        for start in self.doors.standby_doors:
            try:
                door = start()
            except Exception:  # a standby door is a convenience: the agent goes on without it
                log.exception("a standby door could not start")
                continue
            if door is not None:
                self._standing_by.append(door)

    def _stop_standby(self) -> None:
        for door in reversed(self._standing_by):
            _close_quietly(door)
        self._standing_by = []

    def _close(self, graceful: bool, stand_by: bool = True) -> None:
        node = self.flight.unserve()
        if self.metrics is not None:
            self.metrics.detach()
        for door in reversed(self._opened):
            _close_quietly(door)
        self._opened = []
        node = node or self.node
        self.node = None
        if node is not None:
            # Graceful or not, closing commits what the journal holds: a write that
            # lands was in flight (never acknowledged yet) and is valid if it landed
            # before a new owner's fence; one meeting the fence fails (decision 0012).
            node.close()
            log.info("stopped serving the data (%s)", "handed over" if graceful else "ownership lost")
        if stand_by:
            self._start_standby()


def _start_doors(node: Node, starts: list[Callable[[], Any]]) -> list[Any]:
    """Start the doors over ``node`` (each start returns what closes its door, or None:
    off); if one fails, those started are closed, then the node, and the error raised."""
    opened: list[Any] = []
    try:
        for start in starts:
            door = start()
            if door is not None:
                opened.append(door)
    except BaseException:
        for door in reversed(opened):
            _close_quietly(door)
        node.close()
        raise
    return opened


def _close_quietly(door: Any) -> None:
    try:
        door.close()
    except Exception:
        log.exception("closing a door failed")
