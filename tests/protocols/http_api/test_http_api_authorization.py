"""Access control lists on the HTTP API (decision 0020), as on the other doors.

Goal: with authorization on, a principal does through the HTTP API only what its
bindings allow: a produce, read, tail, key read, topic change or group call without a
binding is answered 403 (``unauthorized``, the operation and the resource named) and
leaves nothing behind; listings show only what it may describe; a member's join needs
``read`` on every topic its pattern can match; an admin may do everything. Method: the
real listener in-process inside serving_authentication with enable_authorization over
a credential store with an admin and a user; bindings added while it runs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_api_client import Api

from odradek.node import Node
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.registry import start_registry_listener
from odradek.security import Authenticator, CredentialStore
from odradek.security.acl import binding
from odradek.security.acl_store import AclStore
from odradek.security.authorizer import enable_authorization


class Guarded(Api):
    acls: AclStore
    store: CredentialStore

    def as_user(self, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        credentials = base64.b64encode(f"{user}:{user}-secret".encode()).decode()
        status, _, document = self.call(method, path, body, headers={"Authorization": f"Basic {credentials}"})
        return status, document


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Guarded]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    store.add_user("root", "root-secret", admin=True)
    store.add_user("alice", "alice-secret")
    authenticator = Authenticator(store)
    acls = enable_authorization(authenticator).store
    with serving_authentication(authenticator):
        listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    served = Guarded(node, listener)
    served.acls = acls
    served.store = store
    yield served
    listener.close()
    node.close()


def test_routes_need_their_bindings(guarded: Guarded) -> None:
    assert guarded.as_user("root", "POST", "/v1/topics", {"name": "orders.eu"})[0] == 201
    assert guarded.as_user("root", "POST", "/v1/topics", {"name": "secret"})[0] == 201
    produce = {"records": [{"key": "k", "value": "v"}]}
    for method, path, body in [
        ("POST", "/v1/topics/orders.eu/records", produce),
        ("GET", "/v1/topics/orders.eu/records", None),
        ("GET", "/v1/topics/orders.eu/events", None),
        ("GET", "/v1/topics/orders.eu/keys/k", None),
        ("GET", "/v1/topics/orders.eu", None),
        ("PATCH", "/v1/topics/orders.eu", {"retention": "1d"}),
        ("DELETE", "/v1/topics/orders.eu", None),
        ("POST", "/v1/topics", {"name": "orders.us"}),
        ("POST", "/v1/groups/billing/members", {"pattern": "orders.>"}),
    ]:
        status, error = guarded.as_user("alice", method, path, body)
        assert (status, error["code"]) == (403, "unauthorized"), (method, path, error)
        assert "User:alice is not authorized" in error["message"]
    assert guarded.node.engine.describe_topic("orders.eu").next_offset == 0  # nothing written
    assert guarded.node.engine.list_topics() == ["orders.eu", "secret"]
    assert guarded.as_user("alice", "GET", "/v1/topics") == (200, {"topics": [], "unavailable": {}})

    guarded.acls.add([binding("User:alice", "topic", "prefixed", "orders.", "all", "allow")])
    assert guarded.as_user("alice", "POST", "/v1/topics/orders.eu/records", produce)[0] == 200
    assert guarded.as_user("alice", "GET", "/v1/topics/orders.eu/records")[1]["records"][0]["value"] == "v"
    assert guarded.as_user("alice", "GET", "/v1/topics")[1]["topics"] == ["orders.eu"]
    # A group needs its own binding, and its pattern every topic it can match.
    status, error = guarded.as_user("alice", "POST", "/v1/groups/billing/members", {"pattern": "orders.>"})
    assert status == 403 and "group 'billing'" in error["message"]
    guarded.acls.add([binding("User:alice", "group", "literal", "billing", "all", "allow")])
    status, error = guarded.as_user("alice", "POST", "/v1/groups/billing/members", {"pattern": ">"})
    assert status == 403 and "every topic" in error["message"]
    assert guarded.as_user("alice", "POST", "/v1/groups/billing/members", {"pattern": "orders.>"})[0] == 201
    assert guarded.as_user("alice", "GET", "/v1/groups")[1]["groups"][0]["group"] == "billing"
    assert guarded.as_user("root", "GET", "/v1/topics/secret")[0] == 200


def test_snapshots_need_write_to_store_and_read_to_read(guarded: Guarded) -> None:
    """As the Flight door's ``snapshot`` action and ``read_key`` ticket: storing a key's
    snapshot is a ``write`` on its topic, reading the key from it a ``read``."""
    assert guarded.as_user("root", "POST", "/v1/topics", {"name": "ledger"})[0] == 201
    produce = {"records": [{"key": "k", "value": "e1"}, {"key": "k", "value": "e2"}]}
    assert guarded.as_user("root", "POST", "/v1/topics/ledger/records", produce)[0] == 200
    snapshot = ("PUT", "/v1/topics/ledger/keys/k/snapshot", {"version": 1, "state": "s1"})
    from_snapshot = ("GET", "/v1/topics/ledger/keys/k/records?from_snapshot=true", None)
    for method, path, body in (snapshot, from_snapshot):
        status, error = guarded.as_user("alice", method, path, body)
        assert (status, error["code"]) == (403, "unauthorized"), (method, error)
        assert "User:alice is not authorized" in error["message"]
    guarded.acls.add([binding("User:alice", "topic", "literal", "ledger", "read", "allow")])
    status, error = guarded.as_user("alice", *snapshot)
    assert (status, error["code"]) == (403, "unauthorized") and "to write topic 'ledger'" in error["message"]
    assert guarded.node.engine.read_key("ledger", b"k", from_snapshot=True).column(
        "snapshot"
    ).to_pylist() == [
        False,
        False,
    ]  # the refused snapshot stored nothing
    status, page = guarded.as_user("alice", *from_snapshot)
    assert status == 200 and [row["snapshot"] for row in page["records"]] == [False, False]
    guarded.acls.add([binding("User:alice", "topic", "literal", "ledger", "write", "allow")])
    assert guarded.as_user("alice", *snapshot) == (200, {"topic": "ledger", "key": "k", "version": 1})
    status, page = guarded.as_user("alice", *from_snapshot)
    assert [(row["snapshot"], row["version"], row["value"]) for row in page["records"]] == [
        (True, 1, "s1"),
        (False, 2, "e2"),
    ]


def test_a_tenants_snapshots_are_in_its_namespace(guarded: Guarded) -> None:
    """A tenant's principal names its topics as it says them (decision 0028): the
    snapshot goes to its own topic, the answers name the topic its way, and another
    principal cannot reach it by the engine's name."""
    guarded.store.create_tenant("acme")
    guarded.store.add_user("carol", "carol-secret", tenant="acme")
    guarded.acls.add([binding("User:carol", "topic", "literal", "ledger", "all", "allow")])
    guarded.acls.add([binding("User:alice", "topic", "prefixed", "_t.acme.", "all", "allow")])
    guarded.acls.add([binding("User:alice", "topic", "literal", "ledger", "all", "allow")])
    assert guarded.as_user("carol", "POST", "/v1/topics", {"name": "ledger"})[0] == 201
    produce = {"records": [{"key": "k", "value": "e1"}, {"key": "k", "value": "e2"}]}
    assert guarded.as_user("carol", "POST", "/v1/topics/ledger/records", produce)[0] == 200
    body = {"version": 2, "state": "acme-state"}
    assert guarded.as_user("carol", "PUT", "/v1/topics/ledger/keys/k/snapshot", body) == (
        200,
        {"topic": "ledger", "key": "k", "version": 2},
    )
    status, page = guarded.as_user("carol", "GET", "/v1/topics/ledger/keys/k/records?from_snapshot=true")
    assert status == 200 and page["topic"] == "ledger"
    assert [(row["snapshot"], row["value"]) for row in page["records"]] == [(True, "acme-state")]
    engine = guarded.node.engine
    assert engine.read_key("_t.acme.ledger", b"k", from_snapshot=True).column("value").to_pylist() == [
        b"acme-state"
    ]
    # An untenanted principal, even with a binding naming the tenant's space, does not
    # reach the tenant's topic; its own "ledger" is another topic (none here).
    status, refused = guarded.as_user("alice", "PUT", "/v1/topics/_t.acme.ledger/keys/k/snapshot", body)
    assert (status, refused["code"]) == (403, "unauthorized"), refused
    status, missing = guarded.as_user("alice", "PUT", "/v1/topics/ledger/keys/k/snapshot", body)
    assert (status, missing["code"]) == (404, "topic_not_found")
