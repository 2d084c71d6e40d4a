"""Authorization on the Flight door: each call allowed or refused per binding.

Goal: with authorization enabled, a principal may append, read, create, delete, list and
subscribe only where a binding allows it (odradek.Unauthorized naming the operation and
the resource otherwise, and nothing done: a refused append leaves no record); a deny
wins; a wildcard read yields only the topics the principal may read; listings hold only
what it may describe; a view is read only by a principal that may read all it folds;
admins manage the bindings through the acl actions, others are refused; without
authorization nothing changes.
Method: an in-process FlightService over a fresh node with an authenticator and an
authorizer over the data directory's bindings; the public client with tokens.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.errors import Unauthorized
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.security import Authenticator, CredentialStore
from odradek.security.acl import binding
from odradek.security.authorizer import Authorizer, enable_authorization


class Door:
    def __init__(self, directory: Path, *, authorize: bool = True) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        self.store = CredentialStore.open(str(directory / "data"))
        self.store.add_user("root", "root-secret", admin=True)
        self.store.add_user("alice", "alice-secret")
        self.root, _ = self.store.create_token("root")
        self.alice, _ = self.store.create_token("alice")
        authenticator = Authenticator(self.store)
        self.authorizer: Authorizer | None = enable_authorization(authenticator) if authorize else None
        self.server = FlightService(self.node, "grpc://127.0.0.1:0", authenticator=authenticator)
        self.url = f"grpc://127.0.0.1:{self.server.port}"

    def allow(self, *fields: str) -> None:
        _call(self.url, self.root, "acl_add", {"bindings": [binding(*fields).to_json()]})


def _call(url: str, token: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """An admin action through the client's action call (what the command line does)."""
    with odradek.connect(url, token=token) as client:
        answer: dict[str, Any] = json.loads(client._action(action, body))  # type: ignore[attr-defined]
    return answer


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    served = Door(tmp_path)
    yield served
    served.server.drain(5.0)
    served.node.close()


def test_nothing_is_allowed_until_a_binding_allows_it(door: Door, caplog: pytest.LogCaptureFixture) -> None:
    with odradek.connect(door.url, token=door.root) as root:
        root.create_topic("orders")
        root.append("orders", [{"value": b"one"}])
    with odradek.connect(door.url, token=door.alice) as alice:
        with caplog.at_level(logging.INFO, "odradek.security"), pytest.raises(Unauthorized) as refused:
            alice.append("orders", [{"value": b"two"}])
        assert "User:alice is not authorized to write topic 'orders'" in refused.value.message
        assert any("may not write topic orders" in record.getMessage() for record in caplog.records)
        assert door.alice not in caplog.text
        with pytest.raises(Unauthorized, match="read topic 'orders'"):
            list(alice.read("orders", wait=0))
        with pytest.raises(Unauthorized, match="create topic 'payments'"):
            alice.create_topic("payments")
        with pytest.raises(Unauthorized, match="delete topic 'orders'"):
            alice.delete_topic("orders")
        assert alice.list_topics() == []
    assert door.node.engine.describe_topic("orders").records == 1  # the refused append left nothing
    assert door.node.engine.list_topics() == ["orders"]


def test_bindings_allow_and_deny_wins(door: Door) -> None:
    with odradek.connect(door.url, token=door.root) as root:
        root.create_topic("orders.eu")
        root.create_topic("orders.us")
    door.allow("User:alice", "topic", "prefixed", "orders.", "all", "allow")
    door.allow("User:alice", "topic", "literal", "orders.us", "write", "deny")
    with odradek.connect(door.url, token=door.alice) as alice:
        alice.append("orders.eu", [{"key": b"k", "value": b"v"}])
        assert alice.key_version("orders.eu", b"k") == 1
        with pytest.raises(Unauthorized, match=r"write topic 'orders\.us'"):
            alice.append("orders.us", [{"value": b"v"}])
        assert sorted(alice.list_topics()) == ["orders.eu", "orders.us"]  # describe: not denied
        alice.create_topic("orders.asia")
        alice.delete_topic("orders.asia")


