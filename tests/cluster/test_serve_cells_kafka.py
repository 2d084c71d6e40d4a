"""The Kafka door of `odradek serve --etcd --cells 3`: a broker per cell (decision 0033).

Goal: what a Kafka user of a cluster whose topics are spread over three agents sees,
with librdkafka (confluent-kafka) as the client: Metadata lists a broker per cell and
names the broker of each topic's cell as its partitions' leader; an idempotent producer
writes to topics of every cell and each record lands once in its topic (read back
through the Flight door too); a consumer group (coordinated by the home cell's broker)
reads every topic of every cell and commits; when the agent serving a cell is killed
(kill -9) another takes the cell over, the producer goes on without losing or doubling
an acknowledged record, and the group reads on from its committed offsets; a topic
created through the Kafka door lands in the cell of the broker that created it; a
topic of another cell cannot be deleted through a broker that does not serve it.
Method: real `odradek serve` processes with `--cells 3 --kafka-listen`, a real etcd and
moto's S3 server; faults by signals.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from serve_processes import ODRADEK, ServeAgent, cluster_name, one_cell_each, running

import odradek
from odradek.ports import free_port_range

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # noqa: E402

CELLS = ["_cell", "_cell.1", "_cell.2"]
TOPICS = [f"events.{index}" for index in range(6)]


class KafkaCellAgent(ServeAgent):
    """An agent of a cluster of three cells, with a Kafka door per cell it serves."""

    def __init__(self, directory: Path, agent_id: str, etcd: str, cluster: str, store: S3Server, prefix: str):
        self.kafka_port = free_port_range(3)
        self.etcd, self.cluster = etcd, cluster
        super().__init__(
            directory,
            agent_id,
            etcd,
            cluster,
            store,
            prefix,
            ["--cells", "3", "--kafka-listen", f"127.0.0.1:{self.kafka_port}"],
        )


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[KafkaCellAgent]]:
    cluster, prefix = cluster_name("k"), unique_prefix()
    with running(
        lambda agent_id: KafkaCellAgent(tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix)
    ) as started:
        yield started


def _one_cell_each(agents: list[KafkaCellAgent]) -> dict[str, KafkaCellAgent]:
    return one_cell_each(agents, CELLS)


def _bootstrap(agents: list[KafkaCellAgent]) -> str:
    """Every agent's every cell port: whichever door is up answers Metadata for all."""
    return ",".join(f"127.0.0.1:{agent.kafka_port + index}" for agent in agents for index in range(3))


def _leaders(bootstrap: str, topics: list[str]) -> dict[str, set[int]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    found: dict[str, set[int]] = {}

    def known() -> bool:
        listing = admin.list_topics(timeout=10)
        found.clear()
        for topic in topics:
            meta = listing.topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return False
            found[topic] = {p.leader for p in meta.partitions.values()}
        return len(listing.brokers) == 3

    wait_for(known, "every topic's leader in Metadata, with three brokers")
    return found


class Produced:
    """An idempotent producer's acknowledged values per topic."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                "topic.metadata.refresh.interval.ms": 2_000,
                "reconnect.backoff.max.ms": 500,
            }
        )
        self.acked: dict[str, list[str]] = {}
        self.errors: list[str] = []

    def _report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(f"{message.topic()}: {error}")
        else:
            self.acked.setdefault(message.topic(), []).append(message.value().decode())

    def send(self, topic: str, value: str) -> None:
        self.producer.produce(topic, value=value.encode(), key=value.encode(), on_delivery=self._report)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(150) == 0, "records still unacknowledged after 150 s"
        assert not self.errors, self.errors[:5]


def _consume(group: str, bootstrap: str, topics: list[str], wanted: int) -> dict[str, list[str]]:
    """What a group member reads (committing as it goes) until ``wanted`` records came."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 2_000,
        }
    )
    got: dict[str, list[str]] = {}
    try:
        consumer.subscribe(topics)
        deadline = time.monotonic() + 120
        count = 0
        while count < wanted:
            assert time.monotonic() < deadline, f"the group read {count} of {wanted} records"
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            got.setdefault(message.topic(), []).append(message.value().decode())
            count += 1
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return got


