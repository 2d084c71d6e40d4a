"""Compiling Avro schemas for topics, and checking values against them.

Goal: every Avro type maps to the Arrow type the topic stores (nullability for optional
fields, enum symbols and defaults in field metadata, logical types to Arrow temporal and
decimal types, unknown logical types read as their underlying type); named types are
referred to by name and full name through namespaces; everything a column cannot hold
or the spec forbids is an InvalidSchema whose message points into the document; equal
schemas get equal canonical text; ``check`` names the first record breaking what the
Arrow type cannot say (a required value that is null, an unknown enum symbol) with its
path.

Method: small hand-written schemas, each with the exact expected Arrow type or error
path; check is run on arrays built with ``pa.array`` (which does not enforce a nested
field's nullability) holding one known violation, or two in different records.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas import model
from odradek.schemas.avro import compile_avro
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY


def record(*fields: dict[str, Any], name: str = "Value", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def single_field_type(field_type: Any, **field_extra: Any) -> pa.Field:
    compiled = compile_avro(record({"name": "v", "type": field_type, **field_extra}))
    return compiled.value_type.field("v")


def refusal(schema: Any) -> str:
    with pytest.raises(InvalidSchema) as caught:
        compile_avro(schema)
    return str(caught.value.message)


@pytest.mark.parametrize(
    ("avro_type", "arrow_type"),
    [
        ("boolean", pa.bool_()),
        ("int", pa.int32()),
        ("long", pa.int64()),
        ("float", pa.float32()),
        ("double", pa.float64()),
        ("bytes", pa.binary()),
        ("string", pa.utf8()),
        ({"type": "fixed", "name": "Hash", "size": 16}, pa.binary(16)),
        ({"type": "array", "items": "long"}, pa.list_(pa.field("item", pa.int64(), nullable=False))),
        (
            {"type": "map", "values": "double"},
            pa.map_(
                pa.field("key", pa.utf8(), nullable=False), pa.field("value", pa.float64(), nullable=False)
            ),
        ),
        ({"type": "long", "logicalType": "timestamp-millis"}, pa.timestamp("ms", tz="UTC")),
        ({"type": "long", "logicalType": "timestamp-micros"}, pa.timestamp("us", tz="UTC")),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, pa.timestamp("ms")),
        ({"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
        ({"type": "int", "logicalType": "date"}, pa.date32()),
        ({"type": "int", "logicalType": "time-millis"}, pa.time32("ms")),
        ({"type": "long", "logicalType": "time-micros"}, pa.time64("us")),
        ({"type": "string", "logicalType": "uuid"}, pa.utf8()),
        ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}, pa.decimal128(12, 3)),
        (
            {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18},
            pa.decimal128(18, 0),
        ),
        # Unknown or invalid logical types are read as the underlying type (Avro spec).
        ({"type": "long", "logicalType": "timestamp-eons"}, pa.int64()),
        ({"type": "int", "logicalType": "timestamp-millis"}, pa.int32()),
        ({"type": "bytes", "logicalType": "decimal", "precision": 39}, pa.binary()),
        ({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 5}, pa.binary()),
        ({"type": "bytes", "logicalType": "decimal"}, pa.binary()),
        (
            {"type": "fixed", "name": "Small", "size": 2, "logicalType": "decimal", "precision": 5},
            pa.binary(2),
        ),
    ],
)
def test_each_avro_type_maps_to_its_arrow_type(avro_type: Any, arrow_type: pa.DataType) -> None:
    field = single_field_type(avro_type)
    assert field.type == arrow_type
    assert not field.nullable


def test_a_union_with_null_is_a_nullable_field_on_either_side() -> None:
    assert single_field_type(["null", "string"]).nullable
    assert single_field_type(["string", "null"]).nullable
    assert single_field_type({"type": "array", "items": ["null", "int"]}).type.value_field.nullable


def test_enum_symbols_and_defaults_travel_in_field_metadata() -> None:
    compiled = compile_avro(
        record(
            {"name": "currency", "type": {"type": "enum", "name": "C", "symbols": ["EUR", "USD"]}},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "tags", "type": {"type": "array", "items": "C"}, "default": ["USD"]},
            {"name": "size", "type": "int", "default": 3},
        )
    )
    fields = compiled.value_type
    assert json.loads(fields.field("currency").metadata[ENUM_KEY]) == ["EUR", "USD"]
    assert DEFAULT_KEY not in (fields.field("currency").metadata or {})
    assert json.loads(fields.field("note").metadata[DEFAULT_KEY]) is None
    assert json.loads(fields.field("tags").metadata[DEFAULT_KEY]) == ["USD"]
    assert json.loads(fields.field("tags").type.value_field.metadata[ENUM_KEY]) == ["EUR", "USD"]
    assert json.loads(fields.field("size").metadata[DEFAULT_KEY]) == 3


@pytest.mark.parametrize(
    ("field_type", "default"),
    [
        ("int", 2**31),
        ("int", True),
        ("long", 1.5),
        ("string", 3),
        ("boolean", 0),
        ({"type": "fixed", "name": "F", "size": 2}, "abc"),
        ("bytes", "\u0100"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "B"),
        ({"type": "array", "items": "int"}, ["x"]),
        ({"type": "map", "values": "int"}, {"a": "x"}),
        (record({"name": "x", "type": "int"}, name="Inner"), {}),
        # A union's default belongs to its first branch.
        (["null", "string"], "text"),
        (["string", "null"], None),
    ],
)
def test_a_default_that_does_not_fit_is_refused_with_its_path(field_type: Any, default: Any) -> None:
    message = refusal(
        record({"name": "a", "type": "int"}, {"name": "b", "type": field_type, "default": default})
    )
    assert "fields[1].default" in message


@pytest.mark.parametrize(
    ("field_type", "default"),
    [
        ("double", 1),
        (["string", "null"], "text"),
        ({"type": "fixed", "name": "F", "size": 2}, "\u00ff\u0000"),
        (record({"name": "x", "type": "int", "default": 1}, name="Inner"), {}),
        ({"type": "map", "values": ["null", "int"]}, {"a": None}),
    ],
)
def test_a_default_that_fits_is_accepted(field_type: Any, default: Any) -> None:
    field = single_field_type(field_type, default=default)
    assert json.loads(field.metadata[DEFAULT_KEY]) == default


def test_named_types_are_referred_to_by_name_and_full_name() -> None:
    compiled = compile_avro(
        record(
            {"name": "address", "type": record({"name": "city", "type": "string"}, name="Address")},
            {"name": "billing", "type": "Address"},
            {"name": "shipping", "type": "shop.Address"},
            {"name": "other", "type": ["null", "Address"]},
            {
                "name": "nested",
                "type": record(
                    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A"]}},
                    name="Nested",
                    namespace="shop.inner",
                ),
            },
            {"name": "kind", "type": "shop.inner.Kind"},
            name="Order",
            namespace="shop",
        )
    )
    address = compiled.value_type.field("address").type
    for name in ("billing", "shipping", "other"):
        assert compiled.value_type.field(name).type == address
    assert compiled.value_type.field("kind").type == pa.utf8()


def test_a_name_in_the_enclosing_namespace_is_found_by_its_short_name() -> None:
    inner = record(
        {"name": "one", "type": {"type": "fixed", "name": "Code", "size": 3}},
        {"name": "two", "type": "Code"},
        name="shop.Inner",
    )
    compiled = compile_avro(record({"name": "inner", "type": inner}, {"name": "code", "type": "shop.Code"}))
    assert compiled.value_type.field("code").type == pa.binary(3)


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ('"string"', "must be an Avro record"),
        ({"type": "array", "items": "int"}, "must be an Avro record"),
        (record({"name": "a", "type": "Later"}, {"name": "b", "type": "fixed"}), "fields[0].type"),
        (record({"name": "a", "type": "int"}, {"name": "a", "type": "long"}), "fields[1].name"),
        (record({"name": "a-b", "type": "int"}), "fields[0].name"),
        (record({"name": "a"}), "fields[0]"),
        (record({"name": "a", "type": "integer"}), "fields[0].type"),
        (record({"name": "a", "type": {"type": "record", "name": "R"}}), "'fields'"),
        (record({"name": "a", "type": {"type": "enum", "name": "E"}}), "'symbols'"),
        (record({"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["A", "A"]}}), "duplicate"),
        (record({"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["1"]}}), "symbols[0]"),
        (record({"name": "a", "type": {"type": "fixed", "name": "F"}}), "'size'"),
        (record({"name": "a", "type": {"type": "fixed", "name": "F", "size": -1}}), "'size'"),
        (record({"name": "a", "type": {"type": "array"}}), "'items'"),
        (record({"name": "a", "type": {"type": "map"}}), "'values'"),
        (record({"name": "a", "type": {"type": "fixed", "name": "9F", "size": 1}}), "fields[0].type.name"),
        (record({"name": "a", "type": {"type": "fixed", "name": "int", "size": 1}}), "cannot be called"),
        (record({"name": "a", "type": "null"}), "union"),
        (record({"name": "a", "type": ["int", "string"]}), "optional"),
        (record({"name": "a", "type": ["null", "int", "string"]}), "cannot be one column"),
        (record({"name": "a", "type": ["null", "null"]}), "cannot be one column"),
        (record({"name": "a", "type": ["int"]}), "cannot be one column"),
        (record({"name": "a", "type": ["null", ["null", "int"]]}), "fields[0].type"),
        (
            record(
                {"name": "a", "type": {"type": "array", "items": {"type": "fixed", "name": "Z", "size": 0}}}
            ),
            "items",
        ),
        (
            record({"name": "a", "type": {"type": "array", "items": record(name="Empty")}}),
            "fields[0].type.items",
        ),
        (
            record(
                {"name": "a", "type": {"type": "fixed", "name": "F", "size": 1}},
                {"name": "b", "type": {"type": "fixed", "name": "F", "size": 2}},
            ),
            "defined twice",
        ),
        (record({"name": "next", "type": ["null", "Value"]}), "recursive"),
        (record({"name": "a", "type": {"type": "array", "items": "Value"}}), "fields[0].type.items"),
        ({"type": "record", "name": "Value", "fields": "none"}, "'fields'"),
        (7, "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_an_invalid_schema_is_refused_with_a_path(schema: Any, words: str) -> None:
    assert words in refusal(schema)


def test_the_bounds_on_a_schema_are_enforced() -> None:
    padding = "x" * model.schema_bytes_max
    assert "larger than" in refusal(record({"name": "a", "type": "int", "doc": padding}))
    assert "larger than" in refusal(json.dumps(record({"name": "a", "type": "int", "doc": padding})))
    deep: Any = "int"
    for _ in range(model.schema_depth_max + 1):
        deep = {"type": "array", "items": deep}
    assert "deeper than" in refusal(record({"name": "a", "type": deep}))
    wide = [{"name": f"f{position}", "type": "int"} for position in range(model.schema_fields_max + 1)]
    assert "more than" in refusal(record(*wide))


def test_equal_schemas_have_equal_canonical_text() -> None:
    schema = record({"name": "a", "type": "int"}, {"name": "b", "type": ["null", "string"], "default": None})
    reordered = {"fields": schema["fields"], "name": "Value", "type": "record"}
    as_text = json.dumps(schema, indent=4)
    texts = {compile_avro(schema).text, compile_avro(reordered).text, compile_avro(as_text).text}
    assert len(texts) == 1
    assert compile_avro(schema).kind == "AVRO"
    assert json.loads(texts.pop()) == schema
    assert compile_avro(schema) == compile_avro(as_text)


# ---------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------

ORDER = record(
    {"name": "id", "type": "long"},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {
        "name": "address",
        "type": [
            "null",
            record(
                {"name": "city", "type": "string"},
                {"name": "zip", "type": ["null", "string"]},
                name="Address",
            ),
        ],
    },
    {
        "name": "items",
        "type": {
            "type": "array",
            "items": record(
                {"name": "sku", "type": "string"}, {"name": "kind", "type": "Status"}, name="Item"
            ),
        },
    },
    {"name": "counts", "type": {"type": "map", "values": "long"}},
    name="Order",
)


def good_order(**changes: Any) -> dict[str, Any]:
    value = {
        "id": 1,
        "status": "NEW",
        "address": {"city": "Prague", "zip": None},
        "items": [{"sku": "a", "kind": "NEW"}, {"sku": "b", "kind": "PAID"}],
        "counts": {"x": 1},
    }
    value.update(changes)
    return value


def check_refusal(records: list[dict[str, Any]]) -> SchemaViolation:
    compiled = compile_avro(ORDER)
    values = pa.array(records, type=compiled.value_type)
    with pytest.raises(SchemaViolation) as caught:
        compiled.codec.check(values)
    return caught.value


def test_good_values_pass_the_check() -> None:
    compiled = compile_avro(ORDER)
    values = pa.array(
        [good_order(), good_order(address=None, items=[]), good_order(counts={})], type=compiled.value_type
    )
    compiled.codec.check(values)


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (good_order(id=None), "id", "required"),
        (good_order(status="LOST"), "status", "symbols"),
        (good_order(address={"city": None, "zip": "1"}), "address.city", "required"),
        (
            good_order(items=[{"sku": "a", "kind": "NEW"}, {"sku": None, "kind": "NEW"}]),
            "items[1].sku",
            "required",
        ),
        (
            good_order(items=[{"sku": "a", "kind": "NEW"}, {"sku": "b", "kind": "GONE"}]),
            "items[1].kind",
            "symbols",
        ),
        (good_order(items=None), "items", "required"),
        (good_order(counts={"x": 1, "y": None}), "counts[1]", "required"),
    ],
)
def test_check_names_the_record_and_path(bad: dict[str, Any], path: str, words: str) -> None:
    error = check_refusal([good_order(), good_order(items=[]), bad, good_order()])
    assert (error.index, error.path) == (2, path)
    assert words in error.message


def test_check_ignores_values_under_a_null_optional_record() -> None:
    compiled = compile_avro(ORDER)
    address_type = compiled.value_type.field("address").type
    city = pa.array([None, "Brno"], type=pa.utf8())
    zip_codes = pa.array([None, None], type=pa.utf8())
    address = pa.StructArray.from_arrays(
        [city, zip_codes], fields=list(address_type), mask=pa.array([True, False])
    )
    good = pa.array([good_order(), good_order()], type=compiled.value_type)
    columns = [address if name == "address" else good.field(name) for name in compiled.value_type.names]
    compiled.codec.check(pa.StructArray.from_arrays(columns, fields=list(compiled.value_type)))


def test_check_reports_the_first_record_across_fields() -> None:
    error = check_refusal(
        [
            good_order(),
            good_order(items=[{"sku": None, "kind": "NEW"}]),
            good_order(status="LOST"),
        ]
    )
    assert (error.index, error.path) == (1, "items[0].sku")


def test_check_refuses_a_null_record() -> None:
    error = check_refusal([good_order(), None])  # type: ignore[list-item]
    assert error.index == 1
