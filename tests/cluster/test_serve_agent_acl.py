"""`odradek serve --etcd --auth --authorize`: the agents of a cluster share their bindings.

Goal: bindings live in the object store the agents share (beside the credentials), so
a binding added through the owner's door is enforced by the agent that takes over when
the owner stops: the user may append where the binding allows it and is refused
(odradek.Unauthorized) elsewhere.
Method: two `odradek serve --store --etcd --auth --authorize` processes on a real etcd
and moto's S3 server; the first admin and a user are written into the store before
they start; the owner is stopped and the standby takes over.
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
from test_serve_agent_auth import Agent, owner_and_standby

import odradek
from odradek.errors import OdradekError, Unauthorized
from odradek.security import CredentialStore

ROOT = {"user": "root", "password": "root-secret"}
BOB = {"user": "bob", "password": "bob-secret"}


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Agent]]:
    monkeypatch.setenv("ODRADEK_AUTHORIZE", "true")  # the agents' processes read their environment
    cluster, prefix = f"acl{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    credentials = CredentialStore.in_object_store(moto_s3.open(prefix))
    credentials.add_user("root", "root-secret", admin=True)
    credentials.add_user("bob", "bob-secret")
    started: list[Agent] = []
    try:
        for index in range(2):
            started.append(Agent(tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix))
        yield started
    finally:
        for agent in started:
            agent.stop()


def test_agents_share_bindings(agents: list[Agent]) -> None:
    owner, standby = owner_and_standby(agents, **ROOT)
    allow = {"principal": "bob", "resource_type": "topic", "pattern": "orders", "operation": "all"}
    with odradek.connect(owner.url, **ROOT) as client:
        client.create_topic("orders")
        client.create_topic("payroll")
        client._action("acl_add", {"bindings": [allow]})
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
        client.append("orders", [{"value": b"on the new owner"}])  # the binding came with the store
        with pytest.raises(Unauthorized, match="write topic 'payroll'"):
            client.append("payroll", [{"value": b"no"}])
    with odradek.connect(standby.url, **ROOT) as client:
        listed = json.loads(client._action("acl_list", {}))["bindings"]
        assert [(entry["principal"], entry["pattern"]) for entry in listed] == [("User:bob", "orders")]
        assert client.describe_topic("payroll").records == 0
