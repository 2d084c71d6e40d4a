"""A plain Arrow Flight client, not ours, can discover, read, write and administer.

Goal: the wire documented in docs/flight-protocol.md is usable from any Flight client
(here ``pyarrow.flight`` used directly, as a program in another language would).
Method: an in-process server; topics are written through the Python client, then
listed and read with ListFlights / GetFlightInfo / DoGet, appended with a raw DoPut,
administered with DoAction, and errors are read from ``extra_info`` JSON.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek import limits
from odradek.protocols.flight import messages
from odradek.protocols.flight.server import WILDCARD_SCHEMA
from odradek.records import STORED_SCHEMA


def _fill(url: str) -> None:
    with odradek.connect(url) as client:
        client.create_topic("orders.eu.created")
        client.create_topic("orders.us.created")
        client.append("orders.eu.created", [{"key": b"o-%d" % i, "value": b"v%d" % i} for i in range(5)])
        client.append("orders.us.created", [{"value": b"us"}])


def test_list_flights_and_read_a_topic(url: str) -> None:
    _fill(url)
    plain = flight.connect(url)
    infos = {info.descriptor.path[0].decode(): info for info in plain.list_flights()}
    assert sorted(infos) == ["orders.eu.created", "orders.us.created"]
    info = infos["orders.eu.created"]
    assert info.total_records == 5
    assert info.schema == STORED_SCHEMA
    table = plain.do_get(info.endpoints[0].ticket).read_all()
    assert table.column("value").to_pylist() == [b"v%d" % i for i in range(5)]
    assert table.column("offset").to_pylist() == list(range(5))
    assert table.column("version").to_pylist() == [1] * 5


def test_flight_info_by_path_and_by_command(url: str) -> None:
    _fill(url)
    plain = flight.connect(url)
    by_path = plain.get_flight_info(flight.FlightDescriptor.for_path("orders", "us", "created"))
    assert by_path.total_records == 1
    command = json.dumps({"kind": "read", "pattern": "orders.>", "wait": 0}).encode()
    wildcard = plain.get_flight_info(flight.FlightDescriptor.for_command(command))
    assert wildcard.schema == WILDCARD_SCHEMA
    table = plain.do_get(wildcard.endpoints[0].ticket).read_all()
    assert sorted(table.column("topic").to_pylist()) == ["orders.eu.created"] * 5 + ["orders.us.created"]
    schema = plain.get_schema(flight.FlightDescriptor.for_path("orders.eu.created")).schema
    assert schema == STORED_SCHEMA
    assert [info.descriptor.path for info in plain.list_flights(b"orders.us.*")] == [[b"orders.us.created"]]


def test_raw_do_put_with_expectations_in_metadata(url: str) -> None:
    _fill(url)
    plain = flight.connect(url)
    batch = pa.RecordBatch.from_pydict({"key": [b"o-1", b"new"], "value": [b"a", b"b"]})
    descriptor = flight.FlightDescriptor.for_path("orders.eu.created")
    writer, reader = plain.do_put(descriptor, batch.schema)
    expect = json.dumps({"expect": {b"o-1".hex(): 1, b"new".hex(): 0}, "expect_offset": 5}).encode()
    writer.write_with_metadata(batch, pa.py_buffer(expect))
    first = json.loads(reader.read().to_pybytes())  # few keys: their versions are inline
    writer.write_batch(batch)  # a second batch in the same stream is a second append
    second = json.loads(reader.read().to_pybytes().partition(b"\n")[0])
    writer.done_writing()
    writer.close()
    assert (first["base_offset"], first["count"], second["base_offset"]) == (5, 2, 7)
    assert first["versions"] == {b"o-1".hex(): 2, b"new".hex(): 1}


def test_raw_do_put_of_many_keys_gets_versions_as_arrow(url: str) -> None:
    _fill(url)
    plain = flight.connect(url)
    keys = [b"key-%03d" % i for i in range(limits.flight_result_inline_keys_max + 1)]
    batch = pa.RecordBatch.from_pydict({"key": keys, "value": [b"v"] * len(keys)})
    writer, reader = plain.do_put(flight.FlightDescriptor.for_path("orders.eu.created"), batch.schema)
    writer.write_batch(batch)
    header, _, arrow = reader.read().to_pybytes().partition(b"\n")
    writer.done_writing()
    writer.close()
    assert json.loads(header)["versions"] == "arrow"
    versions = pa.ipc.open_stream(pa.py_buffer(arrow)).read_all()
    assert versions.to_pydict() == {"key": keys, "version": [1] * len(keys)}


def test_do_put_command_descriptor_carries_options(url: str) -> None:
    _fill(url)
    plain = flight.connect(url)
    command = messages.encode_append_options(expect_offset=0, topic="orders.us.created")
    batch = pa.RecordBatch.from_pydict({"value": [b"x"]})
    writer, reader = plain.do_put(flight.FlightDescriptor.for_command(command), batch.schema)
    writer.write_batch(batch)
    writer.done_writing()
    with pytest.raises(flight.FlightServerError) as caught:
        reader.read()
        writer.close()
    error = json.loads(caught.value.extra_info)
    assert error["code"] == "conflict"
    assert error["details"] == {"key_hex": None, "expected": 0, "actual": 1}


def test_actions(url: str) -> None:
    plain = flight.connect(url)
    assert {action.type for action in plain.list_actions()} == set(messages.ACTIONS)

    def act(name: str, body: dict[str, object]) -> dict[str, object]:
        results = list(plain.do_action(flight.Action(name, json.dumps(body).encode())))
        return dict(json.loads(results[0].body.to_pybytes()))

    assert act("ping", {})["ok"] is True
    assert act("create_topic", {"name": "a.b", "retention": "1d"})["name"] == "a.b"
    assert act("list_topics", {"pattern": "a.*"}) == {"topics": ["a.b"], "unavailable": {}}
    assert act("describe_topic", {"name": "a.b"})["next_offset"] == 0
    assert act("key_version", {"topic": "a.b", "key": b"k".hex()}) == {"version": 0}
    assert act("delete_topic", {"name": "a.b"}) == {}
    with pytest.raises(flight.FlightServerError) as caught:
        act("describe_topic", {"name": "a.b"})
    assert json.loads(caught.value.extra_info)["code"] == "topic_not_found"
    with pytest.raises(flight.FlightServerError) as caught:
        act("drop_database", {})
    assert json.loads(caught.value.extra_info)["code"] == "invalid_request"


def test_the_action_table_of_the_protocol_page_lists_every_action() -> None:
    """docs/flight-protocol.md names every DoAction the server answers, and no other."""
    import pathlib
    import re

    page = pathlib.Path(__file__).parents[3] / "docs" / "flight-protocol.md"
    section = page.read_text().split("## DoAction", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert documented == set(messages.ACTIONS)
