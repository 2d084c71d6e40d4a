"""`odradek serve --etcd`: the agents of a cluster share one set of client quotas.

Goal: quotas live in the object store beside the credentials, so a quota set through the
owner's door is in the store every agent reads (again every few seconds), and
the owner's Kafka door throttles by it (a producer over its quota is told to back off).
Method: two `odradek serve --store --etcd` processes (loopback, no authentication: the
one principal is an admin) on a real etcd and moto's S3 server; a quota written into
the store before they start, another set through the owner's door and read from the
store. (Like users, quotas are managed through the owner: a standby refuses them.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import pytest
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from test_serve_agent_auth import Agent, owner_and_standby

from odradek.security.quotas import QuotaEntity, QuotaSettings


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> Iterator[tuple[list[Agent], QuotaSettings]]:
    cluster, prefix = f"quota{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    shared = QuotaSettings.in_object_store(moto_s3.open(prefix))
    shared.set(QuotaEntity.parse("client-id=noisy"), {"producer_byte_rate": 1000.0})  # before they start
    started: list[Agent] = []
    try:
        for index in range(2):
            agent = Agent(tmp_path, f"a{index}", etcd_server.url, cluster, moto_s3, prefix, auth=False)
            started.append(agent)
        yield started, shared
    finally:
        for agent in started:
            agent.stop()


def test_agents_share_quotas_and_the_owner_throttles_by_them(
    agents: tuple[list[Agent], QuotaSettings],
) -> None:
    started, shared = agents
    owner, standby = owner_and_standby(started)
    assert standby is not owner
    # What the store held when the agents started is what the owner serves and throttles by.
    assert owner.action("quota_list", {})["entities"] == [
        {"entity": "client-id=noisy", "quotas": {"producer_byte_rate": 1000.0}}
    ]
    # What is set through a door goes to the store every agent reads.
    owner.action("quota_set", {"entity": "user=<default>", "quotas": {"request_rate": 1e6}})
    shared.refresh()
    assert QuotaEntity.parse("user=<default>") in shared.entities()
    throttled: list[int] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{owner.kafka_port}",
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
