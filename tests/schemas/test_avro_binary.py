"""The vectorized Avro binary codec against fastavro, and its refusals.

Goal: ``decode`` reads exactly what the reference implementation writes, ``encode``
writes what it reads (byte for byte, since both write one block per array), the two are
inverses, and every malformed payload is refused with the index of the *first* bad
record and the path of the bad field, without allocating for a hostile declared size.

Method: hypothesis draws random Avro record schemas (nested records, arrays, maps,
optional unions on either side, enums, fixed, logical types, references to named types
defined earlier) together with matching records; fastavro's schemaless writer and
reader are the oracle, and values are compared as Arrow arrays built from the records
with ``pa.array(records, type=value_type)``. Refusals are hand-built payloads whose bad
byte is known; the allocation bound is measured with tracemalloc, which sees NumPy's
allocations.
"""

from __future__ import annotations

import datetime
import decimal
import io
import math
import tracemalloc
import uuid
from dataclasses import dataclass, field
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.errors import SchemaViolation
from odradek.schemas.avro import compile_avro
from odradek.schemas.model import CompiledSchema

# ---------------------------------------------------------------------------------------
# Random schemas and records
# ---------------------------------------------------------------------------------------

# Logical types with the range of raw values fastavro can turn into Python objects when
# it reads them back (datetime covers years 1 to 9999).
_DAYS_FROM_YEAR_1_TO_EPOCH = 719_162
_DAYS_FROM_EPOCH_TO_YEAR_9999 = 2_932_896
_MILLISECONDS_PER_DAY = 86_400_000
_LOGICAL_VALUES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("long", "timestamp-millis"): st.integers(0, 2**42),
    ("long", "timestamp-micros"): st.integers(0, 2**50),
    ("long", "local-timestamp-millis"): st.integers(-(2**40), 2**42),
    ("long", "local-timestamp-micros"): st.integers(-(2**50), 2**50),
    ("int", "date"): st.integers(-_DAYS_FROM_YEAR_1_TO_EPOCH, _DAYS_FROM_EPOCH_TO_YEAR_9999),
    ("int", "time-millis"): st.integers(0, _MILLISECONDS_PER_DAY - 1),
    ("long", "time-micros"): st.integers(0, _MILLISECONDS_PER_DAY * 1000 - 1),
    ("string", "uuid"): st.uuids().map(str),
}

_PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=12),
    "string": st.text(max_size=12),
}

# Nesting of records, arrays and maps below the root in generated schemas: deep enough
# for lists of records of lists, small enough to keep the examples fast.
_GENERATED_DEPTH_MAX = 3


@dataclass
class _Draft:
    """The named types one generated schema has defined so far, by full name, for later
    references; ``namespace`` is the one the types being drawn now inherit."""

    named: list[tuple[str, st.SearchStrategy[Any]]] = field(default_factory=list)
    counter: int = 0
    namespace: str | None = None

    def name(self) -> str:
        self.counter += 1
        return f"T{self.counter}"

    def define(self, name: str, values: st.SearchStrategy[Any]) -> None:
        self.named.append((f"{self.namespace}.{name}" if self.namespace else name, values))

    def referable(self) -> list[tuple[str, st.SearchStrategy[Any]]]:
        """Inside a namespace a bare name means a name in that namespace, so a type of
        the null namespace cannot be referred to from there (Avro spec)."""
        if self.namespace is None:
            return self.named
        return [(name, values) for name, values in self.named if "." in name]


def _decimals(precision: int, scale: int) -> st.SearchStrategy[decimal.Decimal]:
    bound = 10**precision - 1
    # From text: Decimal arithmetic would round to the context's 28 digits.
    return st.integers(-bound, bound).map(lambda unscaled: decimal.Decimal(f"{unscaled}E-{scale}"))


def _fixed_decimal_precision_max(size: int) -> int:
    return min(38, math.floor(math.log10(2 ** (8 * size - 1) - 1)))


