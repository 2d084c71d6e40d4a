"""`odradek serve --etcd --auth --authorize`: the agents of a cluster share their bindings.

Goal: bindings live in the cluster's etcd beside the credentials (decision 0029), so a
binding made offline (`odradek acl add --etcd`) before the agents start is enforced by
them, and a binding removed through the owner's door is no longer enforced by the agent
that takes over when the owner stops: it learnt of the removal through etcd's watch (the
agents' periodic refresh is set to an hour here, and nothing refused on it made it read
the bindings again), so the user may append where a binding still allows it and is
refused (odradek.Unauthorized) where the removed one did.
Method: two `odradek serve --store --etcd --auth --authorize` processes on a real etcd
and moto's S3 server; the first admin, a user and its bindings are written into etcd with
the offline commands before they start; the owner is stopped and the standby takes over.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from test_serve_agent_auth import HOUR, Agent, add_user_in_etcd, odradek_cli, owner_and_standby

import odradek
from odradek.errors import OdradekError, Unauthorized

ROOT = {"user": "root", "password": "root-secret"}
BOB = {"user": "bob", "password": "bob-secret"}


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Agent]]:
    monkeypatch.setenv("ODRADEK_AUTHORIZE", "true")  # the agents' processes read their environment
    cluster, prefix = f"acl{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    add_user_in_etcd(etcd_server.url, cluster, "root", "root-secret", "--admin")
    add_user_in_etcd(etcd_server.url, cluster, "bob", "bob-secret")
    for topic in ("orders", "payroll"):
        done = odradek_cli(
            "acl", "add", "--principal", "bob", "--allow", "all", "--topic", topic,
            "--etcd", etcd_server.url, "--etcd-cluster", cluster,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
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


def test_agents_share_bindings(agents: list[Agent]) -> None:
    owner, standby = owner_and_standby(agents, **ROOT)
    with odradek.connect(owner.url, **ROOT) as client:
        client.create_topic("orders")
        client.create_topic("payroll")
        removed = client._action(
            "acl_remove", {"principal": "bob", "resource_type": "topic", "pattern": "payroll"}
        )
        assert [entry["pattern"] for entry in json.loads(removed)["removed"]] == ["payroll"]
    with odradek.connect(owner.url, **BOB) as client:
        client.append("orders", [{"value": b"on the owner"}])
        with pytest.raises(Unauthorized):
            client.append("payroll", [{"value": b"no"}])
    owner.stop()

    def took_over() -> bool:
        try:
            return standby.role(**ROOT) == "owner"
        except OdradekError:
            return False

    wait_for(took_over, "the standby to take over")
    with odradek.connect(standby.url, **BOB) as client:
        client.append("orders", [{"value": b"on the new owner"}])  # the binding made offline
        with pytest.raises(Unauthorized, match="write topic 'payroll'"):  # its removal, watched
            client.append("payroll", [{"value": b"no"}])
    with odradek.connect(standby.url, **ROOT) as client:
        listed = json.loads(client._action("acl_list", {}))["bindings"]
        assert [(entry["principal"], entry["pattern"]) for entry in listed] == [("User:bob", "orders")]
        assert client.describe_topic("payroll").records == 0
