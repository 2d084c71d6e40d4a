"""Goal: an Arrow schema compiles to the value type its fields describe, with a canonical
stored text that reads back to the same schema, and anything that cannot be stored or
compared across versions is refused with the path of the offending field.

Method: compile hand-written schemas (flat, nested, with defaults and enums) and check
the value type, text round trip and codec check; one refusal test per refused kind and
bound; a hypothesis property that compiling the schema read back from the text gives
the same text. The JSON codec is exercised only when its module is present.
"""

from __future__ import annotations

import base64
import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.arrow_schema import arrow_schema_from_text, compile_arrow
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY, schema_depth_max, schema_fields_max

PAYMENT = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("amount", pa.decimal128(12, 2)),
        pa.field("currency", pa.string(), nullable=False, metadata={b"default": b'"EUR"'}),
        pa.field("status", pa.string(), metadata={ENUM_KEY: b'["PAID", "REFUNDED"]'}),
        pa.field("address", pa.struct([pa.field("city", pa.string(), nullable=False)])),
        pa.field("items", pa.list_(pa.struct([pa.field("sku", pa.string(), nullable=False)]))),
        pa.field("attributes", pa.map_(pa.string(), pa.int32())),
        pa.field("at", pa.timestamp("us", "UTC")),
    ],
    metadata={b"owner": b"payments team"},
)


def test_fields_become_the_value_type() -> None:
    compiled = compile_arrow(PAYMENT)
    assert compiled.kind == "ARROW"
    assert compiled.value_type.names == PAYMENT.names
    assert [field.nullable for field in compiled.value_type] == [field.nullable for field in PAYMENT]
    assert compiled.value_type.field("items").type == PAYMENT.field("items").type


def test_plain_default_metadata_moves_to_the_default_key() -> None:
    currency = compile_arrow(PAYMENT).value_type.field("currency")
    assert currency.metadata == {DEFAULT_KEY: b'"EUR"'}


def test_text_is_canonical_and_reads_back() -> None:
    compiled = compile_arrow(PAYMENT)
    read_back = arrow_schema_from_text(compiled.text)
    assert read_back.metadata is None
    assert pa.struct(list(read_back)).equals(compiled.value_type, check_metadata=True)
    assert compile_arrow(read_back).text == compiled.text
    assert compile_arrow(PAYMENT.remove_metadata()).text == compiled.text
    assert compile_arrow(read_back) == compiled


def test_codec_check_refuses_missing_required_values() -> None:
    compiled = compile_arrow(PAYMENT)
    values = pa.array([{"id": 1, "currency": "EUR"}, {"id": 2, "currency": None}], compiled.value_type)
    with pytest.raises(SchemaViolation) as caught:
        compiled.codec.check(values)
    assert (caught.value.index, caught.value.path) == (1, "currency")


def test_codec_check_refuses_unknown_enum_symbols() -> None:
    compiled = compile_arrow(PAYMENT)
    values = pa.array([{"id": 1, "currency": "EUR", "status": "LOST"}], compiled.value_type)
    with pytest.raises(SchemaViolation) as caught:
        compiled.codec.check(values)
    assert (caught.value.index, caught.value.path) == (0, "status")


def test_codec_round_trips_json_payloads() -> None:
    compiled = compile_arrow(PAYMENT)
    values = pa.array([{"id": 1, "currency": "EUR", "items": [{"sku": "a"}]}], compiled.value_type)
    payloads = compiled.codec.encode(values)
    assert compiled.codec.decode(payloads).to_pylist() == values.to_pylist()


def one_field(data_type: pa.DataType, **field_options: object) -> pa.Schema:
    return pa.schema([pa.field("id", pa.int64()), pa.field("bad", data_type, **field_options)])  # type: ignore[arg-type]


