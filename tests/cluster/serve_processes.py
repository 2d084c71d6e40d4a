"""`odradek serve --store --etcd` agent processes for the tests that run real agents
(test_serve_agents.py, test_serve_cells.py): started, signalled, asked for their
``cluster_status`` and stopped (SIGCONT then SIGTERM, so a paused one stops too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from object_servers import S3Server, free_ports

import odradek

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
    ) -> None:
        self.agent_id = agent_id
        self.directory = directory / agent_id
        (self.port,) = free_ports(1)
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
