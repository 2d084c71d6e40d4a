"""The node: the one composition of an engine and what serves it.

Goal: the engine owns no client (no consumer groups inside it); one node per engine
holds its groups and the directory of groups of every kind, and every entry point
(``odradek.open``, the Flight server, the Kafka listener, the metrics registry, each
given a node or a bare engine as before) serves the same node, so a group joined
through one door is the group every other door sees. Closing the engine closes the
node's groups before its topics.

Method: in-process doors over one engine in a temp dir; a group joined through one
entry point is looked for through the others. (``odradek serve`` builds a node and
hands it to its doors: tests/cli/test_cli_group_kinds.py sees a Kafka group through
its native door.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

import odradek
from odradek.engine import Engine
from odradek.errors import ClosedError, InvalidRequest
from odradek.groups import GroupManager
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.metrics import Metrics


def test_the_engine_owns_no_groups_and_has_one_node(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data", fsync=False)
    assert not hasattr(engine, "groups")
    node = Node(engine)
    assert isinstance(node.groups, GroupManager)
    assert Node.of(engine) is node and Node.of(node) is node
    with pytest.raises(InvalidRequest, match="node already"):
        Node(engine)
    node.close()
    assert engine.closed


def test_every_entry_point_serves_the_same_node(tmp_path: Path) -> None:
    client = odradek.open(tmp_path / "data", fsync=False)
    assert isinstance(client.node, Node) and client.engine is client.node.engine
    assert Node.of(client.engine) is client.node
    client.create_topic("orders")
    client.append("orders", [{"key": b"k", "value": b"v"}])
    consumer = client.subscribe("orders", group="billing")

    flight = FlightService(client.engine, "grpc://127.0.0.1:0")  # given the bare engine
    kafka = start_kafka_listener(client.engine, "127.0.0.1", 0)
    metrics = Metrics(client.engine)
    try:
        assert flight.node is client.node
        assert kafka.listener.broker is not None and kafka.listener.broker.node is client.node
        remote = odradek.connect(f"grpc://127.0.0.1:{flight.port}")
        info = remote.describe_group("billing")
        assert [member.member for member in info.members] == [consumer.member_id]
        remote.close()
        text = generate_latest(metrics.registry).decode()
        assert 'odradek_group_members{group="billing"} 1.0' in text
    finally:
        kafka.close()
        flight.drain(5.0)
    consumer.close()
    client.close()


def test_closing_the_engine_closes_the_groups_first(tmp_path: Path) -> None:
    node = Node.open(tmp_path / "data", fsync=False)
    node.engine.create_topic("t")
    consumer = node.groups.join("g", "t")
    node.engine.close()
    assert node.groups.closed and node.closed
    with pytest.raises(ClosedError):
        node.groups.poll("g", consumer, 1, 0)
    fresh = Node.open(tmp_path / "data", fsync=False)  # the directory is free again
    assert fresh.directory.list_groups() == ["g"]
    fresh.close()