@st.composite
def _avro_type(draw: st.DrawFn, draft: _Draft, depth: int, optional_allowed: bool = True) -> tuple[Any, Any]:
    kinds = ["primitive", "primitive", "logical", "enum", "fixed", "decimal"]
    if depth < _GENERATED_DEPTH_MAX:
        kinds += ["record", "array", "map"]
    if optional_allowed:
        kinds += ["optional", "optional"]
    if draft.referable():
        kinds.append("reference")
    kind = draw(st.sampled_from(kinds))
    schema: dict[str, Any]
    if kind == "primitive":
        name = draw(st.sampled_from(sorted(_PRIMITIVE_VALUES)))
        return name, _PRIMITIVE_VALUES[name]
    if kind == "logical":
        underlying, logical = draw(st.sampled_from(sorted(_LOGICAL_VALUES)))
        return {"type": underlying, "logicalType": logical}, _LOGICAL_VALUES[(underlying, logical)]
    if kind == "enum":
        symbols = draw(st.lists(st.sampled_from(["A", "B", "C", "D", "E_1", "_f"]), min_size=1, unique=True))
        schema = {"type": "enum", "name": draft.name(), "symbols": symbols}
        values: st.SearchStrategy[Any] = st.sampled_from(symbols)
        draft.define(schema["name"], values)
        return schema, values
    if kind == "fixed":
        # Size 0 is left to the unit tests: arrays of it are refused at schema time.
        size = draw(st.integers(1, 6))
        schema = {"type": "fixed", "name": draft.name(), "size": size}
        values = st.binary(min_size=size, max_size=size)
        draft.define(schema["name"], values)
        return schema, values
    if kind == "decimal":
        if draw(st.booleans()):
            precision = draw(st.integers(1, 38))
            scale = draw(st.integers(0, precision))
            schema = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
            return schema, _decimals(precision, scale)
        size = draw(st.integers(1, 20))
        precision = draw(st.integers(1, _fixed_decimal_precision_max(size)))
        scale = draw(st.integers(0, precision))
        name = draft.name()
        schema = {
            "type": "fixed",
            "name": name,
            "size": size,
            "logicalType": "decimal",
            "precision": precision,
            "scale": scale,
        }
        values = _decimals(precision, scale)
        draft.define(name, values)
        return schema, values
    if kind == "record":
        return draw(_record(draft, depth + 1))
    if kind == "array":
        items, item_values = draw(_avro_type(draft, depth + 1))
        return {"type": "array", "items": items}, st.lists(item_values, max_size=4)
    if kind == "map":
        map_values, value_values = draw(_avro_type(draft, depth + 1))
        return {"type": "map", "values": map_values}, st.dictionaries(
            st.text(max_size=4), value_values, max_size=3
        )
    if kind == "optional":
        inner, inner_values = draw(_avro_type(draft, depth, optional_allowed=False))
        union = ["null", inner] if draw(st.booleans()) else [inner, "null"]
        return union, st.none() | inner_values
    name, values = draw(st.sampled_from(draft.referable()))
    return name, values


@st.composite
def _record(draw: st.DrawFn, draft: _Draft, depth: int) -> tuple[Any, Any]:
    name = draft.name()
    schema: dict[str, Any] = {"type": "record", "name": name}
    enclosing = draft.namespace
    if draw(st.booleans()):
        schema["namespace"] = draft.namespace = "shop.orders"
    # A record without fields takes no bytes, and arrays of it are refused at schema
    # time; it is covered by the unit tests.
    field_count = draw(st.integers(1, 5))
    fields = []
    strategies = {}
    for position in range(field_count):
        field_type, values = draw(_avro_type(draft, depth))
        fields.append({"name": f"f{position}", "type": field_type})
        strategies[f"f{position}"] = values
    schema["fields"] = fields
    values = st.fixed_dictionaries(strategies)
    draft.define(name, values)
    draft.namespace = enclosing
    return schema, values


