"""kcat (Debian's package, librdkafka's command-line client) against the Kafka door.

Goal: the everyday shell tool works unchanged: metadata listing shows dotted topics
and their virtual partitions, produce from stdin with keys and headers, consume a
range with keys, headers and offsets, consume as a balanced group member, a group of
three members in which one leaves and the two others take over its partition, and static
members (``-X group.instance.id``): one restarted gets its partitions back without a
rebalance.

Method: kcat runs as a subprocess against the in-process listener; output is parsed
from kcat's ``-f`` format strings and ``-J`` JSON. Skipped when the binary is missing
(``./dev setup`` installs it with apt).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")


def kcat(door: Any, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
    assert KCAT is not None
    done = subprocess.run(
        [KCAT, "-b", door.bootstrap, "-X", "topic.metadata.refresh.interval.ms=1000", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.compat("kcat", "produce")
@pytest.mark.compat("kcat", "consume")
def test_produce_and_consume_with_keys_and_headers(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    lines = "".join(f"key{i % 3}:value {i}\n" for i in range(25))
    kcat(kafka_door, "-P", "-t", topic_name, "-K", ":", "-H", "origin=kcat", stdin=lines)
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 25
    out = kcat(kafka_door, "-C", "-t", topic_name, "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\n")
    rows = [line.split("|") for line in out.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(25))
    assert rows[4] == ["4", "key1", "value 4", "origin=kcat"]
    assert kafka_door.engine.key_version(topic_name, b"key1") == 8


def test_metadata_lists_dotted_topics_with_virtual_partitions(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    listing = json.loads(kcat(kafka_door, "-L", "-J"))
    topics = {t["topic"]: t for t in listing["topics"]}
    assert topic_name in topics and len(topics[topic_name]["partitions"]) == 1
    assert listing["brokers"][0]["name"].endswith(str(kafka_door.listener.port))


def test_consume_a_range_and_as_a_group_member(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"key": f"k{i}", "value": f"v{i}"} for i in range(10)])
    out = kcat(kafka_door, "-C", "-t", topic_name, "-o", "3", "-c", "4", "-f", "%o:%s\n")
    assert out.splitlines() == ["3:v3", "4:v4", "5:v5", "6:v6"]
    out = kcat(
        kafka_door,
        "-G",
        "kcat-group",
        topic_name,
        "-o",
        "beginning",
        "-e",
        "-f",
        "%s\n",
        "-X",
        "heartbeat.interval.ms=100",
        "-X",
        "enable.auto.commit=true",
    )
    assert sorted(out.splitlines()) == sorted(f"v{i}" for i in range(10))


class _Member:
    """One `kcat -G` process; its delivered values and its latest assignment, as read."""

    def __init__(self, door: Any, group: str, topic: str, *settings: str) -> None:
        assert KCAT is not None
        self.values: list[str] = []
        self.assigned = -1  # partitions in the latest assignment, -1 before the first
        self.partitions: list[int] = []  # those of the latest assignment
        self.rebalances = 0  # assignments and revocations kcat reported
        self.process = subprocess.Popen(
            [
                KCAT,
                "-b",
                door.bootstrap,
                "-G",
                group,
                topic,
                "-u",
                "-f",
                "%s\n",
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "heartbeat.interval.ms=100",
                "-X",
                "session.timeout.ms=6000",
                "-X",
                "topic.metadata.refresh.interval.ms=1000",
                *(arg for setting in settings for arg in ("-X", setting)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._threads = [
            threading.Thread(target=self._read_values, daemon=True),
            threading.Thread(target=self._read_events, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_values(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.values.append(line.rstrip("\n"))

    def _read_events(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "rebalanced" in line and "assigned:" in line:
                assignment = line.split("assigned:", 1)[1]
                self.partitions = sorted(int(p) for p in re.findall(r"\[(\d+)\]", assignment))
                self.assigned = assignment.count("[")
                self.rebalances += 1
            elif "rebalanced" in line and "revoked" in line:
                self.assigned = 0
                self.partitions = []
                self.rebalances += 1

    def leave(self) -> None:
        self.process.terminate()  # kcat closes its consumer on SIGTERM (a dynamic member leaves)
        self.process.wait(timeout=30)
        for thread in self._threads:
            thread.join(timeout=10)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.process.stdout.close()
        self.process.stderr.close()


def _wait_for(condition: Any, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds  # a guard against hangs, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.compat("kcat", "groups")
def test_a_group_of_three_with_a_member_leaving(kafka_door: Any, topic_name: str) -> None:
    admin = pytest.importorskip("confluent_kafka.admin")
    client = admin.AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    client.create_topics([admin.NewTopic(topic_name, 3, 1)])[topic_name].result(30)
    members = [_Member(kafka_door, "kcat-three", topic_name) for _ in range(3)]
    try:
        _wait_for(lambda: all(m.assigned == 1 for m in members), "one partition per member")
        first = [f"a{i}" for i in range(60)]
        kafka_door.engine.append(topic_name, [{"key": f"k{i}", "value": v} for i, v in enumerate(first)])
        _wait_for(lambda: sum(len(m.values) for m in members) >= len(first), "the first records")
        delivered = [v for m in members for v in m.values]
        assert sorted(delivered) == sorted(first)  # each record to exactly one member
        assert all(m.values for m in members)  # three members, each with its own partition
        members[0].leave()
        _wait_for(lambda: sorted(m.assigned for m in members[1:]) == [1, 2], "the two left to share three")
        second = [f"b{i}" for i in range(60)]
        kafka_door.engine.append(topic_name, [{"key": f"k{i}", "value": v} for i, v in enumerate(second)])
        remaining = members[1:]
        _wait_for(
            lambda: set(second) <= {v for m in remaining for v in m.values}, "the records after the leave"
        )
    finally:
        for member in members:
            if member.process.poll() is None:
                member.leave()


@pytest.mark.compat("kcat", "static groups")
def test_a_static_member_restarts_into_its_partitions(kafka_door: Any, topic_name: str) -> None:
    """Two `kcat -G` members with ``-X group.instance.id``: one is stopped (a static
    member sends no LeaveGroup) and started again with the same instance id. It gets its
    own partitions back at once (its session is 30 s: waiting for it to expire would be
    a failure), the other member is neither revoked nor reassigned, the generation does
    not move, and both go on reading their partitions."""
    admin = pytest.importorskip("confluent_kafka.admin")
    client = admin.AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    client.create_topics([admin.NewTopic(topic_name, 4, 1)])[topic_name].result(30)
    group = "kcat-static"

    def member(index: int) -> _Member:
        return _Member(
            kafka_door, group, topic_name, f"group.instance.id=kcat-{index}", "session.timeout.ms=30000"
        )

    members = [member(0), member(1)]
    try:
        _wait_for(lambda: all(m.assigned == 2 for m in members), "two partitions per member")
        before = [list(m.partitions) for m in members]
        assert sorted(before[0] + before[1]) == [0, 1, 2, 3]
        generation = kafka_door.node.directory.describe_group(group).options["generation"]
        kept = members[0].rebalances
        first = [f"a{i}" for i in range(40)]
        kafka_door.engine.append(topic_name, [{"key": f"k{i}", "value": v} for i, v in enumerate(first)])
        _wait_for(lambda: sum(len(m.values) for m in members) >= len(first), "the first records")
        members[1].leave()
        members[1] = member(1)
        _wait_for(lambda: members[1].assigned == 2, "the restarted member's assignment")
        assert members[1].partitions == before[1]
        info = kafka_door.node.directory.describe_group(group)
        assert info.options["generation"] == generation and info.state == "Stable"
        assert members[0].rebalances == kept and members[0].partitions == before[0]
        second = [f"b{i}" for i in range(40)]
        kafka_door.engine.append(topic_name, [{"key": f"k{i}", "value": v} for i, v in enumerate(second)])
        _wait_for(
            lambda: set(second) <= {v for m in members for v in m.values}, "the records after the restart"
        )
        assert members[1].values and not set(first) & set(members[1].values)  # committed: not read again
    finally:
        for m in members:
            if m.process.poll() is None:
                m.leave()
