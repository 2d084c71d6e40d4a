"""`odradek group list|describe|delete` see the Kafka door's groups too.

Goal: a consumer group made through the Kafka door of an `odradek serve` is listed by
`odradek group list` (with its kind, state, members and lag under `--long`), described
by `odradek group describe` (kind "kafka", lag per topic and per virtual partition) and
deleted by `odradek group delete`, through the server's native door: one server, one
set of groups. A group Kafka share consumers are in shows with kind "share", and as an
odradek group once they left.

Method: a real `odradek serve` with its Kafka listener on a free port; kafka-python
commits offsets for a group (assign + commit, as a consumer that tracks its own
partitions does); confluent-kafka's ShareConsumer joins a share group; each CLI
command runs as its own process.
"""

from __future__ import annotations

import json
import time
import warnings

import pytest
from odradek_process import Server, run

from odradek.ports import free_port

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata


def test_kafka_groups_through_the_cli(start_server: type[Server]) -> None:
    port = free_port()
    server = start_server(None, "--kafka-listen", f"127.0.0.1:{port}")
    assert run("topic", "create", "orders", server=server).returncode == 0
    lines = b"".join(b"k%d\tv%d\n" % (i, i) for i in range(8))
    assert run("produce", "orders", "--keyed", server=server, stdin=lines).returncode == 0
    consumer = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{port}", group_id="kafka-billing", enable_auto_commit=False
    )
    consumer.assign([TopicPartition("orders", 0)])
    consumer.commit({TopicPartition("orders", 0): OffsetAndMetadata(5, "", -1)})
    consumer.close()

    assert run("group", "list", server=server).stdout.decode().split() == ["kafka-billing"]
    long = run("group", "list", "--long", server=server).stdout.decode().splitlines()
    assert long[0].split() == ["GROUP", "KIND", "STATE", "MEMBERS", "LAG"]
    assert long[1].split() == ["kafka-billing", "kafka", "Empty", "0", "3"]
    described = json.loads(run("group", "describe", "kafka-billing", server=server).stdout)
    assert (described["kind"], described["state"]) == ("kafka", "Empty")
    (topic,) = described["topics"]
    assert (topic["topic"], topic["committed"], topic["next_offset"], topic["lag"]) == ("orders", 5, 8, 3)
    assert topic["partitions"] == [{"partition": 0, "committed": 5, "lag": 3, "metadata": ""}]

    assert run("group", "delete", "kafka-billing", server=server).returncode == 0
    assert run("group", "list", server=server).stdout == b""
    code, errors = server.stop()
    assert code == 0, errors


def test_a_share_group_shows_with_its_kind(start_server: type[Server]) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    if not hasattr(confluent_kafka, "ShareConsumer"):
        pytest.skip("this confluent-kafka has no ShareConsumer")
    port = free_port()
    server = start_server(None, "--kafka-listen", f"127.0.0.1:{port}")
    assert run("topic", "create", "jobs", server=server).returncode == 0
    consumer = confluent_kafka.ShareConsumer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "workers"}
    )
    consumer.subscribe(["jobs"])

    def listed() -> list[list[str]]:
        return [
            line.split()
            for line in run("group", "list", "--long", server=server).stdout.decode().splitlines()
        ]

    deadline = time.monotonic() + 30
    while listed()[1:] != [["workers", "share", "Stable", "1", "0"]] and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert listed()[1:] == [["workers", "share", "Stable", "1", "0"]]
    described = json.loads(run("group", "describe", "workers", server=server).stdout)
    assert (described["kind"], described["pattern"]) == ("share", "jobs")
    consumer.close()
    # Its native member leaves with the share session's closing request (or at the
    # latest the leave grace after the leave heartbeat).
    deadline = time.monotonic() + 30
    while listed()[1:] != [["workers", "odradek", "Empty", "0", "0"]] and time.monotonic() < deadline:
        pass  # each look is a CLI process of its own
    assert listed()[1:] == [["workers", "odradek", "Empty", "0", "0"]]
    code, errors = server.stop()
    assert code == 0, errors
