"""`odradek serve --etcd --auth`: the agents of a cluster share one credential store.

Goal: users and tokens live in the cluster's etcd (decision 0029), so a user added
through the owner's door authenticates on a standby at once and a token revoked on the
owner is refused by the standby as soon as etcd's watch tells it (the agents' periodic
refresh is set to an hour here: only the watch can have done it); clients without
credentials are refused by every agent; the owner's Kafka door takes SCRAM for a user
added through the native door, also for a client bootstrapped with the standby only
(its relay carries the SASL exchange to the owner); the first admin is made offline
with `odradek user add --etcd`, and an unreachable etcd is a clear error there.
Method: two `odradek serve --store --etcd --auth` processes on a real etcd and moto's
S3 server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, free_ports, unique_prefix

import odradek
from odradek.errors import OdradekError, Unauthenticated
from odradek.security import CredentialStore

_WITH_REFRESH = (
    "import runpy; from odradek import limits; limits.security_refresh_seconds = {seconds}; "
    "runpy.run_module('odradek.cli.main', run_name='__main__')"
)
HOUR = 3600.0


def odradek_cli(*arguments: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    """`odradek ARGUMENTS` as a process (its completed run)."""
    return subprocess.run(
        [sys.executable, "-m", "odradek.cli.main", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def add_user_in_etcd(etcd: str, cluster: str, name: str, password: str, *flags: str) -> None:
    """A user made offline in the cluster's etcd (as an operator makes the first admin)."""
    done = odradek_cli(
        "user", "add", name, *flags, "--etcd", etcd, "--cluster", cluster, stdin=password + "\n"
    )
    assert done.returncode == 0, done.stderr


class Agent:
    """`odradek serve --store --etcd` as a process (with ``--auth`` unless ``auth`` is
    False), shared by the cluster's security tests."""

    def __init__(
        self,
        directory: Path,
        agent_id: str,
        etcd: str,
        cluster: str,
        store: S3Server,
        prefix: str,
        *,
        auth: bool = True,
        refresh_seconds: float | None = None,
    ):
        self.port, self.kafka_port = free_ports(2)
        self.url = f"grpc://127.0.0.1:{self.port}"
        self.log = directory / f"{agent_id}.log"
        self.store, self.prefix = store, prefix
        # refresh_seconds: the agent reads its security documents again this often instead
        # of every limits.security_refresh_seconds (set before anything reads it).
        start = (
            ["-m", "odradek.cli.main"]
            if refresh_seconds is None
            else ["-c", _WITH_REFRESH.format(seconds=float(refresh_seconds))]
        )
        command = [
            sys.executable, *start, "serve", *(["--auth"] if auth else []),
            "--data-dir", str(directory / agent_id), "--listen", f"127.0.0.1:{self.port}",
            "--store", store.url(prefix), "--store-flush-ms", "5", "--etcd", etcd, "--cluster", cluster,
            "--agent-id", agent_id, "--kafka-listen", f"127.0.0.1:{self.kafka_port}",
            "--registry-listen", "off",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **store.env}
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert "ready" in line and ("no authentication" not in line) == auth, self.log.read_text()[-3000:]

    def action(self, name: str, body: dict[str, Any], **credentials: Any) -> dict[str, Any]:
        with odradek.connect(self.url, **credentials) as client:
            result: dict[str, Any] = json.loads(client._action(name, body))
        return result

    def role(self, **credentials: Any) -> str:
        return str(self.action("cluster_status", {}, **credentials)["role"])

    def stop(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def owner_and_standby(agents: list[Agent], **credentials: Any) -> tuple[Agent, Agent]:
    """The owner and the standby, once the agents say so."""
    roles: dict[str, Agent] = {}

    def settled() -> bool:
        try:
            roles.clear()
            roles.update({agent.role(**credentials): agent for agent in agents})
        except OdradekError:
            return False
        return set(roles) == {"owner", "standby"}

    wait_for(settled, "an owner and a standby")
    return roles["owner"], roles["standby"]


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[Agent]]:
    cluster, prefix = f"auth{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    add_user_in_etcd(etcd_server.url, cluster, "root", "root-secret", "--admin")
    started: list[Agent] = []
    try:
        for index in range(2):
            agent = Agent(
                tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix, refresh_seconds=HOUR
            )
            started.append(agent)
        yield started
    finally:
        for agent in started:
            agent.stop()


def test_agents_share_users_and_tokens(agents: list[Agent]) -> None:
    root = {"user": "root", "password": "root-secret"}
    owner, standby = owner_and_standby(agents, **root)
    for agent in agents:
        with pytest.raises(Unauthenticated):
            agent.role()
    with odradek.connect(owner.url, **root) as client:
        client._action("user_add", {"name": "bob", "password": "bob-secret"})
        token = json.loads(client._action("token_create", {"user": "bob"}))
    with odradek.connect(f"{standby.url},{owner.url}", user="bob", password="bob-secret") as client:
        client.create_topic("orders")  # authenticated by the standby, redirected to the owner
    with odradek.connect(standby.url, token=token["token"]) as client:
        assert client._action("cluster_status", {})
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{owner.kafka_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "bob",
            "sasl.password": "bob-secret",
        }
    )
    producer.produce("orders", b"from kafka")
    assert producer.flush(30) == 0
    relayed = confluent_kafka.Producer(  # bootstrapped with the standby only: its relay
        {  # carries the SASL exchange to the owner, whose Metadata names the owner
            "bootstrap.servers": f"127.0.0.1:{standby.kafka_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "bob",
            "sasl.password": "bob-secret",
        }
    )
    relayed.produce("orders", b"through the standby")
    assert relayed.flush(30) == 0
    with odradek.connect(owner.url, **root) as client:
        client._action("token_revoke", {"id": token["id"]})

    def refused_everywhere() -> bool:
        for agent in agents:
            try:
                agent.role(token=token["token"])
                return False
            except Unauthenticated:
                continue
        return True

    wait_for(refused_everywhere, "the revoked token refused by every agent")  # the watch did it
    # The store the agents share holds no credentials: they are in etcd only.
    assert CredentialStore.in_object_store(owner.store.open(owner.prefix)).empty


def test_the_offline_command_says_when_etcd_is_unreachable(tmp_path: Path) -> None:
    from odradek.ports import free_port

    unreachable = f"http://127.0.0.1:{free_port()}"
    done = odradek_cli("user", "list", "--etcd", unreachable, "--cluster", "nowhere")
    assert done.returncode == 3, done.stderr  # EXIT_UNAVAILABLE
    assert f"is etcd running at {unreachable}?" in done.stderr and "etcd did not answer" in done.stderr
    both = odradek_cli("user", "list", "--etcd", unreachable, "--data-dir", str(tmp_path))
    assert both.returncode == 1 and "not both" in both.stderr
