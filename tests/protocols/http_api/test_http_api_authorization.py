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
