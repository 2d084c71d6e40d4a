"""The HTTP API behind the listener's authentication.

Goal: with authentication on, every API path (and /openapi.json) needs HTTP Basic or
Bearer credentials; a request without them, or with a wrong password, is answered 401
with a WWW-Authenticate challenge in the API's own error shape, and nothing is done;
with credentials it works; event streams are counted per principal. Method: the real
listener in-process inside serving_authentication over a credential store with one
user and one token; urllib and http.client as clients.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_api_client import Api, EventReader

from odradek.node import Node
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.registry import start_registry_listener
from odradek.security import Authenticator, CredentialStore


class Secured(Api):
    token: str


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    store.add_user("alice", "alice-secret")
    token, _ = store.create_token("alice")
    with serving_authentication(Authenticator(store)):
        listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    served = Secured(node, listener)
    served.token = token
    yield served
    listener.close()
    node.close()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/openapi.json", None),
        ("GET", "/v1/topics", None),
        ("POST", "/v1/topics", {"name": "t"}),
        ("GET", "/v1/topics/t/events", None),
    ],
)
def test_requests_without_good_credentials_are_refused(
    secured: Secured, method: str, path: str, body: object
) -> None:
    for headers in ({}, _basic("alice", "guess-1234"), {"Authorization": "Bearer nonsense"}):
        status, answered, error = secured.call(method, path, body, headers=headers)
        assert status == 401, (path, headers)
        assert "Basic" in answered["WWW-Authenticate"] and "Bearer" in answered["WWW-Authenticate"]
        assert error["code"] == "unauthenticated" and set(error) == {"code", "message", "details"}
        assert "guess-1234" not in error["message"]  # never repeats a secret
    assert secured.node.engine.list_topics() == []


def test_credentials_are_accepted(secured: Secured) -> None:
    status, _, _ = secured.call("POST", "/v1/topics", {"name": "t"}, headers=_basic("alice", "alice-secret"))
    assert status == 201
    bearer = {"Authorization": f"Bearer {secured.token}"}
    status, _, result = secured.call(
        "POST", "/v1/topics/t/records", {"records": [{"value": "v"}]}, headers=bearer
    )
    assert status == 200 and result["count"] == 1
    tail = EventReader(secured.listener.port, "/v1/topics/t/events?start=earliest&limit=1", bearer)
    assert tail.status == 200 and tail.records(1)[0]["data"]["value"] == "v"
    tail.close()
