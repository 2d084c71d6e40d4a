"""Conformance of key snapshots: ``snapshot`` and ``read_key(from_snapshot=True)`` give
the same answers and the same errors through every door.

Goal: a snapshot stored through any client reads back as the flagged first row of
``read_key(from_snapshot=True)`` followed by the later events; refusals are the same
error classes with the same attributes; ``cleanup="snapshot"`` is accepted and the
snapshot log never shows as a topic. Method: the ``client`` fixture (conftest.py) runs
each test through every door; results and errors are checked exactly (error classes,
never message text).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from odradek import limits
from odradek.errors import ConflictError, InvalidRequest, RequestTooLarge, TopicNotFound

Client = Any


def test_snapshot_then_read_from_it(client: Client) -> None:
    client.create_topic("acc.eu")
    client.append("acc.eu", [{"key": b"k", "value": b"%d" % i} for i in range(6)])
    assert client.snapshot("acc.eu", b"k", b"state-at-4", version=4) is None
    table = client.read_key("acc.eu", b"k", from_snapshot=True)
    assert table.column_names == ["offset", "timestamp", "key", "value", "headers", "version", "snapshot"]
    assert table.column("snapshot").to_pylist() == [True, False, False]
    assert table.column("version").to_pylist() == [4, 5, 6]
    assert table.column("value").to_pylist() == [b"state-at-4", b"4", b"5"]
    assert table.column("offset").to_pylist() == [3, 4, 5]
    assert "snapshot" not in client.read_key("acc.eu", b"k").column_names
    client.snapshot("acc.eu", "k", bytearray(b"again"), version=4)  # the same version replaces
    assert client.read_key("acc.eu", b"k", from_snapshot=True).column("value")[0].as_py() == b"again"
    unsnapshotted = client.read_key("acc.eu", b"other", from_snapshot=True)
    assert unsnapshotted.num_rows == 0 and "snapshot" in unsnapshotted.column_names
    assert client.list_topics() == ["acc.eu"]


def test_snapshot_refusals(client: Client) -> None:
    client.create_topic("acc")
    client.append("acc", [{"key": b"k", "value": b"v"} for _ in range(3)])
    client.snapshot("acc", b"k", b"s", version=2)
    with pytest.raises(ConflictError) as stale:
        client.snapshot("acc", b"k", b"s", version=1)
    assert type(stale.value) is ConflictError
    assert (stale.value.key, stale.value.expected, stale.value.actual) == (b"k", 1, 2)
    for version in (4, 0, "2"):
        with pytest.raises(InvalidRequest) as refused:
            client.snapshot("acc", b"k", b"s", version=version)
        assert type(refused.value) is InvalidRequest
    with pytest.raises(InvalidRequest):
        client.snapshot("acc", b"k", "text", version=2)
    with pytest.raises(RequestTooLarge):
        client.snapshot("acc", b"k", b"x" * (limits.snapshot_state_bytes_max + 1), version=2)
    with pytest.raises(TopicNotFound):
        client.snapshot("missing", b"k", b"s", version=1)
    with pytest.raises(InvalidRequest):
        client.read_key("acc", b"k", 2, from_snapshot=True)
    with pytest.raises(TopicNotFound):
        client.read_key("missing", b"k", from_snapshot=True)
    assert client.read_key("acc", b"k", from_snapshot=True).column("version").to_pylist() == [2, 3]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_topic_with_a_schema_has_snapshots_everywhere(client: Client) -> None:
    """The snapshot row of a schema'd topic keeps its state in a ``state`` column (its
    typed ``value`` null); the events after it are typed, as a plain read_key's."""
    client.create_topic("typed", schema=SCHEMA, cleanup="snapshot")
    client.append("typed", [{"key": b"k", "value": {"n": n}} for n in range(4)])
    assert client.snapshot("typed", b"k", b"state-at-2", version=2) is None
    table = client.read_key("typed", b"k", from_snapshot=True)
    plain = client.read_key("typed", b"k", from_version=3)
    assert table.column_names == [
        "offset",
        "timestamp",
        "key",
        "value",
        "headers",
        "version",
        "snapshot",
        "state",
    ]
    assert table.schema.field("value").type == plain.schema.field("value").type
    assert table.column("snapshot").to_pylist() == [True, False, False]
    assert table.column("state").to_pylist() == [b"state-at-2", None, None]
    assert table.column("value").to_pylist() == [None, {"n": 2}, {"n": 3}]
    assert table.column("version").to_pylist() == [2, 3, 4]
    assert table.column("offset").to_pylist() == [1, 2, 3]
    assert client.read_key("typed", b"other", from_snapshot=True).column_names == table.column_names
    with pytest.raises(InvalidRequest) as refused:
        client.snapshot("typed", b"k", b"s", version=5)
    assert type(refused.value) is InvalidRequest
    client.create_topic("later", cleanup="snapshot")
    client.set_schema("later", SCHEMA)  # an empty topic with cleanup="snapshot" takes a schema
    assert client.describe_topic("later").schema is not None
    assert client.list_topics() == ["later", "typed"]


def test_a_snapshot_cleanup_topic_is_created_everywhere(client: Client) -> None:
    info = client.create_topic("acc", cleanup="snapshot")
    assert info.config["cleanup"] == "snapshot"
    client.append("acc", [{"key": b"k", "value": b"v"}, {"value": b"keyless"}])
    client.snapshot("acc", b"k", b"s", version=1)
    assert client.read_key("acc", b"k", from_snapshot=True).column("snapshot").to_pylist() == [True]


def test_a_reducer_is_registered_and_reported_everywhere(door: Any) -> None:
    """The reducer is named by import path through every door and runs on the server:
    a round (the background thread's, run here by hand) snapshots the key."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))  # snapshot_reducers.py
    client = door.client
    info = client.create_topic("acc", reducer="snapshot_reducers:total", snapshot_every=3)
    assert (info.config["reducer"], info.config["snapshot_every"]) == ("snapshot_reducers:total", 3)
    client.append("acc", [{"key": b"k", "value": b"%d" % i} for i in range(4)])
    door.node.engine.run_reducers()
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.column("snapshot").to_pylist() == [True]
    assert (table.column("version")[0].as_py(), table.column("value")[0].as_py()) == (4, b"6")
    described = client.describe_topic("acc").snapshots
    assert described["reducer_snapshots"] == 1 and described["reducer_failures"] == 0
    with pytest.raises(InvalidRequest) as refused:
        client.create_topic("other", reducer="snapshot_reducers:missing")
    assert type(refused.value) is InvalidRequest


def test_a_reducer_on_a_schemad_topic_is_given_typed_values_everywhere(door: Any) -> None:
    """A reducer on a schema'd topic folds the typed values (dicts): its snapshot reads
    back through every door in the ``state`` column."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))  # snapshot_reducers.py
    client = door.client
    client.create_topic("orders", schema=SCHEMA, reducer="snapshot_reducers:typed_total", snapshot_every=3)
    client.append("orders", [{"key": b"k", "value": {"n": n}} for n in range(1, 5)])
    door.node.engine.run_reducers()
    table = client.read_key("orders", b"k", from_snapshot=True)
    assert table.column("snapshot").to_pylist() == [True]
    assert (table.column("version")[0].as_py(), table.column("state")[0].as_py()) == (4, b"10")
    assert table.column("value").to_pylist() == [None]
    described = client.describe_topic("orders").snapshots
    assert described["reducer_snapshots"] == 1 and described["reducer_failures"] == 0
