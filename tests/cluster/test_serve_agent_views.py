"""A view created on the owner of a cluster keeps working on the agents that take
over after it: after `odradek cluster handover` and after a kill -9 of the owner.

Goal: the view's table and positions are checkpointed through the storage seam (the
object store), so the new owner's view answers ``view_get`` with every record applied
before the change, goes on applying new appends, and an append with
``wait_for=["view:..."]`` is acknowledged by it. At least once (docs/snapshots-and-
views.md): a record may be applied twice after a crash, never skipped. A set-valued
reducer (cluster_view_reducers.py) shows a skipped record; the built-in ``count``
shows one applied twice, which a handover (the old owner checkpoints as it steps
down) must not do, and a kill -9 may.
Method: three `odradek serve --store --etcd` agents (test_serve_agents.py's) on a
real etcd and moto's S3 server; the handover by the command line, the crash by
SIGKILL; each view read back through a client given every agent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from test_serve_agents import AgentProcess, _owner

import odradek

KEYS = [f"c{index}" for index in range(4)]
VALUES = "values"
COUNT = "count"


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[AgentProcess]]:
    """test_serve_agents.py's three agents, this directory on their PYTHONPATH."""
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    cluster, prefix = f"v{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    started: list[AgentProcess] = []
    try:
        for index in range(3):
            started.append(AgentProcess(tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix))
        yield started
    finally:
        for agent in started:
            agent.stop()


def _append(client: odradek.RemoteClient, appended: dict[str, list[str]], start: int, count: int) -> None:
    """Append orders one at a time, each acknowledged once both views applied it; after
    each, the order's customer's state holds it (read-your-writes)."""
    for number in range(start, start + count):
        customer = KEYS[number % len(KEYS)]
        client.append(
            "orders",
            [{"key": customer, "value": f"o{number}"}],
            producer=("p", number),
            wait_for=[f"view:{VALUES}", f"view:{COUNT}"],
            timeout=30.0,
        )
        appended[customer].append(f"o{number}")
        state = client.view_get(VALUES, customer)
        assert state is not None and f"o{number}" in json.loads(state), (number, state)


def _check(client: odradek.RemoteClient, appended: dict[str, list[str]], exact_counts: bool) -> None:
    for customer, orders in appended.items():
        state = client.view_get(VALUES, customer)
        assert state is not None and json.loads(state) == sorted(orders), customer
        counted = client.view_get(COUNT, customer)
        assert counted is not None
        if exact_counts:
            assert int(counted) == len(orders), (customer, counted)
        else:  # at least once: never fewer
            assert int(counted) >= len(orders), (customer, counted)


def _handover(agents: list[AgentProcess], owner: AgentProcess) -> AgentProcess:
    target = next(agent for agent in agents if agent is not owner and agent.process.poll() is None)
    moved = subprocess.run(
        [
            sys.executable,
            "-m",
            "odradek.cli.main",
            "cluster",
            "handover",
            "--server",
            ",".join(agent.url for agent in agents),
            "--to",
            target.agent_id,
        ],
        capture_output=True,
        timeout=120,
    )
    assert moved.returncode == 0, moved.stderr.decode()
    return target


def test_a_view_keeps_working_after_a_handover_and_a_kill_of_the_owner(agents: list[AgentProcess]) -> None:
    client = odradek.connect(",".join(agent.url for agent in agents))
    client.create_topic("orders")
    client.create_view(VALUES, "orders", "cluster_view_reducers:values")
    client.create_view(COUNT, "orders", "odradek.views.reducers:count")
    appended: dict[str, list[str]] = {customer: [] for customer in KEYS}
    _append(client, appended, 0, 20)
    _check(client, appended, exact_counts=True)

    # A handover: the old owner checkpoints its views as it steps down; the new owner
    # loads them and applies nothing twice.
    first = _owner(agents)
    second = _handover(agents, first)
    assert _owner(agents) is second
    _check(client, appended, exact_counts=True)
    _append(client, appended, 20, 20)
    _check(client, appended, exact_counts=True)
    assert client.describe_view(VALUES)["status"] == "running"

    # kill -9 of the owner: the next owner starts each view from its last checkpoint.
    second.signal(signal.SIGKILL)
    assert second.process is not None
    second.process.wait()
    third = _owner(agents, exclude=second)
    assert third is not second
    _check(client, appended, exact_counts=False)
    _append(client, appended, 40, 20)
    _check(client, appended, exact_counts=False)
    described = client.describe_view(VALUES)
    assert described["status"] == "running" and not described["error"], described
    client.close()
