"""The console's cluster page on a real cluster agent.

Goal: `odradek serve --etcd` gives the console the agent's cluster status (its agents,
owner and epoch), so the Cluster page has something to show; a single node says it is
not clustered (test_console_api.py). Method: one real etcd member (Debian's
etcd-server, as the cluster tests start it) and one `odradek serve --store file://
--etcd` agent process with its registry listener; /v1/console/cluster is asked until
the agent owns the data and serves the listener (a generous deadline, no timing
asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from odradek.chaos import etcd
from odradek.chaos.processes import HarnessError
from odradek.ports import free_port

DEADLINE_SECONDS = 60.0


def test_a_cluster_agent_gives_the_console_its_agents(tmp_path: Path) -> None:
    try:
        members = etcd.etcd_cluster(tmp_path / "etcd", 1)
        servers = members.__enter__()
    except HarnessError as exc:
        pytest.fail(f"{exc} (./dev setup installs etcd-server)", pytrace=False)
    flight_port, registry_port = free_port(), free_port()
    cluster = f"t{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable, "-m", "odradek.cli.main", "serve",
        "--data-dir", str(tmp_path / "agent"), "--listen", f"127.0.0.1:{flight_port}",
        "--store", (tmp_path / "store").as_uri(), "--etcd", servers.url, "--cluster", cluster,
        "--agent-id", "console-a", "--kafka-listen", "off",
        "--registry-listen", f"127.0.0.1:{registry_port}",
    ]  # fmt: skip
    (tmp_path / "store").mkdir()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answer = _cluster_answer(f"http://127.0.0.1:{registry_port}/v1/console/cluster", process)
        assert answer["clustered"] is True
        status = answer["status"]
        assert status["cluster"] == cluster and status["agent"] == "console-a" and status["role"] == "owner"
        assert [agent["agent"] for agent in status["agents"]] == ["console-a"]
    finally:
        process.terminate()
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        members.__exit__(None, None, None)


def _cluster_answer(url: str, process: subprocess.Popen[bytes]) -> dict[str, object]:
    """The first answer of ``url`` (the listener starts once the agent owns the data)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        if process.poll() is not None:
            _, errors = process.communicate()
            pytest.fail(f"the agent exited: {errors.decode()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                answer: dict[str, object] = json.loads(response.read())
                return answer
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the agent's registry listener did not start in time"
            time.sleep(0.2)
