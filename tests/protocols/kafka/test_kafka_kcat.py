"""kcat (Debian's package, librdkafka's command-line client) against the Kafka door.

Goal: the everyday shell tool works unchanged: metadata listing shows dotted topics
and their virtual partitions, produce from stdin with keys and headers, consume a
range with keys, headers and offsets, consume as a balanced group member.

Method: kcat runs as a subprocess against the in-process listener; output is parsed
from kcat's ``-f`` format strings and ``-J`` JSON. Skipped when the binary is missing
(``./dev setup`` installs it with apt).
"""

from __future__ import annotations

import json
import shutil
import subprocess
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
