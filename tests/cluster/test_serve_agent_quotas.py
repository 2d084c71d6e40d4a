"""`odradek serve --etcd`: the agents of a cluster share one set of client quotas.

Goal: quotas live in the cluster's etcd beside the credentials (decision 0029). A cluster
of the previous version kept them as an object of its store: the agents import that
object into etcd once (one of the two says so in its log), and it is not read or written
after. A quota set through the owner's door reaches the standby through etcd's watch
(the agents' periodic refresh is set to an hour here), so when the owner stops, the agent
that takes over serves it, and throttles a Kafka producer by the imported one.
Method: two `odradek serve --store --etcd` processes (loopback, no authentication: the
one principal is an admin) on a real etcd and moto's S3 server; a quota written into the
store as an object before they start, another set through the owner's door; the owner is
stopped. (Like users, quotas are managed through the owner: a standby refuses them.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from test_serve_agent_auth import HOUR, Agent, owner_and_standby

from odradek.cluster.documents import EtcdDocuments
from odradek.errors import OdradekError
from odradek.security.quotas import DOCUMENT, QuotaEntity, QuotaSettings

NOISY = QuotaEntity.parse("client-id=noisy")
EVERYONE = QuotaEntity.parse("user=<default>")


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> Iterator[tuple[list[Agent], QuotaSettings, str]]:
    cluster, prefix = f"quota{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    in_store = QuotaSettings.in_object_store(moto_s3.open(prefix))  # where the previous version kept them
    in_store.set(NOISY, {"producer_byte_rate": 1000.0})
    started: list[Agent] = []
    try:
        for index in range(2):
            agent = Agent(
                tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix, auth=False,
                refresh_seconds=HOUR,
            )  # fmt: skip
            started.append(agent)
        yield started, in_store, cluster
    finally:
        for agent in started:
            agent.stop()


def test_agents_import_the_store_object_and_share_quotas_through_etcd(
    agents: tuple[list[Agent], QuotaSettings, str], etcd_server: EtcdServers
) -> None:
    started, in_store, cluster = agents
    owner, standby = owner_and_standby(started)
    # The object the store held when the agents started was imported into etcd, once.
    imports = [agent.log.read_text().count("imported") for agent in started]
    assert sorted(imports) == [0, 1], imports
    assert owner.action("quota_list", {})["entities"] == [
        {"entity": "client-id=noisy", "quotas": {"producer_byte_rate": 1000.0}}
    ]
    owner.action("quota_set", {"entity": "user=<default>", "quotas": {"request_rate": 1e6}})
    documents = EtcdDocuments(etcd_server.url, cluster)
    try:
        in_etcd = QuotaSettings(documents.persistence(DOCUMENT))
        assert set(in_etcd.entities()) == {NOISY, EVERYONE}  # written to etcd
    finally:
        documents.close()
    in_store.refresh()
    assert set(in_store.entities()) == {NOISY}  # the object is no longer written
    owner.stop()

    def took_over() -> bool:
        try:
            return standby.role() == "owner"
        except OdradekError:
            return False

    wait_for(took_over, "the standby to take over")
    # The new owner learnt of the quota set on the old one through the watch.
    assert {entity["entity"] for entity in standby.action("quota_list", {})["entities"]} == {
        "client-id=noisy",
        "user=<default>",
    }
    throttled: list[int] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{standby.kafka_port}",
            "client.id": "noisy",
            "throttle_cb": lambda event: throttled.append(event.throttle_time),
        }
    )
    for _ in range(20):
        producer.produce("quota.cluster", b"x" * 1000)
    assert producer.flush(60) == 0
    deadline = time.monotonic() + 60
    while not throttled and time.monotonic() < deadline:
        producer.poll(0.1)
    assert throttled and max(throttled) > 0
