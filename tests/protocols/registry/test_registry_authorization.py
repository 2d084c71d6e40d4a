"""Authorization on the Schema Registry door and its view endpoint.

Goal: with authorization enabled, a principal registers, reads and deletes subjects only
where a binding allows it (403 with error code 40301 otherwise, and a refused
registration leaves no version behind); GET /subjects lists only the subjects it may
describe; a view's keys are readable only by a principal that may read every topic the
view folds; an admin may do everything.
Method: the real registry door in-process over a fresh node, inside
serving_authentication with an authenticator that has an authorizer; urllib as the client.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odradek.node import Node
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.registry import start_registry_listener
from odradek.security import Authenticator, CredentialStore
from odradek.security.acl import binding
from odradek.security.authorizer import enable_authorization

SCHEMA = json.dumps({"schema": json.dumps({"type": "record", "name": "R", "fields": []})}).encode()


class Door:
    def __init__(self, directory: Path) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        store = CredentialStore.open(str(directory / "data"))
        store.add_user("root", "root-secret", admin=True)
        store.add_user("alice", "alice-secret")
        authenticator = Authenticator(store)
        self.acls = enable_authorization(authenticator).store
        with serving_authentication(authenticator):
            self.registry = start_registry_listener(self.node.engine, self.node.engine.path, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.registry.port}"

    def call(self, user: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        credentials = base64.b64encode(f"{user}:{user}-secret".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/vnd.schemaregistry.v1+json",
        }
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    def close(self) -> None:
        self.registry.close()
        self.node.close()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    served = Door(tmp_path)
    yield served
    served.close()


def test_subjects_per_binding(door: Door) -> None:
    assert door.call("root", "POST", "/subjects/payments-key/versions", SCHEMA)[0] == 200
    status, answer = door.call("alice", "POST", "/subjects/orders-key/versions", SCHEMA)
    assert status == 403 and answer["error_code"] == 40301
    assert "User:alice is not authorized to write subject 'orders-key'" in answer["message"]
    assert door.call("root", "GET", "/subjects")[1] == ["payments-key"]  # the refusal left nothing
    door.acls.add([binding("User:alice", "subject", "prefixed", "orders-", "all", "allow")])
    assert door.call("alice", "POST", "/subjects/orders-key/versions", SCHEMA)[0] == 200
    assert door.call("alice", "GET", "/subjects/orders-key/versions")[1] == [1]
    assert door.call("alice", "GET", "/subjects")[1] == ["orders-key"]
    assert door.call("alice", "GET", "/subjects/payments-key/versions")[0] == 403
    assert door.call("alice", "DELETE", "/subjects/payments-key")[0] == 403
    assert door.call("alice", "PUT", "/config", json.dumps({"compatibility": "NONE"}).encode())[0] == 403
    door.acls.add([binding("User:alice", "subject", "literal", "orders-key", "delete", "deny")])
    assert door.call("alice", "DELETE", "/subjects/orders-key")[0] == 403
    assert door.call("alice", "GET", "/subjects/orders-key/versions")[1] == [1]


def test_a_view_needs_every_topic_it_folds(door: Door) -> None:
    door.node.engine.create_topic("orders.eu")
    door.node.views.create("totals", "orders.>", "odradek.views.reducers:latest")
    path = "/v1/views/totals/keys/k"
    status, answer = door.call("alice", "GET", path)
    assert status == 403 and "view 'totals'" in answer["message"]
    door.acls.add([binding("User:alice", "topic", "match", "orders.>", "read", "allow")])
    assert door.call("alice", "GET", path)[0] == 404  # allowed: the key simply has no state yet