def test_kafka_clients_use_a_broker_per_cell_through_a_kill(agents: list[KafkaCellAgent]) -> None:
    owners = _one_cell_each(agents)
    bootstrap = _bootstrap(agents)
    # `odradek cluster status` names each cell's Kafka broker and where it listens.
    status = subprocess.run(
        [*ODRADEK, "cluster", "status", "--etcd", agents[0].etcd, "--cluster", agents[0].cluster],
        capture_output=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr.decode()
    for cell, agent in owners.items():
        index = CELLS.index(cell)
        assert f"broker {index + 1} 127.0.0.1:{agent.kafka_port + index}" in status.stdout.decode()
    flight = odradek.connect(",".join(agent.url for agent in agents))
    for topic in TOPICS:
        flight.create_topic(topic)  # placed in turn in the least loaded cell
    # Metadata: three brokers (one per cell), each topic led by its cell's broker.
    leaders = _leaders(bootstrap, TOPICS)
    assert {node for each in leaders.values() for node in each} == {1, 2, 3}
    assert all(len(each) == 1 for each in leaders.values())

    produced = Produced(bootstrap)
    for number in range(50):
        for topic in TOPICS:
            produced.send(topic, f"{topic}/{number}")
    produced.flush()
    assert all(len(produced.acked[topic]) == 50 for topic in TOPICS)

    # A client told only of an agent that does not serve the home cell (its base port
    # relays to the home cell's door) finds every cell's broker.
    relayed = Produced(f"127.0.0.1:{owners['_cell.1'].kafka_port}")
    for topic in TOPICS:
        relayed.send(topic, f"{topic}/relayed")
    relayed.flush()
    for topic in TOPICS:
        produced.acked[topic].append(f"{topic}/relayed")
    # A group reads every topic of every cell through the home cell's coordinator.
    first = _consume("readers", bootstrap, TOPICS, 51 * len(TOPICS))
    assert {topic: sorted(values) for topic, values in first.items()} == {
        topic: sorted(produced.acked[topic]) for topic in TOPICS
    }

    # kill -9 of the agent serving cell 1 while the producer goes on.
    victim = owners["_cell.1"]
    assert victim.process is not None
    victim.process.kill()
    victim.process.wait()
    for number in range(50, 100):
        for topic in TOPICS:
            produced.send(topic, f"{topic}/{number}")
        time.sleep(0.02)
    produced.flush()
    wait_for(
        lambda: sorted(c for a in agents if a.alive() for c in a.cells()) == CELLS,
        "every cell served by the two agents left",
    )
    # The group goes on from its committed offsets: the second half, once.
    second = _consume("readers", bootstrap, TOPICS, 50 * len(TOPICS))
    for topic in TOPICS:
        assert sorted(second[topic]) == sorted(produced.acked[topic][51:]), topic

    # Every acknowledged record is in its topic once, in the order it was acknowledged
    # (one partition, one producer).
    for topic in TOPICS:
        table = pa.Table.from_batches(list(flight.read(topic, wait=0)))
        assert [value.decode() for value in table.column("value").to_pylist()] == produced.acked[topic], topic

    # A topic created through the Kafka door lands in the cell of the broker asked.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("made.by.kafka", num_partitions=3, replication_factor=1)])[
        "made.by.kafka"
    ].result(timeout=60)
    (leader,) = _leaders(bootstrap, ["made.by.kafka"])["made.by.kafka"]
    assert leader in (1, 2, 3)
    later = Produced(bootstrap)
    for number in range(30):
        later.send("made.by.kafka", f"m/{number}")
    later.flush()
    table = pa.Table.from_batches(list(flight.read("made.by.kafka", wait=0)))
    assert sorted(value.decode() for value in table.column("value").to_pylist()) == sorted(
        later.acked["made.by.kafka"]
    )
    # Transactions write the topics of any cell (decision 0037): the coordinator is
    # the home cell's door, each other cell's door stages what it leads, etcd holds the
    # decision. Committed ones land in both cells, an aborted one in neither.
    home_topic = next(topic for topic, nodes in leaders.items() if nodes == {1})
    other_topic = next(topic for topic, nodes in leaders.items() if nodes != {1})
    before = {topic: len(list(_values(flight, topic))) for topic in (home_topic, other_topic)}
    transactional = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": "cells-txn", "transaction.timeout.ms": 60_000}
    )
    transactional.init_transactions(60)
    transactional.begin_transaction()
    transactional.produce(home_topic, value=b"txn/1", key=b"txn")
    transactional.commit_transaction(60)
    transactional.begin_transaction()
    transactional.produce(home_topic, value=b"txn/2", key=b"txn")
    transactional.produce(other_topic, value=b"txn/3", key=b"txn")
    transactional.abort_transaction(60)
    for number in (4, 6):
        transactional.begin_transaction()
        transactional.produce(home_topic, value=f"txn/{number}".encode(), key=b"txn")
        transactional.produce(other_topic, value=f"txn/{number + 1}".encode(), key=b"txn")
        transactional.commit_transaction(60)
    # (A commit answered is applied to its topics in the background: wait for it.)
    wait_for(
        lambda: _values(flight, home_topic)[before[home_topic] :] == ["txn/1", "txn/4", "txn/6"],
        "the committed transactions' records in the home cell, and none of the aborted one's",
    )
    wait_for(
        lambda: _values(flight, other_topic)[before[other_topic] :] == ["txn/5", "txn/7"],
        "the committed transactions' records in the other cell, and none of the aborted one's",
    )
    flight.close()


def _values(client: odradek.RemoteClient, topic: str) -> list[str]:
    table = pa.Table.from_batches(list(client.read(topic, wait=0)))
    return [value.decode() for value in table.column("value").to_pylist()]
