"""The JSON API's view route on the registry's HTTP listener: GET /v1/views/{view}/keys/{key}.

Goal: the route answers a key's state in a materialized view as JSON (text as
``state``, other bytes as ``state_b64``), takes binary keys as hex or base64, and
answers 404 for an unknown view or a key without state and 422 for a malformed key,
in the registry's error shape. Method: the registry's routes over a real engine (its
node keeps the view), requests built in-process; the same route over a real socket is
covered by the command-line test of views.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.engine import Engine
from odradek.node import Node
from odradek.protocols.registry import Registry, Request, SubjectStore


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Registry, Node]]:
    engine = Engine(tmp_path / "data")
    node = Node.of(engine)
    try:
        yield Registry(engine, SubjectStore(engine.path, engine.disk)), node
    finally:
        node.close()


def test_a_key_of_a_view_is_answered_as_json(registry: tuple[Registry, Node]) -> None:
    routes, node = registry
    node.engine.create_topic("t")
    node.views.create("last", "t", "odradek.views.reducers:latest")
    records = [{"key": b"k 1", "value": b"hello"}, {"key": b"\xff\x00", "value": b"\xfe\xfd"}]
    node.append("t", records, wait_for=["view:last"])
    answer = routes.handle(Request("GET", "/v1/views/last/keys/k%201"))
    assert answer.status == 200
    assert answer.content_type == "application/json"
    assert answer.document() == {"view": "last", "key": "k 1", "state": "hello"}
    binary = routes.handle(Request("GET", "/v1/views/last/keys/ff00", {"key_encoding": "hex"}))
    assert binary.document()["state_b64"] == base64.b64encode(b"\xfe\xfd").decode()
    encoded = base64.urlsafe_b64encode(b"\xff\x00").decode()
    again = routes.handle(Request("GET", f"/v1/views/last/keys/{encoded}", {"key_encoding": "base64"}))
    assert again.document()["state_b64"] == base64.b64encode(b"\xfe\xfd").decode()


def test_unknown_views_keys_and_bad_encodings_are_refused(registry: tuple[Registry, Node]) -> None:
    routes, node = registry
    node.engine.create_topic("t")
    node.views.create("last", "t", "odradek.views.reducers:latest")
    missing_view = routes.handle(Request("GET", "/v1/views/nope/keys/k"))
    assert missing_view.status == 404
    assert "nope" in missing_view.document()["message"]
    missing_key = routes.handle(Request("GET", "/v1/views/last/keys/k"))
    assert missing_key.status == 404
    assert missing_key.document()["error_code"] == 40404
    bad_hex = routes.handle(Request("GET", "/v1/views/last/keys/zz", {"key_encoding": "hex"}))
    assert bad_hex.status == 422
    bad_encoding = routes.handle(Request("GET", "/v1/views/last/keys/k", {"key_encoding": "rot13"}))
    assert bad_encoding.status == 422
    assert routes.handle(Request("POST", "/v1/views/last/keys/k")).status == 405
