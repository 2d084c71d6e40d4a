"""The ``reset_offsets`` action: a group's committed offsets moved through the Flight door.

Goal: the remote client's ``reset_offsets`` carries every kind of target (a name, an
offset, a datetime) and the dry-run flag over the action of docs/flight-protocol.md
and returns the plan; an executed reset is what the node's group then holds; the
refusals (members, bad target, bad body) come back as the same clear errors as
embedded. Method: an in-process Flight server over a node; ``odradek.connect`` and a
plain ``pyarrow.flight`` client sending the documented JSON.
"""

from __future__ import annotations

import datetime
import json

import pyarrow.flight as flight
import pytest

import odradek
from odradek.engine import Engine
from odradek.groups import OffsetReset
from odradek.node import Node


def _group_read_everything(node: Node, engine: Engine) -> None:
    engine.create_topic("orders.eu")
    engine.append("orders.eu", [{"key": b"k%d" % i, "value": b"v"} for i in range(4)])
    member = node.groups.join("billing", "orders.>", start="earliest")
    deliveries = node.groups.poll("billing", member, 10, 0)
    assert node.groups.ack("billing", member, deliveries).ok
    node.groups.leave("billing", member)


def test_remote_reset_offsets(url: str, engine: Engine, node: Node) -> None:
    _group_read_everything(node, engine)
    with odradek.connect(url) as client:
        assert client.reset_offsets("billing", "earliest", dry_run=True) == [
            OffsetReset("orders.eu", None, 4, 0)
        ]
        assert node.groups.committed("billing", "orders.eu")[1] == 4
        assert client.reset_offsets("billing", 2, topics="orders.*") == [OffsetReset("orders.eu", None, 4, 2)]
        assert node.groups.committed("billing", "orders.eu")[1] == 2
        moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        assert client.reset_offsets("billing", moment)[0].new == 4
        with pytest.raises(odradek.InvalidRequest, match="a reset goes to"):
            client.reset_offsets("billing", "soon")
        member = node.groups.join("billing", "orders.>")
        with pytest.raises(odradek.InvalidRequest, match="1 active member"):
            client.reset_offsets("billing", "earliest")
        node.groups.leave("billing", member)
    assert node.groups.committed("billing", "orders.eu")[1] == 4


def test_the_documented_body(url: str, engine: Engine, node: Node) -> None:
    _group_read_everything(node, engine)
    plain = flight.connect(url)
    body = {"group": "billing", "topics": "orders.>", "to": "latest", "dry_run": True}
    (result,) = plain.do_action(flight.Action("reset_offsets", json.dumps(body).encode()))
    assert json.loads(result.body.to_pybytes()) == {
        "plan": [{"topic": "orders.eu", "partition": None, "old": 4, "new": 4}]
    }
    with pytest.raises(flight.FlightError, match="dry_run is true or false"):
        list(plain.do_action(flight.Action("reset_offsets", json.dumps({**body, "dry_run": "yes"}).encode())))
    with pytest.raises(flight.FlightError, match="topic pattern"):
        list(plain.do_action(flight.Action("reset_offsets", json.dumps({**body, "topics": 7}).encode())))
