"""`odradek serve --store --etcd` agent processes for the tests that run real agents
(test_serve_agents.py, test_serve_cells.py): started, signalled, asked for their
``cluster_status`` and stopped (SIGCONT then SIGTERM, so a paused one stops too)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agents import wait_for
from object_servers import S3Server, free_ports

import odradek
from odradek.errors import OdradekError

ODRADEK = [sys.executable, "-m", "odradek.cli.main"]


class ServeAgent:
    """One agent: its cache in ``directory/agent_id``, its log beside it, ``extra``
    flags after the cluster's."""

    def __init__(
        self,
        directory: Path,
        agent_id: str,
        etcd: str,
        cluster: str,
        store: S3Server,
        prefix: str,
        extra: list[str] | None = None,
        *,
        metrics: bool = False,
    ) -> None:
        self.agent_id = agent_id
        self.directory = directory / agent_id
        (self.port,) = free_ports(1)
        # With ``metrics``: its metrics endpoint on a port of its own, else none.
        self.metrics_port = free_ports(1)[0] if metrics else None
        if self.metrics_port is not None:
            extra = [*(extra or []), "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        self.url = f"grpc://127.0.0.1:{self.port}"
        self.log = directory / f"{agent_id}.log"
        self.command = [
            *ODRADEK, "serve",
            "--data-dir", str(self.directory),
            "--listen", f"127.0.0.1:{self.port}",
            "--store", store.url(prefix),
            "--store-flush-ms", "5",
            "--etcd", etcd,
            "--cluster", cluster,
            "--agent-id", agent_id,
            *(extra or []),
        ]  # fmt: skip
        self.env = {**os.environ, **store.env}
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, env=self.env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert "ready" in line, f"agent {self.agent_id} did not start: {self.log.read_text()[-3000:]}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any]:
        with odradek.connect(self.url) as client:
            return dict(json.loads(client._action("cluster_status", {})))

    def cells(self) -> list[str]:
        """The cells this agent serves, as it says (none when it does not answer)."""
        try:
            status = self.status()
        except OdradekError:
            return []
        return [cell["cell"] for cell in status.get("cells", []) if cell["serving"]]

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


Served = TypeVar("Served", bound=ServeAgent)


def one_cell_each(agents: Sequence[Served], cells: Sequence[str]) -> dict[str, Served]:
    """Wait until each live agent serves one of ``cells`` and every cell is served
    (a cluster of as many cells as agents, settled): each cell's agent."""
    owners: dict[str, Served] = {}

    def settled() -> bool:
        owned = {agent.agent_id: agent.cells() for agent in agents if agent.alive()}
        served = sorted(cell for each in owned.values() for cell in each)
        if served != sorted(cells) or any(len(each) != 1 for each in owned.values()):
            return False
        by_id = {agent.agent_id: agent for agent in agents}
        owners.clear()
        owners.update({each[0]: by_id[agent] for agent, each in owned.items()})
        return True

    wait_for(settled, "one cell served by each agent")
    return owners


def cluster_name(letter: str) -> str:
    """A cluster name no other test of this run uses."""
    return f"{letter}{os.getpid()}{time.monotonic_ns() % 10**9}"


@contextlib.contextmanager
def running(make: Callable[[str], Served], count: int = 3) -> Iterator[list[Served]]:
    """``count`` agents made by ``make(agent_id)`` ("a0", "a1", ...), each stopped at the
    end (those started, when one fails to start)."""
    started: list[Served] = []
    try:
        for index in range(count):
            started.append(make(f"a{index}"))
        yield started
    finally:
        for agent in started:
            agent.stop()


class RegistryCellAgent(ServeAgent):
    """An agent of a cluster of ``cells`` cells, with its registry listener (the Schema
    Registry, the HTTP API and the console: decisions 0034 and 0036) on a port of its own."""

    def __init__(
        self,
        directory: Path,
        agent_id: str,
        etcd: str,
        cluster: str,
        store: S3Server,
        prefix: str,
        cells: int = 3,
    ):
        (self.registry_port,) = free_ports(1)
        self.registry_url = f"http://127.0.0.1:{self.registry_port}"
        super().__init__(
            directory,
            agent_id,
            etcd,
            cluster,
            store,
            prefix,
            ["--cells", str(cells), "--registry-listen", f"127.0.0.1:{self.registry_port}"],
        )
