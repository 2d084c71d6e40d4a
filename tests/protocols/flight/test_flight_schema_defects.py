"""Schema actions over Flight: the defects found, reproduced, then refused or answered.

Goal: ``set_compatibility`` without a mode (or with anything that is not a mode name)
is refused instead of switching compatibility checks off — ``str(None).lower()`` is
"none", a valid mode; and ``schema_versions`` answers a history larger than one Flight
message (1 MiB) in pages instead of failing with RequestTooLarge.

Method: a real Flight server in-process and the remote client, plus a raw action.
"""

from __future__ import annotations

import json

import pyarrow.flight as flight
import pytest

import odradek
from odradek.engine import Engine


def _avro(fields: int, doc: str = "") -> dict[str, object]:
    return {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "long"}]
        + [{"name": f"f{i}", "type": ["null", "string"], "default": None, "doc": doc} for i in range(fields)],
    }


def test_set_compatibility_without_a_mode_is_refused(url: str, engine: Engine) -> None:
    with odradek.connect(url) as client:
        client.create_topic("orders", schema=_avro(0), compatibility="full")
        with pytest.raises(odradek.InvalidRequest, match="compatibility"):
            client.set_compatibility("orders", None)  # type: ignore[arg-type]
        plain = flight.connect(url)
        with pytest.raises(flight.FlightError, match="compatibility"):
            list(
                plain.do_action(flight.Action("set_compatibility", json.dumps({"topic": "orders"}).encode()))
            )
        assert client.get_schema("orders").compatibility == "full"  # type: ignore[union-attr]
    with pytest.raises(odradek.InvalidRequest, match="compatibility"):
        engine.set_compatibility("orders", None)  # type: ignore[arg-type]


def test_schema_versions_of_a_history_larger_than_a_message(url: str, engine: Engine) -> None:
    doc = "d" * 4000
    engine.create_topic("orders", schema=_avro(0, doc))
    for fields in range(1, 25):
        engine.set_schema("orders", _avro(fields, doc))
    expected = engine.schema_versions("orders")
    assert len(json.dumps([v.to_json() for v in expected])) > 1024 * 1024  # more than one message
    with odradek.connect(url) as client:
        versions = client.schema_versions("orders")
    assert [v.version for v in versions] == list(range(1, 26))
    assert [v.text for v in versions] == [v.text for v in expected]
    plain = flight.connect(url)
    body = json.dumps({"topic": "orders"}).encode()
    (first,) = list(plain.do_action(flight.Action("schema_versions", body)))
    page = json.loads(first.body.to_pybytes())
    assert 1 <= len(page["versions"]) < 25 and page["next_version"] == len(page["versions"]) + 1
