"""Resetting a group's committed offsets (groups/reset.py), for both kinds of group.

Goal: ``reset_offsets`` follows Kafka's ``--reset-offsets``: refused while the group has
members (with a message saying so), a dry run changes nothing, and an executed reset
is what the group's next member and a reopened data directory see: a rewind
redelivers, a move to ``latest`` skips, a time picks the first record at or after it,
an offset out of range is moved into it. A Kafka group (offsets on disk, no listener)
is reset per virtual partition. Bad targets and patterns are refused and change
nothing.

Method: an embedded client (fsync off); native groups consume with ``subscribe`` and
``drain``; a Kafka group's offsets are written by the door's own store, as a commit
through the door would; each result is read back with ``describe_group``, a poll, or
after closing and opening the directory again.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import odradek
from odradek.groups import OffsetReset
from odradek.protocols.kafka.store import DoorStore


def _consume_all(client: odradek.EmbeddedClient, drain: Callable[..., list], group: str = "billing") -> None:
    with client.subscribe("orders.>", group=group, start="earliest") as consumer:
        drain(consumer)


def _committed(client: odradek.EmbeddedClient, group: str) -> dict[str, int]:
    return {topic.topic: topic.committed for topic in client.describe_group(group).topics}


def test_refused_while_the_group_has_members(client: odradek.EmbeddedClient, append_keyed) -> None:
    client.create_topic("orders.eu")
    append_keyed(client, "orders.eu", [b"a", b"b"])
    with client.subscribe("orders.>", group="billing", start="earliest"):
        with pytest.raises(odradek.InvalidRequest, match="1 active member"):
            client.reset_offsets("billing", topics="orders.>", to="earliest")
        with pytest.raises(odradek.InvalidRequest, match="1 active member"):
            client.reset_offsets("billing", topics="orders.>", to="earliest", dry_run=True)


def test_dry_run_changes_nothing_and_execute_rewinds(
    data_dir: str, open_client: Callable[..., odradek.EmbeddedClient], append_keyed, drain
) -> None:
    client = open_client()
    client.create_topic("orders.eu")
    client.create_topic("orders.us")
    append_keyed(client, "orders.eu", [b"a", b"b", b"c"])
    append_keyed(client, "orders.us", [b"x", b"y"])
    _consume_all(client, drain)
    assert _committed(client, "billing") == {"orders.eu": 3, "orders.us": 2}

    plan = client.reset_offsets("billing", topics="orders.eu", to="earliest", dry_run=True)
    assert plan == [OffsetReset("orders.eu", None, 3, 0)]
    assert _committed(client, "billing") == {"orders.eu": 3, "orders.us": 2}

    plan = client.reset_offsets("billing", topics="orders.eu", to=1)
    assert plan == [OffsetReset("orders.eu", None, 3, 1)]
    assert _committed(client, "billing") == {"orders.eu": 1, "orders.us": 2}
    with client.subscribe("orders.>", group="billing") as consumer:
        again = drain(consumer)
    assert [(d.topic, d.offset) for d in again] == [("orders.eu", 1), ("orders.eu", 2)]

    client.reset_offsets("billing", topics="orders.>", to="earliest")
    client.close()
    reopened = open_client()  # the reset is in the progress file
    assert _committed(reopened, "billing") == {"orders.eu": 0, "orders.us": 0}


def test_latest_time_and_out_of_range_offsets(client: odradek.EmbeddedClient, append_keyed, drain) -> None:
    client.create_topic("orders.eu")
    client.append(
        "orders.eu", [{"value": b"old", "timestamp": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)}]
    )
    client.append(
        "orders.eu", [{"value": b"new", "timestamp": datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)}]
    )
    with client.subscribe("orders.>", group="billing", start="earliest"):
        pass  # the group exists and has read nothing
    assert client.reset_offsets("billing", topics="orders.>", to="latest") == [
        OffsetReset("orders.eu", None, 0, 2)
    ]
    assert client.reset_offsets("billing", topics="orders.>", to="2026-03-01T00:00:00Z")[0].new == 1
    assert client.reset_offsets("billing", topics="orders.>", to=datetime.datetime(2025, 1, 1))[0].new == 0
    assert client.reset_offsets("billing", topics="orders.>", to=10**9)[0].new == 2  # moved into range
    with client.subscribe("orders.>", group="billing") as consumer:
        assert drain(consumer) == []


@pytest.mark.parametrize(
    ("to", "pattern", "message"),
    [
        ("yesterday", "orders.>", "a reset goes to"),
        (-1, "orders.>", "a reset goes to"),
        (True, "orders.>", "a reset goes to"),
        ("earliest", "payments", "no topic matches"),
        ("earliest", "orders..x", "pattern"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: odradek.EmbeddedClient, append_keyed, drain, to: object, pattern: str, message: str
) -> None:
    client.create_topic("orders.eu")
    client.create_topic("payments")
    append_keyed(client, "orders.eu", [b"a", b"b"])
    _consume_all(client, drain)
    with pytest.raises(odradek.InvalidRequest, match=message):
        client.reset_offsets("billing", topics=pattern, to=to)  # type: ignore[arg-type]
    assert _committed(client, "billing") == {"orders.eu": 2}
    with pytest.raises(odradek.InvalidRequest, match="does not exist"):
        client.reset_offsets("nobody", topics="orders.>", to="earliest")


def test_a_kafka_group_is_reset_per_partition(tmp_path: Path) -> None:
    data = os.fspath(tmp_path / "data")
    with odradek.open(data, fsync=False) as client:
        client.create_topic("orders")
        client.append("orders", [{"value": b"v"}] * 10)
    DoorStore(data, fsync=False).save_group(
        "kafka-billing", {("orders", 0): (4, -1, "m"), ("orders", 1): (9, -1, None)}
    )
    with odradek.open(data, fsync=False) as client:
        plan = client.reset_offsets("kafka-billing", topics="orders", to="earliest", dry_run=True)
        assert plan == [OffsetReset("orders", 0, 4, 0), OffsetReset("orders", 1, 9, 0)]
        client.reset_offsets("kafka-billing", topics="orders", to="latest")
    with odradek.open(data, fsync=False) as client:
        (topic,) = client.describe_group("kafka-billing").topics
        assert topic.partitions is not None
        assert [(p.partition, p.committed, p.lag, p.metadata) for p in topic.partitions] == [
            (0, 10, 0, "m"),
            (1, 10, 0, None),
        ]
