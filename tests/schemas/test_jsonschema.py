"""JSON Schema topics: compile_json_schema and its codec's decode and check.

Goal: a supported JSON Schema compiles to the value type it describes; an unsupported
one is refused naming the keyword and its path; decode+check accepts exactly the
documents the reference validator (the ``jsonschema`` package) accepts, except where a
column cannot follow JSON Schema (unknown properties are refused, null and absence are
the same), and each refusal names the first offending record and the field path.

Method: unit tests per keyword and per compile error; a hypothesis test draws documents
near the edges of a schema's rules and compares our verdict with ``jsonschema``'s.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.jsonschema import compile_json_schema
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY, CompiledSchema

_ORDER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.com/order.json",
    "title": "Order",
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 1000, "multipleOf": 2},
        "customer": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
        "currency": {"enum": ["EUR", "USD", "JPY"], "default": "EUR"},
        "level": {"type": "integer", "enum": [1, 2, 3]},
        "kind": {"const": "order"},
        "paid": {"type": "boolean"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 4}]},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 2},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{2}$"},
                    "qty": {"type": "integer"},
                },
                "required": ["sku"],
            },
        },
        "address": {"$ref": "#/$defs/address"},
        "attributes": {"type": "object", "additionalProperties": {"type": "integer", "maximum": 9}},
        "at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "currency"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "description": "where it goes",
            "properties": {"city": {"type": "string", "minLength": 1}, "zip": {"type": ["string", "null"]}},
            "required": ["city"],
        }
    },
}

_VALID: dict[str, Any] = {
    "id": 4,
    "customer": "ann",
    "amount": 9.5,
    "currency": "USD",
    "level": 2,
    "kind": "order",
    "paid": True,
    "note": "ok",
    "tags": ["x"],
    "lines": [{"sku": "AB", "qty": 1}],
    "address": {"city": "Oslo", "zip": None},
    "attributes": {"size": 3},
    "at": "2024-02-29T12:00:00.5+01:00",
}


@pytest.fixture(scope="module")
def order() -> CompiledSchema:
    return compile_json_schema(_ORDER)


def _decode(compiled: CompiledSchema, *documents: Any) -> pa.StructArray:
    payloads = pa.array([json.dumps(d).encode() for d in documents], pa.binary())
    return compiled.codec.decode(payloads)


# -- compiling ---------------------------------------------------------------------------


def test_compile_gives_the_value_type_text_and_extras(order: CompiledSchema) -> None:
    value_type = order.value_type
    assert order.kind == "JSON"
    assert order.text == json.dumps(_ORDER, sort_keys=True, separators=(",", ":"))
    assert order.extras == {"json_schema": _ORDER}
    assert value_type.field("id").type == pa.int64() and not value_type.field("id").nullable
    assert value_type.field("amount").type == pa.float64() and value_type.field("amount").nullable
    assert value_type.field("paid").type == pa.bool_()
    currency = value_type.field("currency")
    assert currency.type == pa.string() and not currency.nullable
    assert json.loads(currency.metadata[ENUM_KEY]) == ["EUR", "USD", "JPY"]
    assert json.loads(currency.metadata[DEFAULT_KEY]) == "EUR"
    assert value_type.field("level").type == pa.int64() and ENUM_KEY not in (
        value_type.field("level").metadata or {}
    )
    assert value_type.field("note").nullable
    assert value_type.field("tags").type == pa.list_(pa.field("item", pa.string(), nullable=False))
    lines = value_type.field("lines").type.value_type
    assert lines.field("sku").type == pa.string() and not lines.field("sku").nullable
    address = value_type.field("address").type
    assert not address.field("city").nullable and address.field("zip").nullable
    attributes = value_type.field("attributes").type
    assert pa.types.is_map(attributes) and attributes.item_type == pa.int64()
    assert value_type.field("at").type == pa.string()


def test_compile_accepts_text_and_definitions() -> None:
    document = {
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/a"}, "b": {"$ref": "#/definitions/a"}},
        "definitions": {"a": {"type": "integer"}},
    }
    compiled = compile_json_schema(json.dumps(document))
    assert [field.type for field in compiled.value_type] == [pa.int64(), pa.int64()]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "string"}, "root"),
        ({"type": "object"}, "root"),
        (
            {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
            "properties.a.oneOf",
        ),
        (
            {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}},
            "properties.a.anyOf",
        ),
        ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}}, "properties.a.allOf"),
        (
            {
                "type": "object",
                "properties": {
                    "address": {"type": "object", "properties": {"c": {"type": "string"}}, "oneOf": []}
                },
            },
            "properties.address.oneOf",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}},
            "properties.a.not",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {"b": {"type": "integer"}}, "patternProperties": {}}
                },
            },
            "properties.a.patternProperties",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "integer", "if": {}, "then": {}}}},
            "properties.a.if",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {"b": {"type": "integer"}}, "dependentSchemas": {}}
                },
            },
            "properties.a.dependentSchemas",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}}
                },
            },
            "properties.a.prefixItems",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/other.json"}}},
            "properties.a.$ref",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "properties.a.$ref"),
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/node"}},
                "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            },
            "$defs.node.properties.next.$ref",
        ),
        ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, "properties.a.type"),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, "properties.a.items"),
        ({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}, "properties.a"),
        (
            {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 0.5}}},
            "properties.a.multipleOf",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}},
            "properties.a.pattern",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "minLength": "2"}}},
            "properties.a.minLength",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "object", "properties": {"b": {"type": "integer"}}, "enum": [{}]}
                },
            },
            "properties.a.enum",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "array", "items": {"type": "string"}, "const": []}},
            },
            "properties.a.const",
        ),
        ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]}, "required"),
    ],
)
def test_compile_refuses_unsupported_schemas_naming_where(schema: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidSchema) as raised:
        compile_json_schema(schema)
    if where == "root":
        assert "root" in raised.value.message
    else:
        assert raised.value.message.startswith(where + ":"), raised.value.message


def test_compile_refuses_schemas_beyond_bounds() -> None:
    deep: dict[str, Any] = {"type": "integer"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(InvalidSchema, match="deeper"):
        compile_json_schema(deep)
    wide = {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(10_001)}}
    with pytest.raises(InvalidSchema, match="at most"):
        compile_json_schema(wide)
    with pytest.raises(InvalidSchema):
        compile_json_schema("{not json")


# -- checking ----------------------------------------------------------------------------


def test_decode_accepts_a_valid_document_and_encodes_it_back(order: CompiledSchema) -> None:
    values = _decode(order, _VALID, {"id": 2, "currency": "EUR"})
    assert values.to_pylist()[0]["attributes"] == [("size", 3)]
    back = [json.loads(text) for text in order.codec.encode(values).to_pylist()]
    assert {k: v for k, v in back[0].items() if v is not None} == {
        k: v for k, v in _VALID.items() if k != "address"
    } | {"address": {"city": "Oslo", "zip": None}}


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"id": 0}, "id", ">= 1"),
        ({"id": 1002}, "id", "<= 1000"),
        ({"id": 3}, "id", "multiple of 2"),
        ({"id": "4"}, "id", "integer"),
        ({"customer": "a"}, "customer", "at least 2"),
        ({"customer": "abcdef"}, "customer", "at most 5"),
        ({"customer": "AB"}, "customer", "pattern"),
        ({"amount": 0}, "amount", "> 0"),
        ({"amount": 100}, "amount", "< 100"),
        ({"currency": "GBP"}, "currency", "enum"),
        ({"currency": None}, "currency", "required"),
        ({"level": 4}, "level", "one of"),
        ({"kind": "refund"}, "kind", "one of"),
        ({"paid": 1}, "paid", "boolean"),
        ({"note": "toolong"}, "note", "at most 4"),
        ({"tags": []}, "tags", "at least 1 items"),
        ({"tags": ["a", "b", "c"]}, "tags", "at most 2 items"),
        ({"tags": ["a", ""]}, "tags[1]", "at least 1"),
        ({"lines": [{"sku": "AB"}, {"sku": "abc"}]}, "lines[1].sku", "pattern"),
        ({"lines": [{"sku": "AB"}, {"qty": 1}]}, "lines[1].sku", "required"),
        ({"lines": [{"sku": "AB", "colour": "red"}]}, "lines[0].colour", "not in"),
        ({"address": {"city": ""}}, "address.city", "at least 1"),
        ({"address": {"zip": "1"}}, "address.city", "required"),
        ({"attributes": {"size": 3, "weight": 10}}, 'attributes["weight"]', "<= 9"),
        ({"attributes": {"size": "L"}}, 'attributes["size"]', "integer"),
        ({"at": "2024-02-29 12:00:00Z"}, "at", "date-time"),
        ({"at": "2024-13-01T00:00:00Z"}, "at", "date-time"),
        ({"extra": 1}, "extra", "not in"),
    ],
)
def test_each_violation_names_the_first_record_and_path(
    order: CompiledSchema, change: dict[str, Any], path: str, words: str
) -> None:
    bad = _VALID | change
    with pytest.raises(SchemaViolation) as raised:
        _decode(order, _VALID, _VALID, bad, _VALID | {"id": "later", "customer": "X"})
    assert (raised.value.index, raised.value.path) == (2, path)
    assert words in raised.value.message


def test_a_rule_broken_before_a_decode_refusal_is_the_one_reported(order: CompiledSchema) -> None:
    with pytest.raises(SchemaViolation) as raised:
        _decode(order, _VALID, _VALID | {"id": 0}, _VALID | {"id": "x"})
    assert (raised.value.index, raised.value.path) == (1, "id")


def test_check_skips_values_under_null_parents(order: CompiledSchema) -> None:
    values = _decode(order, {"id": 2, "currency": "EUR", "address": None, "lines": None, "attributes": None})
    order.codec.check(values)
    assert values.to_pylist()[0]["address"] is None


# -- jsonschema as the oracle --------------------------------------------------------------

_ORACLE_VALIDATOR = jsonschema.Draft202012Validator(
    _ORDER, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

_scalars: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.integers(-2, 1004), st.sampled_from(["4", 4.5, True])),
    "customer": st.one_of(
        st.sampled_from(["a", "ab", "abcde", "abcdef", "AB", "a1", "", "ñé"]), st.integers(0, 1)
    ),
    "amount": st.one_of(
        st.sampled_from([0, 0.0, 1e-9, 50, 99.999, 100, 101, -1]), st.sampled_from(["1", False])
    ),
    "currency": st.sampled_from(["EUR", "USD", "JPY", "GBP", "eur", 1]),
    "level": st.sampled_from([0, 1, 2, 3, 4, "1"]),
    "kind": st.sampled_from(["order", "refund", 1]),
    "paid": st.sampled_from([True, False, 0, "true"]),
    "note": st.sampled_from(["", "abcd", "abcde", 3]),
    "tags": st.one_of(st.lists(st.sampled_from(["", "x", "yz"]), max_size=3), st.just("x")),
    "lines": st.lists(
        st.fixed_dictionaries(
            {"sku": st.sampled_from(["AB", "ZZ", "A", "abc", "ABC"])},
            optional={"qty": st.sampled_from([1, -5, "2"])},
        ),
        max_size=3,
    ),
    "address": st.fixed_dictionaries(
        {"city": st.sampled_from(["", "Oslo", 5])}, optional={"zip": st.sampled_from([None, "0150", 150])}
    ),
    "attributes": st.dictionaries(
        st.sampled_from(["a", "b", "size"]), st.sampled_from([0, 9, 10, -1, "x"]), max_size=3
    ),
    "at": st.sampled_from(
        [
            "2024-02-29T12:00:00Z",
            "2024-02-29T12:00:00.123+01:00",
            "2024-02-29t12:00:00z",
            "2024-02-29 12:00:00Z",
            "2024-02-29T12:00:00",
            "2024-13-01T00:00:00Z",
            "2024-02-29T25:00:00Z",
            "yesterday",
        ]
    ),
}


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    """Documents with any subset of the properties, each near the edges of its rules.
    Null values are left out: a column cannot tell them from absence (tested below)."""
    names = draw(st.sets(st.sampled_from(sorted(_scalars))))
    # Mostly valid values, so that whole documents are often valid too.
    document = {
        name: draw(_scalars[name]) if draw(st.integers(0, 3)) == 0 else _VALID[name] for name in sorted(names)
    }
    if draw(st.booleans()):
        document.setdefault("id", 4)
        document.setdefault("currency", "EUR")
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_decode_and_check_agree_with_jsonschema(order: CompiledSchema, document: dict[str, Any]) -> None:
    expected = _ORACLE_VALIDATOR.is_valid(document)
    try:
        _decode(order, document)
        accepted = True
    except SchemaViolation:
        accepted = False
    assert accepted == expected, document


def test_unknown_properties_are_refused_where_json_schema_would_allow_them() -> None:
    """additionalProperties true (or absent) allows unknown properties in JSON Schema;
    a columnar topic refuses them rather than drop them."""
    for extra in ({"additionalProperties": True}, {}):
        document = {"type": "object", "properties": {"a": {"type": "integer"}}} | extra
        jsonschema.validate({"a": 1, "b": 2}, document)
        with pytest.raises(SchemaViolation) as raised:
            _decode(compile_json_schema(document), {"a": 1, "b": 2})
        assert raised.value.path == "b"


def test_null_and_absence_are_one_case() -> None:
    """JSON Schema refuses null for an optional non-null property and absence for a
    required nullable one; a column stores both as null, so both are accepted."""
    document = {
        "type": "object",
        "properties": {"optional": {"type": "string"}, "nullable": {"type": ["string", "null"]}},
        "required": ["nullable"],
    }
    compiled = compile_json_schema(document)
    for value in ({"optional": None, "nullable": "x"}, {}):
        assert not jsonschema.Draft202012Validator(document).is_valid(value)
        assert _decode(compiled, value).to_pylist() == [{"optional": None, "nullable": value.get("nullable")}]


def test_integers_are_integer_literals() -> None:
    """JSON Schema counts 1.0 as an integer; an int64 column takes integer literals."""
    document = {"type": "object", "properties": {"n": {"type": "integer"}}}
    jsonschema.validate({"n": 1.0}, document)
    with pytest.raises(SchemaViolation) as raised:
        compile_json_schema(document).codec.decode(pa.array([b'{"n": 1.0}']))
    assert raised.value.path == "n"
