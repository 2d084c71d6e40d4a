"""AsyncAPI documents generated from topics and their schemas.

Goal: `odradek.asyncapi.build_document` produces documents that are valid AsyncAPI
3.0.0 for every kind of topic (schemaless, Avro, JSON Schema, Arrow), alone or many
under a nested pattern, with the Flight and Kafka servers; that each topic's schema
reaches the payload in the right form; that every internal reference resolves; and that
the Arrow → JSON Schema conversion accepts exactly the values the Arrow type holds.
Method: a small in-memory catalogue stands in for a client; documents are validated
against the official AsyncAPI 3.0.0 JSON Schema (vendored in tests/data, resolved
offline through a `referencing` registry that refuses any network fetch).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
import referencing
import referencing.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing.jsonschema import DRAFT7

import odradek
from odradek import asyncapi
from odradek.errors import InvalidRequest, TopicNotFound
from odradek.names import compile_pattern
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY
from odradek.types import SchemaInfo

SPEC_PATH = Path(__file__).parent.parent / "data" / "asyncapi-3.0.0-schema.json"


def _refuse_fetch(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _spec_validator() -> jsonschema.Draft7Validator:
    spec = json.loads(SPEC_PATH.read_text())
    resource = referencing.Resource.from_contents(spec, default_specification=DRAFT7)
    registry = referencing.Registry(retrieve=_refuse_fetch).with_resource(spec["$id"], resource).crawl()
    return jsonschema.Draft7Validator(spec, registry=registry)


SPEC = _spec_validator()


def assert_valid_asyncapi(document: dict[str, Any]) -> None:
    errors = sorted(SPEC.iter_errors(document), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors)
    # The document must survive a trip through JSON unchanged (no tuples, bytes...).
    assert json.loads(asyncapi.document_text(document)) == document


def resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), reference
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


# -- a catalogue standing in for a client --------------------------------------------------


class FakeCatalog:
    def __init__(self, topics: dict[str, SchemaInfo | None]) -> None:
        self.topics = topics

    def list_topics(self, pattern: str | None = None) -> list[str]:
        matches = compile_pattern(pattern) if pattern is not None else (lambda name: True)
        return sorted(name for name in self.topics if matches(name))

    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        return self.topics[topic]


PAYMENT_AVRO = {
    "type": "record",
    "name": "Payment",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD"]}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
PAYMENT_TYPE = pa.struct(
    [
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency", pa.utf8(), nullable=False, metadata={ENUM_KEY: b'["EUR","USD"]'}),
        pa.field("note", pa.utf8(), nullable=True, metadata={DEFAULT_KEY: b"null"}),
    ]
)
ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"order": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
    "required": ["order", "total"],
}
ORDER_TYPE = pa.struct(
    [pa.field("order", pa.utf8(), nullable=False), pa.field("total", pa.float64(), nullable=False)]
)
SENSOR_ARROW = pa.schema(
    [
        pa.field("sensor", pa.utf8(), nullable=False),
        pa.field("reading", pa.int32(), nullable=False),
        pa.field("tags", pa.list_(pa.field("item", pa.utf8(), nullable=False)), nullable=True),
        pa.field(
            "position",
            pa.struct([pa.field("x", pa.float64(), nullable=False), pa.field("y", pa.float64())]),
            nullable=True,
        ),
        pa.field("labels", pa.map_(pa.utf8(), pa.int64()), nullable=True),
        pa.field("level", pa.utf8(), nullable=True, metadata={ENUM_KEY: b'["low","high"]'}),
    ]
)


def avro_info(topic: str, version: int = 1, compatibility: str = "backward") -> SchemaInfo:
    text = json.dumps(PAYMENT_AVRO, separators=(",", ":"), sort_keys=True)
    return SchemaInfo(topic, version, 7, "AVRO", text, compatibility, PAYMENT_TYPE)


def json_info(topic: str, schema: dict[str, Any] = ORDER_JSON_SCHEMA) -> SchemaInfo:
    text = json.dumps(schema, separators=(",", ":"), sort_keys=True)
    return SchemaInfo(topic, 3, 11, "JSON", text, "full", ORDER_TYPE)


def arrow_info(topic: str, schema: pa.Schema = SENSOR_ARROW) -> SchemaInfo:
    text = base64.b64encode(schema.serialize().to_pybytes()).decode()
    value_type = pa.struct(list(schema))
    return SchemaInfo(topic, 2, 12, "ARROW", text, "none", value_type)


# -- the validator itself -------------------------------------------------------------------


def test_the_validator_refuses_broken_documents() -> None:
    """Without this, a validator that accepts everything would pass every test below."""
    good = asyncapi.build_document(FakeCatalog({"payments": avro_info("payments")}), "payments")
    assert_valid_asyncapi(good)
    broken_cases = []
    no_info = copy.deepcopy(good)
    del no_info["info"]
    broken_cases.append(no_info)
    bad_action = copy.deepcopy(good)
    bad_action["operations"]["payments.send"]["action"] = "publish"
    broken_cases.append(bad_action)
    bad_avro = copy.deepcopy(good)
    bad_avro["components"]["schemas"]["payments"]["schema"] = {"type": "record"}
    broken_cases.append(bad_avro)
    bad_extension = copy.deepcopy(good)
    bad_extension["channels"]["payments"]["odradek-version"] = 1
    broken_cases.append(bad_extension)
    for broken in broken_cases:
        assert list(SPEC.iter_errors(broken)), broken


# -- one topic of each kind --------------------------------------------------------------


def test_schemaless_topic() -> None:
    document = asyncapi.build_document(FakeCatalog({"logs.app": None}), "logs.app")
    assert_valid_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    channel = document["channels"]["logs.app"]
    assert channel["address"] == "logs.app"
    assert not [name for name in channel if name.startswith("x-odradek-schema")]
    payload = document["components"]["schemas"]["logs.app"]
    assert payload["type"] == "string" and payload["contentEncoding"] == "binary"
    assert "opaque bytes" in payload["description"].lower()
    assert document["components"]["messages"]["logs.app"]["contentType"] == "application/octet-stream"


def test_avro_topic_carries_its_schema_version_id_and_mode() -> None:
    info = avro_info("payments", version=4, compatibility="full_transitive")
    document = asyncapi.build_document(FakeCatalog({"payments": info}), "payments")
    assert_valid_asyncapi(document)
    payload = document["components"]["schemas"]["payments"]
    assert payload == {"schemaFormat": "application/vnd.apache.avro;version=1.9.0", "schema": PAYMENT_AVRO}
    channel = document["channels"]["payments"]
    assert channel["x-odradek-schema-kind"] == "AVRO"
    assert channel["x-odradek-schema-version"] == 4
    assert channel["x-odradek-schema-id"] == 7
    assert channel["x-odradek-compatibility"] == "full_transitive"
    message = document["components"]["messages"]["payments"]
    assert resolve(document, message["payload"]["$ref"]) is payload
    assert "key" in message["x-odradek-key"]["description"]
    # The document holds a copy: editing it does not reach into the catalogue's schema.
    payload["schema"]["fields"].clear()
    assert json.loads(info.text)["fields"]


def test_json_schema_topic_keeps_the_draft_it_declares() -> None:
    later = {**ORDER_JSON_SCHEMA, "$schema": "https://json-schema.org/draft/2020-12/schema"}
    undeclared = {key: value for key, value in ORDER_JSON_SCHEMA.items() if key != "$schema"}
    catalog = FakeCatalog(
        {
            "orders.draft7": json_info("orders.draft7"),
            "orders.draft2020": json_info("orders.draft2020", later),
            "orders.plain": json_info("orders.plain", undeclared),
        }
    )
    document = asyncapi.build_document(catalog, "orders.*")
    assert_valid_asyncapi(document)
    schemas = document["components"]["schemas"]
    assert schemas["orders.draft7"] == {
        "schemaFormat": "application/schema+json;version=draft-07",
        "schema": ORDER_JSON_SCHEMA,
    }
    assert schemas["orders.draft2020"]["schemaFormat"] == "application/schema+json;version=2020-12"
    assert schemas["orders.plain"]["schemaFormat"] == "application/schema+json;version=draft-07"
    assert document["components"]["messages"]["orders.plain"]["contentType"] == "application/json"
    assert document["channels"]["orders.plain"]["x-odradek-compatibility"] == "full"


def test_arrow_topic_becomes_the_equivalent_json_schema() -> None:
    info = arrow_info("sensors.readings")
    document = asyncapi.build_document(FakeCatalog({"sensors.readings": info}), "sensors.>")
    assert_valid_asyncapi(document)
    payload = document["components"]["schemas"]["sensors.readings"]
    assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
    assert payload["x-odradek-arrow-schema"] == info.text
    converted = payload["schema"]
    assert converted["title"] == "sensors.readings"
    assert converted["required"] == ["sensor", "reading"]
    assert converted["properties"]["reading"] == {
        "type": "integer",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    }
    assert converted["properties"]["level"] == {"type": ["string", "null"], "enum": ["low", "high", None]}
    validator = jsonschema.Draft7Validator(converted)
    good = [
        {"sensor": "s1", "reading": 5, "tags": ["a"], "position": {"x": 1.0, "y": None}, "labels": {"k": 1}},
        {"sensor": "s2", "reading": -(2**31), "tags": None, "position": None, "labels": None, "level": "low"},
        {"sensor": "s3", "reading": 0},
    ]
    for value in good:
        assert not list(validator.iter_errors(value)), value
    bad = [
        {"reading": 5},  # sensor is required
        {"sensor": "s", "reading": 2**31},  # out of int32
        {"sensor": "s", "reading": 1.5},
        {"sensor": "s", "reading": 1, "tags": [None]},  # items are not nullable
        {"sensor": "s", "reading": 1, "position": {"y": 2.0}},  # position.x is required
        {"sensor": "s", "reading": 1, "labels": {"k": "one"}},
        {"sensor": "s", "reading": 1, "level": "medium"},
    ]
    for value in bad:
        assert list(validator.iter_errors(value)), value


# -- several topics, servers, references -----------------------------------------------


def test_nested_pattern_over_several_kinds_with_both_servers() -> None:
    catalog = FakeCatalog(
        {
            "orders.eu.created": json_info("orders.eu.created"),
            "orders.eu.paid": avro_info("orders.eu.paid"),
            "orders.us.created": arrow_info("orders.us.created"),
            "orders.us.raw-log": None,
            "payments": avro_info("payments"),
        }
    )
    servers = [asyncapi.flight_server("grpc://10.0.0.5:8815"), asyncapi.kafka_server("10.0.0.5:9092")]
    document = asyncapi.build_document(catalog, "orders.>", servers=servers, title="Shop", version="2.1.0")
    assert_valid_asyncapi(document)
    expected = ["orders.eu.created", "orders.eu.paid", "orders.us.created", "orders.us.raw-log"]
    assert list(document["channels"]) == expected
    assert sorted(document["operations"]) == sorted(
        [f"{topic}.{action}" for topic in expected for action in ("receive", "send")]
    )
    assert {operation["action"] for operation in document["operations"].values()} == {"receive", "send"}
    assert document["info"]["title"] == "Shop" and document["info"]["version"] == "2.1.0"
    assert document["servers"] == {
        "flight": {"host": "10.0.0.5:8815", "protocol": "grpc", "description": servers[0].description},
        "kafka": {"host": "10.0.0.5:9092", "protocol": "kafka", "description": servers[1].description},
    }
    for topic in expected:
        binding = document["components"]["messages"][topic]["bindings"]["kafka"]
        assert binding["bindingVersion"] == "0.5.0" and binding["key"]["type"] == "string"
    found = references(document)
    assert len(found) == 6 * 4  # channel → message, message → payload, 2 operations x (channel, message)
    for reference in found:
        resolve(document, reference)
    for name, operation in document["operations"].items():
        assert resolve(document, operation["channel"]["$ref"])["address"] == name.rsplit(".", 1)[0]


def test_without_a_kafka_server_messages_have_no_kafka_binding() -> None:
    servers = [asyncapi.flight_server("grpc+tls://odradek.example:443")]
    document = asyncapi.build_document(FakeCatalog({"a": None}), "a", servers=servers)
    assert_valid_asyncapi(document)
    assert "bindings" not in document["components"]["messages"]["a"]
    assert "TLS" in document["servers"]["flight"]["description"]


def test_the_registry_door_is_named_in_the_kafka_bindings() -> None:
    catalog = FakeCatalog({"payments": avro_info("payments"), "payments.raw": None})
    servers = [asyncapi.kafka_server("127.0.0.1:9092", registry_url="http://127.0.0.1:8081")]
    document = asyncapi.build_document(catalog, "payments.>", servers=servers)
    assert list(document["channels"]) == ["payments.raw"]
    document = asyncapi.build_document(catalog, "payments", servers=servers)
    assert_valid_asyncapi(document)
    assert document["servers"]["kafka"]["bindings"]["kafka"]["schemaRegistryUrl"] == "http://127.0.0.1:8081"
    binding = document["components"]["messages"]["payments"]["bindings"]["kafka"]
    assert binding["schemaIdLocation"] == "payload"
    assert binding["schemaLookupStrategy"] == "TopicNameStrategy"
    schemaless = asyncapi.build_document(catalog, "payments.raw", servers=servers)
    assert_valid_asyncapi(schemaless)
    assert "schemaIdLocation" not in schemaless["components"]["messages"]["payments.raw"]["bindings"]["kafka"]
    with pytest.raises(InvalidRequest):
        asyncapi.kafka_server("127.0.0.1:9092", registry_url="127.0.0.1:8081")


def test_a_pattern_matching_nothing_is_refused() -> None:
    with pytest.raises(TopicNotFound, match=r"no topic matches 'orders\.>'"):
        asyncapi.build_document(FakeCatalog({"payments": None}), "orders.>")


@pytest.mark.parametrize("url", ["http://host:1", "grpc://", "host:8815"])
def test_bad_server_addresses_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        asyncapi.flight_server(url)


@pytest.mark.parametrize("address", ["host", ":9092", "host:port"])
def test_bad_kafka_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidRequest):
        asyncapi.kafka_server(address)


def test_yaml_and_json_texts_hold_the_same_document() -> None:
    yaml = pytest.importorskip("yaml")
    document = asyncapi.build_document(FakeCatalog({"payments": avro_info("payments")}), "payments")
    assert yaml.safe_load(asyncapi.document_text(document, "yaml")) == document
    assert json.loads(asyncapi.document_text(document, "json")) == document
    with pytest.raises(InvalidRequest):
        asyncapi.document_text(document, "xml")


def test_an_embedded_client_with_real_schemas(tmp_path: Path) -> None:
    """The builder over a real client: real SchemaInfo objects, compiled by the engine."""
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("shop.payments", schema=PAYMENT_AVRO, compatibility="full")
        client.create_topic("shop.orders", schema=ORDER_JSON_SCHEMA)
        client.create_topic("shop.sensors", schema=SENSOR_ARROW)
        client.create_topic("shop.log")
        client.create_topic("other")
        document = asyncapi.build_document(client, "shop.>")
    assert_valid_asyncapi(document)
    assert list(document["channels"]) == ["shop.log", "shop.orders", "shop.payments", "shop.sensors"]
    schemas = document["components"]["schemas"]
    assert schemas["shop.payments"]["schemaFormat"] == asyncapi.AVRO_SCHEMA_FORMAT
    assert [field["name"] for field in schemas["shop.payments"]["schema"]["fields"]] == [
        "id",
        "amount",
        "currency",
        "note",
    ]
    assert schemas["shop.orders"]["schema"]["required"] == ["order", "total"]
    sensors = schemas["shop.sensors"]["schema"]
    assert sensors["required"] == ["sensor", "reading"]
    assert sensors["properties"]["level"]["enum"] == ["low", "high", None]
    assert document["channels"]["shop.payments"]["x-odradek-compatibility"] == "full"
    assert document["channels"]["shop.sensors"]["x-odradek-schema-kind"] == "ARROW"
    assert schemas["shop.log"]["contentEncoding"] == "binary"


# -- the conversion over arbitrary Arrow types ----------------------------------------


_SCALARS = st.sampled_from(
    [
        pa.bool_(),
        pa.int8(),
        pa.uint16(),
        pa.int64(),
        pa.float32(),
        pa.float64(),
        pa.utf8(),
        pa.large_utf8(),
        pa.binary(),
        pa.binary(4),
        pa.decimal128(10, 2),
        pa.date32(),
        pa.timestamp("us", tz="UTC"),
        pa.time64("us"),
        pa.duration("ms"),
    ]
)
_NAMES = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)


def _fields(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[list[pa.Field]]:
    field = st.builds(
        lambda name, kind, nullable: pa.field(name, kind, nullable), _NAMES, children, st.booleans()
    )
    return st.lists(field, min_size=1, max_size=4, unique_by=lambda field: field.name)


_TYPES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.builds(lambda fields: pa.struct(fields), _fields(children)),
        st.builds(lambda item, nullable: pa.list_(pa.field("item", item, nullable)), children, st.booleans()),
        st.builds(lambda item: pa.map_(pa.utf8(), item), children),
        st.builds(lambda item: pa.map_(pa.int32(), item), children),
        st.builds(lambda item: pa.list_(item, 3), children),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(fields=_fields(_TYPES))
def test_any_arrow_value_type_converts_to_a_valid_json_schema_and_document(fields: list[pa.Field]) -> None:
    schema = pa.schema(fields)
    converted = asyncapi.arrow_to_json_schema(pa.struct(fields))
    jsonschema.Draft7Validator.check_schema(converted)
    assert set(converted["properties"]) == {field.name for field in fields}
    assert converted.get("required", []) == [field.name for field in fields if not field.nullable]
    document = asyncapi.build_document(FakeCatalog({"t": arrow_info("t", schema)}), "t")
    assert_valid_asyncapi(document)
