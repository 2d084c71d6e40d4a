"""A view's reducer on a schema'd topic gets the typed value; views defined before keep JSON text.

Goal: a view created now gives its reducer and key function a schema'd topic's typed
value (a dict, as ``read_key`` returns it and a topic's reducer gets it); one created
with ``value_format="json"`` gets its JSON text; a view whose stored definition has no
``value_format`` (written before views had the choice, when every view got JSON text)
still gets JSON text after the upgrade, so its reducer goes on working; ``exist_ok``
without a ``value_format`` accepts such a view, with a different one refuses it; a bad
``value_format`` is refused with nothing written; ``odradek.views.reducers:latest``
stores a typed value as JSON text. Method: ``odradek.open`` on a temporary directory,
the reducers of view_reducers.py; a pre-upgrade definition is made by saving the view's
definition document without the field, as the previous version wrote it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek.errors import InvalidRequest
from odradek.storage.disk import LOCAL
from odradek.storage.documents import Document

SCHEMA = {
    "type": "object",
    "properties": {"customer": {"type": "string"}, "amount": {"type": "integer"}},
    "required": ["customer", "amount"],
}


def order(key: str, customer: str, amount: int) -> dict[str, Any]:
    return {"key": key.encode(), "value": {"customer": customer, "amount": amount}}


def test_a_new_view_gets_typed_values(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("orders", schema=SCHEMA)
        described = client.create_view(
            "totals", "orders", "view_reducers:typed_total", key="view_reducers:typed_customer"
        )
        assert described["value_format"] == "typed"
        client.create_view("kinds", "orders", "view_reducers:value_kind")
        client.append(
            "orders",
            [order("o1", "c1", 5), order("o2", "c2", 7), order("o3", "c1", 11)],
            wait_for=["view:totals", "view:kinds"],
        )
        assert client.view_get("totals", b"c1") == b"16"
        assert client.view_get("totals", b"c2") == b"7"
        assert client.view_get("kinds", b"o1") == b'dict {"amount": 5, "customer": "c1"}'
        assert client.describe_view("totals")["status"] == "running"


def test_value_format_json_gives_json_text(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("orders", schema=SCHEMA)
        client.create_view("sums", "orders", "view_reducers:total", value_format="json")
        client.create_view("kinds", "orders", "view_reducers:value_kind", value_format="json")
        client.append(
            "orders", [order("o1", "c1", 5), order("o1", "c1", 2)], wait_for=["view:sums", "view:kinds"]
        )
        assert client.view_get("sums", b"o1") == b"7"
        kind, _, text = client.view_get("kinds", b"o1").partition(b" ")
        assert kind == b"bytes"
        assert json.loads(text) == {"customer": "c1", "amount": 2}
        assert client.describe_view("sums")["value_format"] == "json"


def test_a_view_defined_before_the_choice_keeps_json_text(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as first:
        first.create_topic("orders", schema=SCHEMA)
        first.create_view("sums", "orders", "view_reducers:total", value_format="json")
        first.append("orders", [order("o1", "c1", 5)], wait_for=["view:sums"])
    definition = Document(LOCAL, os.path.join(tmp_path / "data", "views", "sums", "definition"))
    stored = definition.load()
    del stored["value_format"]  # as the previous version wrote it
    definition.save(stored)
    with odradek.open(tmp_path / "data") as second:
        info = second.describe_view("sums")
        assert info["value_format"] == "json"
        second.append("orders", [order("o1", "c1", 2)], wait_for=["view:sums"])
        assert second.view_get("sums", b"o1") == b"7"  # its JSON reducer still works
        assert second.describe_view("sums")["status"] == "running"
        # A program that created it with exist_ok before the upgrade still does.
        again = second.create_view("sums", "orders", "view_reducers:total", exist_ok=True)
        assert again["value_format"] == "json"
        with pytest.raises(InvalidRequest, match="value_format 'json'"):
            second.create_view("sums", "orders", "view_reducers:total", exist_ok=True, value_format="typed")


def test_a_bad_value_format_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("orders", schema=SCHEMA)
        with pytest.raises(InvalidRequest, match="value_format"):
            client.create_view("v", "orders", "view_reducers:total", value_format="wire")
        assert client.list_views() == []
        assert os.listdir(tmp_path / "data" / "views") == []


def test_latest_stores_a_typed_value_as_json_text(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("orders", schema=SCHEMA)
        client.create_topic("raw")
        client.create_view("last", "orders", "odradek.views.reducers:latest")
        client.create_view("last_raw", "raw", "odradek.views.reducers:latest")
        client.append("orders", [order("o1", "c1", 5), order("o1", "c\u00e9", 6)], wait_for=["view:last"])
        client.append("raw", [{"key": b"r", "value": b"\x00\xff"}], wait_for=["view:last_raw"])
        assert json.loads(client.view_get("last", b"o1")) == {"customer": "c\u00e9", "amount": 6}
        assert client.view_get("last_raw", b"r") == b"\x00\xff"  # bytes stay bytes
