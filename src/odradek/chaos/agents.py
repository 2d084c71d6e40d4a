"""Cluster agents of the chaos run: ``odradek serve --store ... --etcd ...`` subprocesses
on fixed loopback ports (a restarted agent comes back where clients look for it), each
with a data directory of its own (its cache) and its output in a log. Each agent has a
Kafka door on a fixed port of its own too: the owner's serves, a standby's relays Kafka
clients to the owner (decision 0013).

``Agent.status()`` asks the agent's Flight door for ``cluster_status`` (every agent
answers it, owner or standby); the harness finds the owner and the agents the cluster
knows that way, without a client of etcd of its own.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from odradek.chaos.processes import Process
from odradek.ports import free_port_range, free_ports

READY_SECONDS_MAX = 60.0  # an agent imports pyarrow and joins etcd: slow on a loaded machine
STATUS_SECONDS = 2.0  # one cluster_status call; a paused agent does not answer
ODRADEK = [sys.executable, "-m", "odradek.cli.main"]


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """What every agent of the run is started with."""

    store_url: str
    store_env: dict[str, str]
    etcd_url: str
    cluster: str
    lease_ttl_seconds: float
    flush_ms: float | None = None  # the journal's flush window; None: serve's default
    # Cells the topics spread over (decision 0032); above 1 each cell an agent serves has
    # a Kafka door of its own, on the Kafka port plus the cell's index (decision 0033).
    cells: int = 1


class Agent:
    def __init__(self, agent_id: str, directory: Path, settings: AgentSettings) -> None:
        self.id = agent_id
        self.directory = directory
        self.data_dir = directory / "data"
        self.port, self.metrics_port = free_ports(2)
        self.kafka_port = free_port_range(settings.cells)  # a Kafka door per cell
        self.settings = settings
        command = [
            *ODRADEK,
            "serve",
            "--store",
            settings.store_url,
            "--etcd",
            settings.etcd_url,
            "--cluster",
            settings.cluster,
            "--agent-id",
            agent_id,
            "--lease-ttl",
            f"{settings.lease_ttl_seconds:g}",
            "--listen",
            self.address,
            "--kafka-listen",
            self.kafka_address,
            "--registry-listen",
            "off",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            "--data-dir",
            str(self.data_dir),
        ]
        if settings.flush_ms is not None:
            command += ["--store-flush-ms", f"{settings.flush_ms:g}"]
        if settings.cells > 1:
            command += ["--cells", str(settings.cells)]
        self.process = Process(agent_id, command, directory / "agent.log", env=settings.store_env)
        self._client: flight.FlightClient | None = None
        self._marker = 0  # where the log of the latest start begins
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"grpc://{self.address}"

    @property
    def kafka_address(self) -> str:
        """The Kafka door's host:port (the home cell's door while the agent owns it, else
        a relay to it; with several cells, a cell's door is on this port plus its index)."""
        return f"127.0.0.1:{self.kafka_port}"

    def start(self, *, empty: bool = False, wait: bool = True) -> None:
        """Start the agent (``empty``: with its data directory wiped first, a fresh
        cache); ``wait``: until it printed its ready line (else call ``wait_ready``)."""
        if empty and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._marker = self._log_size()
        self.process.start()
        if wait:
            self.wait_ready()

    def wait_ready(self, seconds: float = READY_SECONDS_MAX) -> None:
        """Until the agent started last printed its ready line; HarnessError (with its
        log) if it exits or takes longer than ``seconds``."""
        self.process.wait_for(lambda: b" ready " in self._log_since(self._marker), seconds, "ready")

    def kill(self) -> None:
        self.process.kill()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def stop(self) -> int | None:
        """SIGTERM: a graceful handover if it owns the cell."""
        return self.process.stop()

    def alive(self) -> bool:
        return self.process.alive()

    @property
    def paused(self) -> bool:
        return self.process.paused

    def status(self) -> dict[str, Any] | None:
        """The agent's ``cluster_status``, or None if it does not answer in time."""
        if not self.alive() or self.paused:
            return None
        try:
            if self._client is None:
                self._client = flight.FlightClient(self.url)
            options = flight.FlightCallOptions(timeout=STATUS_SECONDS)
            results = list(self._client.do_action(flight.Action("cluster_status", b"{}"), options))
            answer = json.loads(results[0].body.to_pybytes()) if results else None
        except (pa.ArrowException, OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None

    def answered_from_store(self) -> int | None:
        """Records this agent answered from other cells' stores since it started
        (decision 0042: ``replicas`` of its ``cluster_status``); None if it does not
        answer."""
        status = self.status()
        if status is None:
            return None
        return sum(int(cell.get("records", 0)) for cell in status.get("replicas", {}).values())

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except (pa.ArrowException, OSError):
                pass
            self._client = None

    def output(self) -> str:
        return self.process.output()

    def _log_size(self) -> int:
        path = self.process.log_path
        return path.stat().st_size if path.exists() else 0

    def _log_since(self, offset: int) -> bytes:
        path = self.process.log_path
        if not path.exists():
            return b""
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read()
