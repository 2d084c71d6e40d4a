"""Topic records in the cluster's catalog in a real etcd (cluster/etcd.py: create_topic,
topic, topics, delete_topic).

Goal: a topic record is created once (a second, different creation is TopicExists; the
same record again, as a retry after a lost answer, is accepted), read back equal, listed
by name under its cluster only, and deleted. Method: EtcdCluster clients against the
session's single-member etcd, each test under a cluster name of its own.
"""

from __future__ import annotations

import pytest
from cluster_testing import run
from etcd_servers import EtcdServers, unique_cluster_name

from odradek.cluster.etcd import EtcdCluster
from odradek.cluster.keys import TopicRecord
from odradek.errors import TopicExists


def test_topic_records_are_created_once_listed_and_deleted(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            async with EtcdCluster(etcd_server.url, unique_cluster_name()) as elsewhere:
                orders = TopicRecord("orders.eu", {"cleanup": "compact", "retention_ms": 86_400_000})
                await a.create_topic(orders)
                await a.create_topic(orders)  # the same record again: a retry, accepted
                with pytest.raises(TopicExists):
                    await b.create_topic(TopicRecord("orders.eu", {"cleanup": "delete"}))
                await b.create_topic(TopicRecord("_system", {}, incarnation=3))
                assert await b.topic("orders.eu") == orders
                assert [record.name for record in await a.topics()] == ["_system", "orders.eu"]
                assert await elsewhere.topics() == []
                assert await a.delete_topic("orders.eu")
                assert not await a.delete_topic("orders.eu")
                assert await b.topic("orders.eu") is None
                await a.create_topic(TopicRecord("orders.eu", {}, incarnation=2))  # created anew

    run(scenario())
