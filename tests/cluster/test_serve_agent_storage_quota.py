"""`odradek serve --etcd`: a tenant's storage_bytes quota holds on every owner of a cluster.

Goal: the quota document lives in the cluster's etcd (decision 0029), and each agent's
engine checks a tenant's stored bytes against it when it owns the data (decision 0028).
A quota set offline through etcd (`odradek quota set tenant=acme --storage-bytes N
--etcd`) reaches both agents by the watch (their periodic refresh is set to an hour);
the owner refuses acme's appends once its topics store N bytes, with nothing written,
while another tenant appends as before. The agent that takes over after `odradek cluster
handover`, and the one that takes over after a kill -9 of the owner, refuse acme too:
the usage is summed from the segments the new owner restored, the quota read from
etcd. Deleting the topic there brings acme back under at once.
Method: two `odradek serve --store --etcd --auth` processes on a real etcd and moto's S3
server; the tenants, users, an admin token and the quota made with the command line
against etcd; the public Python client given both agents (a standby redirects to the
owner). Sizes decide, never timings: records of 30,000 bytes against a quota of 200,000
bytes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from test_serve_agent_auth import HOUR, Agent, add_user_in_etcd, odradek_cli, owner_and_standby

import odradek
from odradek.errors import OdradekError, QuotaExceeded

QUOTA = 200_000  # bytes acme's topics may store
RECORD = 30_000  # bytes of one record's value
SEGMENT = 64 * 1024


def _cli(*arguments: str, env: dict[str, str] | None = None) -> str:
    done = odradek_cli(*arguments, env=env)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


@pytest.fixture
def cluster(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> Iterator[tuple[list[Agent], str, str]]:
    """Two agents of a cluster with tenants acme (alice) and globex (gary), the admin
    root; the agents, the cluster's name and root's token."""
    name, prefix = f"squota{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    etcd = ("--etcd", etcd_server.url, "--cluster", name)
    add_user_in_etcd(etcd_server.url, name, "root", "root-secret", "--admin")
    for tenant, user in (("acme", "alice"), ("globex", "gary")):
        _cli("tenant", "create", tenant, *etcd)
        add_user_in_etcd(etcd_server.url, name, user, f"{user}-secret", "--tenant", tenant)
    token = _cli("token", "create", "root", *etcd).strip()
    started: list[Agent] = []
    try:
        for index in range(2):
            started.append(
                Agent(tmp_path, f"a{index}", etcd_server.url, name, moto_s3, prefix, refresh_seconds=HOUR)
            )
        yield started, name, token
    finally:
        for agent in started:
            agent.stop()


def _fill(client: odradek.RemoteClient, topic: str) -> QuotaExceeded:
    """Append RECORD-byte records to ``topic`` until the tenant's quota refuses one."""
    for _ in range(2 * QUOTA // RECORD + 2):
        before = client.describe_topic(topic).next_offset
        try:
            client.append(topic, [{"value": b"a" * RECORD}])
        except QuotaExceeded as refused:
            assert client.describe_topic(topic).next_offset == before  # nothing written
            return refused
    raise AssertionError(f"{topic} took {2 * QUOTA} bytes without a refusal")


def _refused(client: odradek.RemoteClient, topic: str) -> QuotaExceeded:
    """The refusal of one append to a tenant at its quota (nothing of it written)."""
    before = client.describe_topic(topic).next_offset
    with pytest.raises(QuotaExceeded) as refused:
        client.append(topic, [{"value": b"b" * RECORD}])
    assert client.describe_topic(topic).next_offset == before
    return refused.value


def test_a_tenants_storage_quota_holds_on_the_owner_after_a_handover_and_a_kill(
    cluster: tuple[list[Agent], str, str], etcd_server: EtcdServers
) -> None:
    agents, name, token = cluster
    root = {"token": token}
    owner, standby = owner_and_standby(agents, **root)
    every = ",".join(agent.url for agent in (owner, standby))

    # the quota set offline through etcd reaches the agents by the watch
    shown = _cli(
        "quota", "set", "tenant=acme", "--storage-bytes", str(QUOTA),
        "--etcd", etcd_server.url, "--cluster", name,
    )  # fmt: skip
    assert shown == f"tenant=acme\tstorage_bytes={QUOTA}\n"
    expected = [{"entity": "tenant=acme", "quotas": {"storage_bytes": float(QUOTA)}}]

    def known() -> bool:  # (quotas are listed by the owner: a standby redirects)
        return owner.action("quota_list", {}, **root)["entities"] == expected

    wait_for(known, "the owner to read the quota")

    with (
        odradek.connect(every, user="alice", password="alice-secret") as alice,
        odradek.connect(every, user="gary", password="gary-secret") as gary,
    ):
        alice.create_topic("orders", segment_bytes=SEGMENT)
        gary.create_topic("orders", segment_bytes=SEGMENT)
        refused = _fill(alice, "orders")
        assert refused.tenant == "acme" and refused.quota == QUOTA and refused.used >= QUOTA
        stored = alice.describe_topic("orders")
        for _ in range(QUOTA // RECORD + 1):  # another tenant is not bounded
            gary.append("orders", [{"value": b"g" * RECORD}])
        assert gary.describe_topic("orders").bytes > QUOTA

    # `odradek cluster handover`: the new owner sums acme's usage from what it restored
    moved = odradek_cli(
        "cluster", "handover", "--server", every, "--to", standby.log.stem, env={"ODRADEK_TOKEN": token}
    )
    assert moved.returncode == 0, moved.stderr
    second, first = owner_and_standby(agents, **root)
    assert second is standby
    assert second.action("quota_list", {}, **root)["entities"] == expected  # by the watch
    with (
        odradek.connect(every, user="alice", password="alice-secret") as alice,
        odradek.connect(every, user="gary", password="gary-secret") as gary,
    ):
        assert alice.describe_topic("orders").next_offset == stored.next_offset
        refused = _refused(alice, "orders")
        assert refused.tenant == "acme" and refused.quota == QUOTA and refused.used >= QUOTA
        gary.append("orders", [{"value": b"g" * RECORD}])

    # kill -9 of the owner: the agent that takes over refuses acme too
    second.process.send_signal(signal.SIGKILL)
    second.process.wait()

    def took_over() -> bool:
        try:
            return first.role(**root) == "owner"
        except OdradekError:
            return False

    wait_for(took_over, "the other agent to take over")
    with odradek.connect(first.url, user="alice", password="alice-secret") as alice:
        assert alice.describe_topic("orders").next_offset == stored.next_offset
        refused = _refused(alice, "orders")
        assert refused.tenant == "acme" and refused.used >= QUOTA

        # deleting the topic there brings acme back under at once
        alice.delete_topic("orders")
        alice.create_topic("orders")
        assert alice.append("orders", [{"value": b"fresh"}]) is not None
        assert alice.describe_topic("orders").next_offset == 1
