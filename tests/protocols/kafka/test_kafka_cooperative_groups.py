"""Cooperative-sticky groups of many members through subscription changes.

Goal: eight librdkafka consumers with ``partition.assignment.strategy=
cooperative-sticky`` (incremental rebalancing: two rounds per change, revocations
first) share a topic, then all subscribe to a second topic, then half of them drop
it again: after each change every partition of the subscribed topics is owned by
exactly one member and every member owns its share. How long each step takes is
printed (the issue measured ~80 s; this suite does not assert on time).

Method: the in-process listener (conftest); the consumers poll in turn in one thread,
with the default heartbeat interval (3 s), so members learn of a rebalance as a real
deployment's do; each step is waited for with a generous deadline.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

MEMBERS = 8
PARTITIONS = 8
DEADLINE_SECONDS = 120.0


def test_eight_cooperative_members_converge_after_subscription_changes(
    kafka_door: Any, topic_name: str
) -> None:
    first, second = topic_name + "-a", topic_name + "-b"
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    for name in (first, second):
        admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(
            10
        )
    owned: dict[int, set[tuple[str, int]]] = {index: set() for index in range(MEMBERS)}
    consumers = [
        Consumer(
            {
                "bootstrap.servers": kafka_door.bootstrap,
                "group.id": "coop-" + topic_name,
                "client.id": f"member-{index}",
                "partition.assignment.strategy": "cooperative-sticky",
                "topic.metadata.refresh.interval.ms": 1000,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        for index in range(MEMBERS)
    ]

    def subscribe(index: int, topics: list[str]) -> None:
        def on_assign(_: Consumer, parts: list[TopicPartition]) -> None:
            owned[index].update((p.topic, p.partition) for p in parts)

        def on_revoke(_: Consumer, parts: list[TopicPartition]) -> None:
            owned[index].difference_update((p.topic, p.partition) for p in parts)

        consumers[index].subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)

    subscriptions: dict[int, list[str]] = {}

    def converge(step: str, changes: dict[int, list[str]]) -> None:
        for index, topics in changes.items():
            subscribe(index, topics)
        subscriptions.update(changes)
        expected = {
            (name, p) for topics in subscriptions.values() for name in topics for p in range(PARTITIONS)
        }
        started = time.monotonic()

        def settled() -> bool:
            together = [part for parts in owned.values() for part in parts]
            within = all({name for name, _ in owned[i]} <= set(subscriptions[i]) for i in owned)
            shared = all(owned.values())  # every member has a share
            return within and shared and sorted(together) == sorted(expected)

        while not settled():
            assert time.monotonic() - started < DEADLINE_SECONDS, f"{step}: no convergence; owned {owned}"
            for consumer in consumers:
                consumer.poll(0.01)
        print(f"{step}: converged in {time.monotonic() - started:.1f} s")

    converge("start", {index: [first] for index in range(MEMBERS)})
    converge("all add a topic", {index: [first, second] for index in range(MEMBERS)})
    converge("half drop it", {index: [first] for index in range(MEMBERS // 2)})
    for consumer in consumers:
        consumer.close()
