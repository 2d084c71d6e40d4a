"""Cluster agents in the test process: each a Flight door, an AgentRole and a ClusterAgent
on a real etcd and one object store, as `odradek serve --etcd` composes them
(cli/serve_agent.py), so that tests can stop, partition and inspect each one."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.flight as flight

from odradek.cluster.agent import OWNER, AgentSettings, ClusterAgent
from odradek.cluster.keys import HOME_CELL, cell_cache_directory
from odradek.cluster.serving import AgentDoors, AgentGate, AgentRole
from odradek.cluster.stores import cell_store
from odradek.engine.replica import Replicas
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.storage.agent import REPLICAS_DIRECTORY, StoreSettings
from odradek.storage.objects import ObjectStore

DEADLINE_SECONDS = 60.0


class Agent:
    """One agent: ``url`` is its Flight door, ``node`` the data while it owns them."""

    def __init__(
        self,
        directory: Path,
        endpoints: str,
        cluster: str,
        store: ObjectStore,
        agent_id: str,
        *,
        ttl: int = 3,
        store_settings: StoreSettings | None = None,
        engine_options: dict[str, Any] | None = None,
        cells: int = 1,
    ) -> None:
        self.directory = directory
        gate = AgentGate()
        self.flight = FlightService(None, "grpc://127.0.0.1:0", cluster=gate)
        self.url = f"grpc://127.0.0.1:{self.flight.port}"
        options = dict(engine_options or {})

        def open_node() -> Node:
            cache = directory / cell_cache_directory(HOME_CELL, cells)
            return Node.open(cache, store=store, store_settings=store_settings, **options)

        def open_cell(cell: str) -> Node:  # as serve_agent.py opens a cell (decision 0032)
            cache = directory / cell_cache_directory(cell, cells)
            return Node.open(cache, store=cell_store(store, cell), store_settings=store_settings, **options)

        # Fetches and reads of other cells' sealed segments from the store (decision 0042).
        self.flight.replicas = Replicas(
            functools.partial(cell_store, store), str(directory / REPLICAS_DIRECTORY)
        )
        self.role = AgentRole(AgentDoors(open_node, open_cell=open_cell), self.flight, None)
        self.agent = ClusterAgent(
            AgentSettings(
                endpoints, cluster, agent_id, f"127.0.0.1:{self.flight.port}", lease_ttl=ttl, cells=cells
            ),
            self.role,
        )
        gate.agent = self.agent
        self.agent.start()

    @property
    def node(self) -> Node | None:
        return self.role.node

    def is_owner(self) -> bool:
        return self.agent.is_owner()

    def cells(self) -> list[str]:
        """The cells this agent serves now."""
        return self.agent.owned_cells()

    def status(self) -> dict[str, Any]:
        client = flight.FlightClient(self.url)
        try:
            results = list(client.do_action(flight.Action("cluster_status", b"{}")))
        finally:
            client.close()
        return dict(json.loads(results[0].body.to_pybytes()))

    def stop(self) -> None:
        """SIGTERM's path: hand over if owner, leave, stop the door."""
        self.agent.stop()
        self.flight.drain(5.0)
        self.role.stop_owning(graceful=True)


class Cluster:
    """``size`` agents of one cluster on one store prefix."""

    def __init__(
        self,
        directory: Path,
        endpoints: str,
        store: ObjectStore,
        size: int = 3,
        *,
        ttl: int = 3,
        store_settings: StoreSettings | None = None,
        engine_options: dict[str, Any] | None = None,
        cells: int = 1,
    ) -> None:
        self.directory = directory
        self.endpoints = endpoints
        self.cells = cells
        self.name = f"t{uuid.uuid4().hex[:12]}"
        self.store = store
        self.ttl = ttl
        self.store_settings = store_settings
        self.engine_options = engine_options
        self.agents: list[Agent] = []
        for index in range(size):
            self.add(f"a{index}")

    def add(self, agent_id: str, directory: str | None = None) -> Agent:
        agent = Agent(
            self.directory / (directory or agent_id),
            self.endpoints,
            self.name,
            self.store,
            agent_id,
            ttl=self.ttl,
            store_settings=self.store_settings,
            engine_options=self.engine_options,
            cells=self.cells,
        )
        self.agents.append(agent)
        return agent

    @property
    def urls(self) -> str:
        return ",".join(agent.url for agent in self.agents)

    def owner(self, deadline: float = DEADLINE_SECONDS) -> Agent:
        """The agent serving as the owner (waits for one)."""
        found: list[Agent] = []

        def one() -> bool:
            found[:] = [agent for agent in self.agents if agent.agent.running and agent.is_owner()]
            return len(found) == 1

        wait_for(one, "one owner", deadline)
        return found[0]

    def standbys(self) -> list[Agent]:
        return [agent for agent in self.agents if agent.agent.running and not agent.is_owner()]

    def stop(self) -> None:
        for agent in self.agents:
            if agent.agent.running:
                agent.stop()


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE_SECONDS) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline:g} s")
        time.sleep(0.02)


__all__ = ["OWNER", "Agent", "Cluster", "wait_for"]