def test_a_wildcard_read_yields_only_readable_topics(door: Door) -> None:
    with odradek.connect(door.url, token=door.root) as root:
        for name in ("orders.eu", "orders.us", "orders.secret"):
            root.create_topic(name)
            root.append(name, [{"value": name.encode()}] * 3)
    door.allow("User:alice", "topic", "match", "orders.*", "read", "allow")
    door.allow("User:alice", "topic", "literal", "orders.secret", "read", "deny")
    with odradek.connect(door.url, token=door.alice) as alice:
        table = pa.Table.from_batches(list(alice.read("orders.>", start="earliest", wait=0)))
        assert sorted(set(table.column("topic").to_pylist())) == ["orders.eu", "orders.us"]
        assert table.num_rows == 6
        # listed: the allowed read implies describe, and a denied read denies no describe
        assert alice.list_topics("orders.>") == ["orders.eu", "orders.secret", "orders.us"]
        with pytest.raises(Unauthorized, match="group 'billing'"):
            alice.subscribe("orders.>", group="billing")


def test_a_consumer_group_needs_the_group_and_its_topics(door: Door) -> None:
    with odradek.connect(door.url, token=door.root) as root:
        root.create_topic("orders.eu")
        root.append("orders.eu", [{"key": b"k", "value": b"v"}])
    door.allow("User:alice", "group", "literal", "billing", "read", "allow")
    with odradek.connect(door.url, token=door.alice) as alice:
        with pytest.raises(Unauthorized, match=r"read every topic of 'orders\.>'"):
            alice.subscribe("orders.>", group="billing", start="earliest").poll(timeout=0.1)
        door.allow("User:alice", "topic", "match", "orders.>", "read", "allow")
        consumer = alice.subscribe("orders.>", group="billing", start="earliest")
        deliveries = []
        for _ in range(50):  # at most 50 polls of up to a second each
            deliveries += consumer.poll(timeout=1.0)
            if deliveries:
                break
        consumer.ack(deliveries)
        consumer.close()
        assert [d.value for d in deliveries] == [b"v"]


def test_only_admins_manage_bindings(door: Door) -> None:
    with pytest.raises(Unauthorized, match="admin"):
        _call(door.url, door.alice, "acl_list", {})
    door.allow("User:alice", "topic", "literal", "t", "read", "allow")
    listed = _call(door.url, door.root, "acl_list", {"principal": "alice"})
    assert [entry["pattern"] for entry in listed["bindings"]] == ["t"]
    assert len(_call(door.url, door.root, "acl_remove", {"pattern": "t"})["removed"]) == 1
    assert _call(door.url, door.root, "acl_list", {})["bindings"] == []


def test_without_authorization_nothing_changes(tmp_path: Path) -> None:
    door = Door(tmp_path, authorize=False)
    try:
        with odradek.connect(door.url, token=door.alice) as alice:
            alice.create_topic("orders")
            alice.append("orders", [{"value": b"v"}])
            assert alice.list_topics() == ["orders"]
    finally:
        door.server.drain(5.0)
        door.node.close()


def test_reading_a_view_needs_every_topic_it_folds(door: Door) -> None:
    with odradek.connect(door.url, token=door.root) as root:
        root.create_topic("orders.eu")
        root.create_view("totals", "orders.>", "odradek.views.reducers:latest")
    with odradek.connect(door.url, token=door.alice) as alice:
        with pytest.raises(Unauthorized, match="view 'totals'"):
            alice.view_get("totals", b"k")
        with pytest.raises(Unauthorized, match="admin principal"):
            alice.create_view("mine", "orders.>", "odradek.views.reducers:latest")
        door.allow("User:alice", "topic", "prefixed", "orders.", "read", "allow")
        assert alice.view_get("totals", b"k") is None
