"""What a cluster agent serves, and how it changes role (cluster/agent.py's ``Role``).

The agent's Flight door and metrics endpoint listen from the start, whatever its role:
a standby's Flight door answers NotOwner naming the owner (and ``ping`` and
``cluster_status``); its metrics say it stands by. When the agent becomes the owner it
opens the node on the store (attaching fences the previous owner: decision 0011), hands
it to the Flight door and the metrics, and starts the Kafka and Schema Registry doors on
their configured ports. When it stops owning, it undoes that in reverse order.

A standby's Kafka port is not silent: it relays what leads a Kafka client to the owner
(protocols/kafka/relay.py). The relay gives the port up when the agent becomes the
owner (before the Kafka door binds it) and takes it again when the agent stops owning.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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


class AgentGate:
    """The Flight door's view of its cluster agent (the door's ``ClusterGate``). The door
    is made first (the agent registers the door's address), the agent set here after."""

    def __init__(self) -> None:
        self.agent: ClusterAgent | None = None

    def _agent(self) -> ClusterAgent:
        if self.agent is None:
            raise Unavailable("the agent is joining its cluster; retry")
        return self.agent

    def check_owner(self) -> None:
        self._agent().check_owner()

    def not_owner(self) -> OdradekError:
        return self._agent().not_owner()

    def status(self) -> dict[str, Any]:
        return self._agent().status()

    def hand_over(self, to: str | None) -> dict[str, Any]:
        return self._agent().hand_over(to)


class AgentRole:
    """``Role`` for ``odradek serve --etcd`` (see the module docstring)."""

    def __init__(self, doors: AgentDoors, flight: FlightService, metrics: Metrics | None) -> None:
        self.doors = doors
        self.flight = flight
        self.metrics = metrics
        self._lock = threading.Lock()
        self.node: Node | None = None
        self._opened: list[Any] = []
        self._standing_by: list[Any] = []  # the standby doors running
        self._closed = False

    def start_standby(self) -> None:
        """Start the standby doors (before the agent joins: it stands by until it owns)."""
        with self._lock:
            self._start_standby()

    def become_owner(self, epoch: int) -> None:
        with self._lock:
            if self.node is not None:  # a previous ownership not closed: close it first
                self._close(graceful=False, stand_by=False)
            self._stop_standby()  # their ports go to the owner doors
            opened = []
            try:
                node = self.doors.open_node()
                try:
                    for start in self.doors.owner_doors:
                        door = start(node)
                        if door is not None:
                            opened.append(door)
                except BaseException:
                    for door in reversed(opened):
                        _close_quietly(door)
                    node.close()
                    raise
            except BaseException:
                self._start_standby()
                raise
            self.node = node
            self._opened = opened
            if self.metrics is not None:
                self.metrics.attach(node)
            self.flight.serve_node(node)
            log.info("serving the data as the owner (epoch %d)", epoch)

    def stop_owning(self, graceful: bool) -> None:
        with self._lock:
            self._close(graceful)

    def close(self) -> None:
        """Stop serving for good (the agent left): the owner's doors and the standby's."""
        with self._lock:
            self._closed = True
            self._close(graceful=True, stand_by=False)
            self._stop_standby()

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


def _close_quietly(door: Any) -> None:
    try:
        door.close()
    except Exception:
        log.exception("closing a door failed")