@st.composite
def schemas_and_records(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    schema, values = draw(_record(_Draft(), 0))
    records = draw(st.lists(values, max_size=6))
    return schema, records


# ---------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------


def fastavro_payloads(schema: dict[str, Any], records: list[dict[str, Any]]) -> pa.Array:
    parsed = fastavro.parse_schema(schema)
    payloads = []
    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        payloads.append(buffer.getvalue())
    return pa.array(payloads, type=pa.binary())


def fastavro_records(schema: dict[str, Any], payloads: pa.Array) -> list[Any]:
    parsed = fastavro.parse_schema(schema)
    return [
        _plain(fastavro.schemaless_reader(io.BytesIO(payload), parsed, None))
        for payload in payloads.to_pylist()
    ]


def _plain(value: Any) -> Any:
    """fastavro's reading of a value in the forms pa.array accepts (uuid → text)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def expected_values(compiled: CompiledSchema, records: list[Any]) -> pa.StructArray:
    values = pa.array(records, type=compiled.value_type)
    assert isinstance(values, pa.StructArray)
    return values


_EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_EXAMPLES
@given(schemas_and_records())
def test_decode_reads_what_fastavro_writes(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    schema, records = case
    compiled = compile_avro(schema)
    decoded = compiled.codec.decode(fastavro_payloads(schema, records))
    assert decoded.equals(expected_values(compiled, records))
    compiled.codec.check(decoded)


@_EXAMPLES
@given(schemas_and_records())
def test_encode_writes_what_fastavro_reads(case: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    schema, records = case
    compiled = compile_avro(schema)
    values = expected_values(compiled, records)
    payloads = compiled.codec.encode(values)
    assert payloads.type == pa.binary()
    assert expected_values(compiled, fastavro_records(schema, payloads)).equals(values)
    assert payloads.equals(fastavro_payloads(schema, records))


@_EXAMPLES
@given(schemas_and_records(), st.data())
def test_decode_inverts_encode_on_slices(
    case: tuple[dict[str, Any], list[dict[str, Any]]], data: st.DataObject
) -> None:
    schema, records = case
    compiled = compile_avro(schema)
    values = expected_values(compiled, records)
    start = data.draw(st.integers(0, len(values)))
    length = data.draw(st.integers(0, len(values) - start))
    part = values.slice(start, length)
    payloads = compiled.codec.encode(part)
    assert compiled.codec.decode(payloads).equals(part)
    assert compiled.codec.decode(payloads.cast(pa.large_binary())).equals(part)
    assert compiled.codec.decode(pa.chunked_array([payloads], type=pa.binary())).equals(part)


# ---------------------------------------------------------------------------------------
# A fixed schema for hand-built payloads
# ---------------------------------------------------------------------------------------

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "note", "type": ["null", "string"]},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}],
                },
            },
        },
        {"name": "paid", "type": "boolean"},
    ],
}


def zigzag(number: int) -> bytes:
    """The Avro varint of a long, written by hand so bad payloads can be built around it."""
    raw = (number << 1) ^ (number >> 63)
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def text(value: bytes) -> bytes:
    return zigzag(len(value)) + value


def order(
    *,
    id_bytes: bytes | None = None,
    customer: bytes | None = None,
    status: bytes = zigzag(1),
    note: bytes = zigzag(0),
    items: bytes = zigzag(1) + text(b"sku-1") + zigzag(2) + zigzag(0),
    paid: bytes = b"\x01",
) -> bytes:
    return (
        (zigzag(7) if id_bytes is None else id_bytes)
        + (text(b"ada") if customer is None else customer)
        + status
        + note
        + items
        + paid
    )


@pytest.fixture(scope="module")
def orders() -> CompiledSchema:
    return compile_avro(ORDER)


def refusal(compiled: CompiledSchema, payloads: list[bytes]) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as caught:
        compiled.codec.decode(pa.array(payloads, type=pa.binary()))
    return caught.value


def test_a_good_hand_built_payload_decodes(orders: CompiledSchema) -> None:
    decoded = orders.codec.decode(pa.array([order()], type=pa.binary()))
    assert decoded.to_pylist() == [
        {
            "id": 7,
            "customer": "ada",
            "status": "PAID",
            "note": None,
            "items": [{"sku": "sku-1", "quantity": 2}],
            "paid": True,
        }
    ]


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (order()[:-1], "paid", "ends inside"),
        (order(customer=zigzag(100) + b"abc"), "customer", "larger than the bytes left"),
        (order(customer=zigzag(-1)), "customer", "negative"),
        (order(customer=text(b"\xff\xfe")), "customer", "UTF-8"),
        (order(id_bytes=b"\xff" * 10 + b"\x01"), "id", "longer than 10 bytes"),
        (order(status=zigzag(2)), "status", "enum index"),
        (order(status=zigzag(-1)), "status", "enum index"),
        (order(note=zigzag(2)), "note", "branch"),
        (order(note=zigzag(1) + text(b"\xc3")), "note", "UTF-8"),
        (order(paid=b"\x02"), "paid", "neither 0 nor 1"),
        (order(items=zigzag(1) + text(b"a") + zigzag(2**31) + zigzag(0)), "items[0].quantity", "32-bit"),
        (
            order(items=zigzag(2) + text(b"a") + zigzag(1) + text(b"b"), paid=b""),
            "items[1].quantity",
            "ends inside",
        ),
        (order(items=zigzag(2) + text(b"a") + zigzag(1) + text(b"b") + zigzag(1)), "items", "ends inside"),
        (order(items=zigzag(2**40)), "items", "bytes left"),
        (order(items=zigzag(-1) + zigzag(-5)), "items", "block size"),
    ],
)
def test_a_bad_payload_is_refused_with_its_index_and_path(
    orders: CompiledSchema, bad: bytes, path: str, words: str
) -> None:
    error = refusal(orders, [order(), order(), bad, order()])
    assert (error.index, error.path) == (2, path)
    assert words in error.message


def test_trailing_bytes_are_refused(orders: CompiledSchema) -> None:
    error = refusal(orders, [order(), order() + b"\x00"])
    assert error.index == 1
    assert "after its record" in error.message


def test_a_null_payload_is_refused(orders: CompiledSchema) -> None:
    with pytest.raises(SchemaViolation) as caught:
        orders.codec.decode(pa.array([order(), None], type=pa.binary()))
    assert caught.value.index == 1


def test_a_payload_array_of_another_type_is_refused(orders: CompiledSchema) -> None:
    with pytest.raises(SchemaViolation):
        orders.codec.decode(pa.array(["text"]))


def test_the_first_bad_record_is_named_even_when_a_later_one_fails_an_earlier_field(
    orders: CompiledSchema,
) -> None:
    # Record 3 breaks the last field, record 5 the first: fields are decoded in order,
    # so record 5's error is seen first, yet record 3 is the one to report.
    payloads = [order()] * 3 + [order(paid=b"\x07")] + [order()] + [order(id_bytes=b"\xff" * 11)]
    error = refusal(orders, payloads)
    assert (error.index, error.path) == (3, "paid")


def test_the_index_counts_within_a_sliced_array(orders: CompiledSchema) -> None:
    payloads = pa.array([order(paid=b"\x09"), order(), order(), order(paid=b"\x09")], type=pa.binary())
    with pytest.raises(SchemaViolation) as caught:
        orders.codec.decode(payloads.slice(1))
    assert (caught.value.index, caught.value.path) == (2, "paid")


def test_several_blocks_and_negative_counts_decode(orders: CompiledSchema) -> None:
    first = text(b"a") + zigzag(1)
    second = text(b"bb") + zigzag(2)
    third = text(b"c") + zigzag(3)
    items = zigzag(1) + first + zigzag(-2) + zigzag(len(second + third)) + second + third + zigzag(0)
    decoded = orders.codec.decode(pa.array([order(items=items), order(items=zigzag(0))], type=pa.binary()))
    assert decoded.field("items").to_pylist() == [
        [{"sku": "a", "quantity": 1}, {"sku": "bb", "quantity": 2}, {"sku": "c", "quantity": 3}],
        [],
    ]


def test_a_hostile_declared_length_is_refused_without_allocating(orders: CompiledSchema) -> None:
    hostile = [
        order(customer=zigzag(2**40)),
        order(items=zigzag(2**40)),
        order(items=zigzag(-(2**40)) + zigzag(2**40)),
        order(items=zigzag(1) + zigzag(2**40)),
    ]
    # Ten thousand good records around each bad one: the decoder's own arrays for them
    # are well under a megabyte each, while honouring a declared size would take a
    # terabyte.
    allocation_bound_bytes = 64 * 1024 * 1024
    for bad in hostile:
        payloads = pa.array([order()] * 10_000 + [bad], type=pa.binary())
        tracemalloc.start()
        try:
            with pytest.raises(SchemaViolation) as caught:
                orders.codec.decode(payloads)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert caught.value.index == 10_000
        assert peak < allocation_bound_bytes


MAPS_AND_LOGICAL = {
    "type": "record",
    "name": "Reading",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "labels", "type": {"type": "map", "values": ["null", "long"]}},
    ],
}


def test_maps_and_logical_types_decode_to_their_arrow_values() -> None:
    compiled = compile_avro(MAPS_AND_LOGICAL)
    record = {
        "at": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 5, 1),
        "price": decimal.Decimal("-12.34"),
        "labels": {"a": 1, "b": None},
    }
    decoded = compiled.codec.decode(fastavro_payloads(MAPS_AND_LOGICAL, [record]))
    assert decoded.to_pylist()[0]["labels"] == [("a", 1), ("b", None)]
    assert decoded.to_pylist()[0]["price"] == decimal.Decimal("-12.34")
    assert decoded.equals(expected_values(compiled, [record]))


def test_a_decimal_longer_than_sixteen_bytes_is_refused() -> None:
    compiled = compile_avro(MAPS_AND_LOGICAL)
    payload = zigzag(0) + zigzag(0) + text(b"\x01" * 17) + zigzag(0)
    with pytest.raises(SchemaViolation) as caught:
        compiled.codec.decode(pa.array([payload], type=pa.binary()))
    assert (caught.value.index, caught.value.path) == (0, "price")


def test_an_empty_batch_decodes_and_encodes() -> None:
    compiled = compile_avro(ORDER)
    decoded = compiled.codec.decode(pa.array([], type=pa.binary()))
    assert len(decoded) == 0 and decoded.type == compiled.value_type
    assert len(compiled.codec.encode(decoded)) == 0


def test_encode_refuses_a_null_where_avro_has_no_null(orders: CompiledSchema) -> None:
    good = orders.codec.decode(pa.array([order(), order()], type=pa.binary())).to_pylist()
    good[1]["items"][0]["sku"] = None
    # Arrow does not enforce a nested field's nullability when building an array.
    values = pa.array(good, type=orders.value_type)
    with pytest.raises(SchemaViolation) as caught:
        orders.codec.encode(values)
    assert (caught.value.index, caught.value.path) == (1, "items[0].sku")


NUMBERS = {
    "type": "record",
    "name": "Numbers",
    "fields": [
        {"name": "ints", "type": {"type": "array", "items": "int"}},
        {"name": "flags", "type": {"type": "array", "items": "boolean"}},
        {"name": "codes", "type": {"type": "array", "items": {"type": "fixed", "name": "Code", "size": 2}}},
    ],
}


def numbers(ints: bytes = zigzag(0), flags: bytes = zigzag(0), codes: bytes = zigzag(0)) -> bytes:
    return ints + flags + codes


def test_arrays_of_numbers_decode_block_by_block() -> None:
    compiled = compile_avro(NUMBERS)
    two = zigzag(5) + zigzag(-300)
    one = zigzag(2**30)
    ints = zigzag(2) + two + zigzag(-1) + zigzag(len(one)) + one + zigzag(1) + zigzag(-1) + zigzag(0)
    flags = zigzag(-3) + zigzag(3) + b"\x01\x00\x01" + zigzag(1) + b"\x00" + zigzag(0)
    codes = zigzag(1) + b"ab" + zigzag(1) + b"cd" + zigzag(0)
    payloads = pa.array([numbers(ints, flags, codes), numbers(), numbers(zigzag(1) + zigzag(7) + zigzag(0))])
    decoded = compiled.codec.decode(payloads.cast(pa.binary())).to_pylist()
    assert decoded == [
        {"ints": [5, -300, 2**30, -1], "flags": [True, False, True, False], "codes": [b"ab", b"cd"]},
        {"ints": [], "flags": [], "codes": []},
        {"ints": [7], "flags": [], "codes": []},
    ]


@pytest.mark.parametrize(
    ("bad", "path", "words"),
    [
        (
            numbers(ints=zigzag(3) + zigzag(1) + zigzag(2) + b"\xff" * 10 + b"\x01" + zigzag(0)),
            "ints[2]",
            "10 bytes",
        ),
        (numbers(ints=zigzag(2) + zigzag(1) + zigzag(2**31) + zigzag(0)), "ints[1]", "32-bit"),
        (
            numbers(ints=zigzag(2) + zigzag(1) + b"\x80\x80\x80", flags=b"", codes=b""),
            "ints[1]",
            "ends inside",
        ),
        (numbers(flags=zigzag(1) + b"\x01" + zigzag(2) + b"\x00\x05" + zigzag(0)), "flags[2]", "neither"),
        (numbers(codes=zigzag(2) + b"abc"), "codes", "bytes left"),
    ],
)
def test_a_bad_item_of_a_number_array_is_named(bad: bytes, path: str, words: str) -> None:
    compiled = compile_avro(NUMBERS)
    error = refusal(compiled, [numbers(), bad])
    assert (error.index, error.path) == (1, path)
    assert words in error.message
