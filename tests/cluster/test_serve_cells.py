"""`odradek serve --etcd --cells 3`: topics spread over three agent processes.

Goal: what a user running three agents with three cells sees: each agent serves one
cell; a client given every agent creates topics (placed in turn in the least loaded
cell) and appends to all of them; when the agent serving a cell is killed (kill -9)
another takes that cell over and the client goes on; the killed agent restarted with
an empty cache gets a cell back; SIGTERM hands an agent's cell over before it exits 0;
nothing acknowledged is lost or doubled. Kafka ports that would pass the last port (a
cell's Kafka door listens on the port plus its index) are refused before anything
starts.
Method: real `odradek serve` processes on a real etcd and moto's S3 server; faults by
signals; every topic read back at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, free_ports, unique_prefix
from serve_processes import ODRADEK, ServeAgent, cluster_name, one_cell_each, running

import odradek

TOPICS = [f"orders.{index}" for index in range(6)]


class CellAgent(ServeAgent):
    """An agent of a cluster of three cells."""

    def __init__(self, directory: Path, agent_id: str, etcd: str, cluster: str, store: S3Server, prefix: str):
        super().__init__(directory, agent_id, etcd, cluster, store, prefix, ["--cells", "3"])


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[CellAgent]]:
    cluster, prefix = cluster_name("c"), unique_prefix()
    with running(
        lambda agent_id: CellAgent(tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix)
    ) as started:
        yield started


def _one_cell_each(agents: list[CellAgent]) -> dict[str, CellAgent]:
    return one_cell_each(agents, ["_cell", "_cell.1", "_cell.2"])


def _append_round(client: odradek.RemoteClient, number: int, acked: dict[str, list[str]]) -> None:
    for topic in TOPICS:
        value = f"{topic}/{number}"
        client.append(topic, [{"key": f"k{number % 3}", "value": value}], producer=(topic, number))
        acked[topic].append(value)


def test_three_agents_serve_three_cells_through_a_kill_a_restart_and_sigterm(agents: list[CellAgent]) -> None:
    owners = _one_cell_each(agents)
    client = odradek.connect(",".join(agent.url for agent in agents))
    for topic in TOPICS:
        client.create_topic(topic)
    acked: dict[str, list[str]] = {topic: [] for topic in TOPICS}
    for number in range(10):
        _append_round(client, number, acked)
    # kill -9 of the agent serving cell 1: another agent takes the cell over.
    victim = owners["_cell.1"]
    assert victim.process is not None
    victim.process.kill()
    victim.process.wait()
    number = 10
    while not any("_cell.1" in agent.cells() for agent in agents if agent is not victim):
        _append_round(client, number, acked)
        number += 1
        assert number < 5_000, "cell _cell.1 was never taken over"
    # Restarted with an empty cache, it gets a cell back (one cell each again).
    shutil.rmtree(victim.directory)
    victim.start()
    _one_cell_each(agents)
    for _ in range(5):
        _append_round(client, number, acked)
        number += 1
    # SIGTERM: the agent hands its cell over, then exits 0.
    leaving = next(agent for agent in agents if agent is not victim)
    assert leaving.stop() == 0
    wait_for(
        lambda: sorted(c for a in agents if a.alive() for c in a.cells()) == ["_cell", "_cell.1", "_cell.2"],
        "every cell served by the two agents left",
    )
    for _ in range(5):
        _append_round(client, number, acked)
        number += 1
    # odradek topic move: a topic of the home cell moved into cell 2, then appended to.
    moved = subprocess.run(
        [
            *ODRADEK,
            "topic",
            "move",
            TOPICS[0],
            "--cell",
            "_cell.2",
            "--server",
            ",".join(a.url for a in agents if a.alive()),
        ],
        capture_output=True,
        timeout=120,
        env={**os.environ, "ODRADEK_URL": ""},
    )
    assert moved.returncode == 0, moved.stderr.decode()
    assert f"moved topic {TOPICS[0]} from cell _cell to cell _cell.2".encode() in moved.stdout
    _append_round(client, number, acked)
    for topic in TOPICS:
        table = pa.Table.from_batches(list(client.read(topic, wait=0)))
        assert [value.decode() for value in table.column("value").to_pylist()] == acked[topic]
    client.close()


def _refused(tmp_path: Path, etcd_server: EtcdServers, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """`odradek serve --cells 3` with ``extra`` flags, which must refuse to start."""
    (port,) = free_ports(1)
    finished = subprocess.run(
        [
            *ODRADEK,
            "serve",
            "--data-dir",
            str(tmp_path / "a"),
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"file://{tmp_path / 'store'}",
            "--etcd",
            etcd_server.url,
            "--cells",
            "3",
            *extra,
        ],
        capture_output=True,
        timeout=60,
    )
    assert finished.returncode != 0
    return finished


def test_cells_whose_kafka_ports_pass_the_last_port_are_refused(
    tmp_path: Path, etcd_server: EtcdServers
) -> None:
    finished = _refused(tmp_path, etcd_server, "--kafka-listen", "127.0.0.1:65534")
    assert b"up to 65536" in finished.stderr, finished.stderr.decode()[-2000:]