def nested(depth: int) -> pa.DataType:
    data_type: pa.DataType = pa.int64()
    for _ in range(depth):
        data_type = pa.struct([pa.field("inner", data_type)])
    return data_type


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (pa.schema([]), "no fields"),
        (pa.schema([pa.field("a", pa.int8()), pa.field("a", pa.int16())]), "`a` appears twice"),
        (one_field(pa.struct([pa.field("x", pa.int8()), pa.field("x", pa.int8())])), "`bad.x` appears twice"),
        (one_field(pa.struct([])), "`bad` has no fields"),
        (one_field(pa.dense_union([pa.field("i", pa.int8())])), "union"),
        (one_field(pa.dictionary(pa.int32(), pa.string())), "dictionary"),
        (one_field(pa.list_(pa.dictionary(pa.int8(), pa.string()))), "`bad[]`"),
        (one_field(pa.run_end_encoded(pa.int32(), pa.string())), "run-end"),
        (one_field(pa.list_view(pa.int8())), "list view"),
        (one_field(pa.uuid()), "extension"),
        (one_field(pa.map_(pa.struct([pa.field("k", pa.int8())]), pa.int8())), "map keys"),
        (one_field(nested(schema_depth_max)), "deeper"),
        (
            pa.schema([pa.field(f"f{number}", pa.int8()) for number in range(schema_fields_max + 1)]),
            "more than",
        ),
        (one_field(pa.int8(), metadata={b"default": b'"many"'}), "`bad`"),
        (one_field(pa.int8(), metadata={DEFAULT_KEY: b"not json"}), "`bad`"),
        (one_field(pa.int8(), nullable=False, metadata={DEFAULT_KEY: b"null"}), "cannot be null"),
        (one_field(pa.int8(), metadata={ENUM_KEY: b'["A"]'}), "must be string"),
        (one_field(pa.string(), metadata={ENUM_KEY: b'["A", "A"]'}), "distinct strings"),
        (
            one_field(pa.string(), metadata={ENUM_KEY: b'["A"]', DEFAULT_KEY: b'"B"'}),
            "not one of its symbols",
        ),
    ],
)
def test_refusals_name_the_field(schema: pa.Schema, words: str) -> None:
    with pytest.raises(InvalidSchema) as caught:
        compile_arrow(schema)
    assert words in caught.value.message


def test_depth_at_the_bound_is_accepted() -> None:
    compile_arrow(one_field(nested(schema_depth_max - 2)))


def test_a_default_of_null_for_an_optional_field_is_kept() -> None:
    compiled = compile_arrow(one_field(pa.int8(), metadata={DEFAULT_KEY: b"null"}))
    assert compiled.value_type.field("bad").metadata == {DEFAULT_KEY: b"null"}


@pytest.mark.parametrize("text", ["%%%", base64.b64encode(b"not a schema").decode(), ""])
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidSchema):
        arrow_schema_from_text(text)


def test_not_a_schema_is_refused() -> None:
    with pytest.raises(InvalidSchema):
        compile_arrow({"type": "record"})  # type: ignore[arg-type]


LEAVES = st.sampled_from(
    [
        pa.int8(),
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.binary(),
        pa.bool_(),
        pa.timestamp("ms"),
        pa.date32(),
    ]
)
NAMES = st.sampled_from(["a", "b", "c", "d"])


def structs(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    fields = st.lists(
        st.builds(pa.field, NAMES, children, st.booleans()),
        min_size=1,
        max_size=3,
        unique_by=lambda f: f.name,
    )
    return fields.map(pa.struct)


TYPES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        structs(children),
        st.builds(pa.list_, children),
        st.builds(lambda item: pa.map_(pa.int32(), item), children),
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(structs(TYPES), st.one_of(st.none(), st.integers(-5, 5)))
def test_compiling_the_stored_text_gives_the_same_text(
    value_type: pa.StructType, default: int | None
) -> None:
    fields = list(value_type)
    if default is not None:
        fields.append(
            pa.field(
                "counted", pa.int64(), nullable=False, metadata={b"default": json.dumps(default).encode()}
            )
        )
    compiled = compile_arrow(pa.schema(fields))
    again = compile_arrow(arrow_schema_from_text(compiled.text))
    assert again.text == compiled.text
    assert again.value_type.equals(compiled.value_type, check_metadata=True)
