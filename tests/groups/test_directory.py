"""The directory of groups of every kind, with no Kafka listener running.

Goal: the Kafka door's groups are data of the directory, not of a running listener:
``odradek.open(dir)`` lists, describes (lag per topic and virtual partition) and
deletes the Kafka groups whose offsets the door left on disk; while such a group
exists, an odradek group cannot take its name, and once it is deleted it can. A name
held by both kinds (data written before names were shared) is the odradek group's
here, and the Kafka group comes to light once that one is deleted.

Method: the Kafka door's own store writes a group's offsets as a commit through the
door does; the embedded client does the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import odradek
from odradek.groups.directory import GroupNames
from odradek.protocols.kafka.store import DoorStore


def _kafka_commit(data: Path, group: str, offsets: dict[tuple[str, int], int]) -> None:
    DoorStore(str(data), fsync=False).save_group(
        group, {key: (offset, -1, None) for key, offset in offsets.items()}
    )


def test_kafka_groups_on_disk_without_a_listener(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data, fsync=False) as client:
        client.create_topic("orders")
        client.append("orders", [{"value": b"v"}] * 10)
    _kafka_commit(data, "kafka-billing", {("orders", 0): 4, ("orders", 1): 9})
    with odradek.open(data, fsync=False) as client:
        assert client.list_groups() == ["kafka-billing"]
        info = client.describe_group("kafka-billing")
        assert (info.kind, info.state, info.pattern, info.members) == ("kafka", "Empty", None, [])
        (topic,) = info.topics
        assert (topic.committed, topic.next_offset, topic.lag) == (4, 10, 6)
        assert topic.partitions is not None
        # One partition: 1 holds no record, so nothing is left to read there (lag 0).
        assert [(p.partition, p.lag) for p in topic.partitions] == [(0, 6), (1, 0)]
        with pytest.raises(odradek.InvalidRequest, match="kafka consumer group"):
            client.subscribe("orders", group="kafka-billing")
        assert client.list_groups() == ["kafka-billing"], "a refused subscribe left an odradek group"
        client.delete_group("kafka-billing")
        assert client.list_groups() == []
        with pytest.raises(odradek.InvalidRequest, match="does not exist"):
            client.delete_group("kafka-billing")
        client.subscribe("orders", group="kafka-billing").close()  # the name is free now
        assert client.describe_group("kafka-billing").kind == "odradek"


def test_a_name_held_by_both_kinds_is_the_odradek_groups_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data, fsync=False) as client:
        client.create_topic("orders")
        client.subscribe("orders", group="both").close()
    _kafka_commit(data, "both", {("orders", 0): 0})  # as an older version could leave it
    with odradek.open(data, fsync=False) as client:
        assert client.list_groups() == ["both"]
        assert client.describe_group("both").kind == "odradek"
        client.delete_group("both")
        assert client.list_groups() == ["both"]
        assert client.describe_group("both").kind == "kafka"
        client.delete_group("both")
        assert client.list_groups() == []


def test_group_names_are_one_namespace() -> None:
    names = GroupNames({"odradek": lambda: ["a"], "kafka": lambda: ["b", "a"]})
    assert names.kinds_of("a") == {"odradek", "kafka"}
    assert names.claim("b", "odradek") == "kafka" and names.kinds_of("b") == {"kafka"}
    assert names.claim("b", "kafka") is None
    assert names.claim("c", "kafka") is None and names.claim("c", "odradek") == "kafka"
    names.release("c", "kafka")
    assert names.claim("c", "odradek") is None and names.kinds_of("c") == {"odradek"}
