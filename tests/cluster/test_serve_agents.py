"""`odradek serve --etcd`: real agent processes fail over on kill -9, fence a paused
owner, hand over on SIGTERM, and serve the Kafka door on the owner only.

Goal: what a user running three agents sees: a client given every agent keeps
appending while the owner is killed or frozen; nothing it saw acknowledged is lost or
doubled; a frozen owner woken after a new owner took over (a zombie) never serves again
as the owner and nothing it held back becomes visible; SIGTERM exits 0 after handing
over; the Kafka door listens where the data is served.
Method: three `odradek serve --store --etcd` processes on a real etcd and moto's S3
server; faults by signals; the log read back in full at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, free_ports, unique_prefix
from serve_processes import ServeAgent

import odradek
from odradek.errors import OdradekError

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

READY_SECONDS = 60.0


class AgentProcess(ServeAgent):
    """An agent with a Kafka door (on the owner; a relay on a standby)."""

    def __init__(self, directory: Path, agent_id: str, etcd: str, cluster: str, store: S3Server, prefix: str):
        (self.kafka_port,) = free_ports(1)
        kafka = ["--kafka-listen", f"127.0.0.1:{self.kafka_port}", "--registry-listen", "off"]
        super().__init__(directory, agent_id, etcd, cluster, store, prefix, kafka)


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[AgentProcess]]:
    cluster, prefix = f"t{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    started: list[AgentProcess] = []
    try:
        for index in range(3):
            started.append(AgentProcess(tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix))
        yield started
    finally:
        for agent in started:
            agent.stop()


def _owner(agents: list[AgentProcess], exclude: AgentProcess | None = None) -> AgentProcess:
    found: list[AgentProcess] = []

    def one() -> bool:
        found[:] = []
        for agent in agents:
            if agent is exclude or agent.process is None or agent.process.poll() is not None:
                continue
            try:
                if agent.status()["role"] == "owner":
                    found.append(agent)
            except OdradekError:
                continue
        return len(found) == 1

    wait_for(one, "one owner among the agents")
    return found[0]


def _kafka_read(port: int) -> list[str]:
    """Every value of topic t, read by a Kafka client bootstrapped with one agent."""
    consumer = KafkaConsumer(
        bootstrap_servers=[f"127.0.0.1:{port}"], consumer_timeout_ms=5000, enable_auto_commit=False
    )
    try:
        partition = TopicPartition("t", 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        return [message.value.decode() for message in consumer]
    finally:
        consumer.close()


def _append(client: odradek.RemoteClient, acked: list[str], count: int, producer: str, start: int) -> None:
    for number in range(start, start + count):
        client.append(
            "t", [{"key": f"k{number % 5}", "value": f"{producer}{number}"}], producer=(producer, number)
        )
        acked.append(f"{producer}{number}")


def _values(client: odradek.RemoteClient) -> list[str]:
    table = pa.Table.from_batches(list(client.read("t", wait=0)))
    return [value.decode() for value in table.column("value").to_pylist()]


def test_kill_pause_and_sigterm_of_the_owner(agents: list[AgentProcess]) -> None:
    client = odradek.connect(",".join(agent.url for agent in agents))
    client.create_topic("t")
    acked: list[str] = []
    _append(client, acked, 20, "p", 0)

    # kill -9 of the owner: another agent takes over; appends go on.
    first = _owner(agents)
    first.signal(signal.SIGKILL)
    assert first.process is not None
    first.process.wait()
    _append(client, acked, 20, "p", 20)
    second = _owner(agents, exclude=first)
    assert second is not first

    # SIGSTOP of the owner for longer than its lease: a third agent takes over; the
    # zombie, woken, steps down and answers as a standby.
    first.start()  # back, with its old cache, as a standby
    second.signal(signal.SIGSTOP)
    _append(client, acked, 20, "p", 40)
    third = _owner(agents, exclude=second)
    assert third is not second
    second.signal(signal.SIGCONT)
    wait_for(lambda: second.status()["role"] == "standby", "the woken owner standing by")
    _append(client, acked, 20, "p", 60)
    assert _values(client) == acked

    # The Kafka door serves on the owner; a standby's Kafka port relays what leads a
    # client there (metadata naming the owner): a client bootstrapped with any one agent
    # reads everything.
    for agent in agents:
        if agent.process.poll() is None:
            assert _kafka_read(agent.kafka_port) == acked, agent.agent_id

    # odradek cluster handover: the owner hands over to the agent named and stays.
    target = next(agent for agent in agents if agent is not third and agent.process.poll() is None)
    urls = ",".join(agent.url for agent in agents)
    moved = subprocess.run(
        [
            sys.executable,
            "-m",
            "odradek.cli.main",
            "cluster",
            "handover",
            "--server",
            urls,
            "--to",
            target.agent_id,
        ],
        capture_output=True,
        timeout=120,
    )
    assert moved.returncode == 0, moved.stderr.decode()
    assert f"agent {target.agent_id} serves the data" in moved.stdout.decode()
    assert third.status()["role"] == "standby"
    _append(client, acked, 5, "p", 80)
    third = target

    # SIGTERM: the owner hands over and exits 0.
    assert third.stop() == 0
    fourth = _owner(agents, exclude=third)
    _append(client, acked, 10, "p", 85)
    assert _values(client) == acked
    assert fourth.status()["epoch"] > 0
    client.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--etcd", "http://127.0.0.1:1"], "--etcd needs --store"),
        (["--etcd", "ftp://x:1", "--store", "memory://x"], "expected http://HOST:PORT or https://HOST:PORT"),
        (["--etcd", "http://127.0.0.1:1", "--store", "memory://x", "--lease-ttl", "0"], "lease_ttl must be"),
        (["--etcd", "http://127.0.0.1:1", "--store", "memory://x", "--cluster", "a/b"], "cluster"),
        (["--etcd", "http://127.0.0.1:1", "--store", "memory://x", "--advertise", "nope"], "--advertise"),
        (
            ["--etcd", "http://127.0.0.1:1", "--store", "memory://x", "--listen", "0.0.0.0:0", "--insecure"],
            "--advertise HOST:PORT",
        ),
    ],
)
def test_cluster_settings_are_checked_before_anything_starts(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "odradek.cli.main", "serve", "--data-dir", str(tmp_path / "d"), *arguments],
        capture_output=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert message in ran.stderr.decode(), ran.stderr.decode()[-2000:]
