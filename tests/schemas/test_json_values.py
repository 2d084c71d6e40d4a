"""JSON text ⇄ typed Arrow values (decode_json, encode_json).

Goal: encode_json gives, for every element of any nested type, a text that Python's
json reads back as the expected value; decode_json takes exactly the JSON objects that
fit the type and refuses every other payload with the first offending record's index
and the path of the offending field.

Method: hypothesis draws nested Arrow types and arrays of them (strings with quotes,
backslashes, control characters and non-BMP characters); each element's text is read
with ``json.loads`` and compared with the element's expected JSON value, and
decode(encode(x)) is compared with x for the types JSON represents exactly. Unit tests
cover each refusal and the forms of timestamps, dates, times, bytes and decimals.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.errors import SchemaViolation
from odradek.schemas.json_values import decode_json, encode_json

# -- strategies --------------------------------------------------------------------------

_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(
            ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "/", "\u2028", "😀"]
        ),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=12,
)

# Types whose values JSON represents exactly, so decode(encode(x)) == x.
_exact_leaves = st.sampled_from(
    [
        pa.int8(),
        pa.int32(),
        pa.int64(),
        pa.uint16(),
        pa.uint64(),
        pa.float64(),
        pa.bool_(),
        pa.string(),
        pa.large_string(),
        pa.binary(),
        pa.timestamp("ms", "UTC"),
        pa.timestamp("us"),
        pa.date32(),
        pa.time64("us"),
        pa.decimal128(9, 3),
    ]
)


def _names() -> st.SearchStrategy[list[str]]:
    return st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True)


def _types(leaves: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    def extend(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
        return st.one_of(
            children.map(pa.list_),
            children.map(pa.large_list),
            st.tuples(_names(), st.lists(children, min_size=4, max_size=4)).map(
                lambda pair: pa.struct(list(zip(pair[0], pair[1])))
            ),
        )

    return st.recursive(leaves, extend, max_leaves=6)


def _struct_types(leaves: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.StructType]:
    return st.tuples(_names(), st.lists(_types(leaves), min_size=4, max_size=4)).map(
        lambda pair: pa.struct(list(zip(pair[0], pair[1])))
    )


def _values(data_type: pa.DataType, finite: bool = False) -> st.SearchStrategy[Any]:
    """Python values Arrow takes for ``data_type`` (None included); ``finite``: no NaN
    or infinities, which JSON cannot carry."""
    if pa.types.is_struct(data_type):
        inner = st.fixed_dictionaries({field.name: _values(field.type, finite) for field in data_type})
    elif pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        inner = st.lists(_values(data_type.value_type, finite), max_size=3)
    elif pa.types.is_map(data_type):
        inner = st.dictionaries(_text, _values(data_type.item_type, finite), max_size=3).map(
            lambda d: list(d.items())
        )
    elif pa.types.is_boolean(data_type):
        inner = st.booleans()
    elif pa.types.is_integer(data_type):
        info = _integer_bounds(data_type)
        inner = st.integers(*info)
    elif pa.types.is_floating(data_type):
        width = 16 if pa.types.is_float16(data_type) else 32 if pa.types.is_float32(data_type) else 64
        inner = st.floats(width=width, allow_nan=not finite, allow_infinity=not finite)
    elif pa.types.is_decimal(data_type):
        inner = st.decimals(
            min_value=-(10 ** (data_type.precision - data_type.scale)) + 1,
            max_value=10 ** (data_type.precision - data_type.scale) - 1,
            places=data_type.scale,
            allow_nan=False,
            allow_infinity=False,
        )
    elif pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        inner = _text
    elif pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        inner = st.binary(max_size=8)
    elif pa.types.is_fixed_size_binary(data_type):
        inner = st.binary(min_size=data_type.byte_width, max_size=data_type.byte_width)
    elif pa.types.is_timestamp(data_type):
        inner = st.integers(-(10**12), 10**13)
    elif pa.types.is_date(data_type):
        inner = st.dates(min_value=datetime.date(1000, 1, 1))
    elif pa.types.is_time(data_type):
        inner = st.times()
    elif pa.types.is_duration(data_type):
        inner = st.integers(-(10**12), 10**12)
    else:
        raise AssertionError(data_type)
    return st.one_of(st.none(), inner)


def _integer_bounds(data_type: pa.DataType) -> tuple[int, int]:
    bits = data_type.bit_width
    if pa.types.is_unsigned_integer(data_type):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _expected_json(value: Any, data_type: pa.DataType) -> Any:
    """What the JSON text of one element must read back as."""
    if value is None:
        return None
    if pa.types.is_struct(data_type):
        return {field.name: _expected_json(value[field.name], field.type) for field in data_type}
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return [_expected_json(item, data_type.value_type) for item in value]
    if pa.types.is_map(data_type):
        return {key: _expected_json(item, data_type.item_type) for key, item in value}
    if pa.types.is_floating(data_type):
        if not math.isfinite(value):
            return None
        return value if pa.types.is_float64(data_type) else _Narrow(value)
    if pa.types.is_decimal(data_type):
        return decimal.Decimal(value)
    if (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    ):
        return base64.b64encode(value).decode()
    if pa.types.is_duration(data_type):
        return pa.scalar(value, data_type).cast(pa.int64()).as_py()
    if pa.types.is_timestamp(data_type):
        instant = value
        text = instant.replace(tzinfo=None).isoformat(
            timespec="microseconds" if data_type.unit != "s" else "seconds"
        )
        if data_type.unit == "ms":
            text = text[:-3]
        return text + ("Z" if data_type.tz else "")
    if pa.types.is_date(data_type):
        return value.isoformat()
    if pa.types.is_time(data_type):
        return value.isoformat(timespec="microseconds")
    return value


def _read_back(text: str) -> Any:
    return json.loads(text, parse_float=decimal.Decimal)


class _Narrow:
    """A float32 or float16 value: its text is the shortest that reads back as the same
    float32, so it compares through float32."""

    def __init__(self, value: float) -> None:
        self.value = value


def _same(left: Any, right: Any) -> bool:
    """Equality of JSON values where numbers compare by value (1 == 1.0 == Decimal(1))."""
    if isinstance(right, _Narrow):
        return isinstance(left, int | decimal.Decimal) and np.float32(left) == np.float32(right.value)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(right, float):
        return isinstance(left, int | decimal.Decimal) and float(left) == right
    if isinstance(left, int | decimal.Decimal) and isinstance(right, int | decimal.Decimal):
        return decimal.Decimal(left) == decimal.Decimal(right)
    return bool(left == right)


_encode_leaves = st.one_of(
    _exact_leaves,
    st.sampled_from([pa.float32(), pa.float16(), pa.binary(3), pa.large_binary(), pa.duration("ms")]),
)


@st.composite
def _arrays(
    draw: st.DrawFn, leaves: st.SearchStrategy[pa.DataType], finite: bool = False
) -> tuple[pa.DataType, list[Any]]:
    data_type = draw(_struct_types(leaves))
    values = draw(st.lists(_values(data_type, finite), max_size=6))
    return data_type, values


# -- encode_json ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_arrays(_encode_leaves), st.integers(0, 2))
def test_encode_json_gives_each_element_as_json(drawn: tuple[pa.DataType, list[Any]], sliced: int) -> None:
    data_type, values = drawn
    array = pa.array(values, data_type)
    # A slice exercises the offsets of every nested array.
    start = min(sliced, len(values))
    array, values = array.slice(start), values[start:]
    texts = encode_json(array)
    assert texts.type == pa.string()
    assert len(texts) == len(values)
    for text, scalar in zip(texts.to_pylist(), array):
        assert _same(_read_back(text), _expected_json(scalar.as_py(), data_type)), text


def test_encode_json_nulls_and_special_numbers() -> None:
    data_type = pa.struct([("x", pa.float64()), ("s", pa.struct([("a", pa.int8())]))])
    array = pa.array([{"x": math.nan, "s": None}, {"x": -math.inf, "s": {"a": None}}, None], data_type)
    assert encode_json(array).to_pylist() == ['{"x":null,"s":null}', '{"x":null,"s":{"a":null}}', "null"]


def test_encode_json_maps_as_objects() -> None:
    data_type = pa.struct([("m", pa.map_(pa.string(), pa.int64()))])
    array = pa.array([{"m": [('a"', 1), ("b", None)]}, {"m": []}, {"m": None}], data_type)
    texts = encode_json(array).to_pylist()
    assert [json.loads(t) for t in texts] == [{"m": {'a"': 1, "b": None}}, {"m": {}}, {"m": None}]


def test_encode_json_list_with_null_list_holding_a_range() -> None:
    """A null list may still span items in its offsets; they must not shift the others."""
    offsets = pa.array([0, 2, 3], pa.int32())
    lists = pa.ListArray.from_arrays(offsets, pa.array([1, 2, 3]), mask=pa.array([True, False]))
    assert encode_json(lists).to_pylist() == ["null", "[3]"]


def test_encode_json_timestamps_dates_times_decimals() -> None:
    data_type = pa.struct(
        [
            ("t", pa.timestamp("s", "Europe/Paris")),
            ("n", pa.timestamp("us")),
            ("d", pa.date32()),
            ("h", pa.time32("ms")),
            ("m", pa.decimal128(5, -2)),
            ("u", pa.duration("s")),
        ]
    )
    array = pa.array(
        [{"t": 0, "n": 1, "d": datetime.date(2024, 2, 29), "h": 1500, "m": decimal.Decimal(12300), "u": 7}],
        data_type,
    )
    assert json.loads(encode_json(array)[0].as_py()) == {
        "t": "1970-01-01T00:00:00Z",
        "n": "1970-01-01T00:00:00.000001",
        "d": "2024-02-29",
        "h": "00:00:01.500",
        "m": 12300,
        "u": 7,
    }


# -- decode_json ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_arrays(_exact_leaves, finite=True))
def test_decode_json_reads_back_what_encode_json_wrote(drawn: tuple[pa.DataType, list[Any]]) -> None:
    data_type, values = drawn
    # decode_json gives a record per payload: top-level nulls are not records.
    values = [value for value in values if value is not None]
    array = pa.array(values, data_type)
    decoded = decode_json(encode_json(array), data_type)
    assert decoded.type == data_type
    assert decoded.to_pylist() == array.to_pylist()


_ORDER = pa.struct(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field(
            "items",
            pa.list_(pa.struct([pa.field("sku", pa.string(), nullable=False), pa.field("n", pa.int32())])),
        ),
        pa.field("address", pa.struct([pa.field("city", pa.string(), nullable=False)])),
        pa.field("at", pa.timestamp("ms", "UTC")),
        pa.field("photo", pa.binary()),
    ]
)


def _decode(*payloads: str | bytes | None) -> pa.StructArray:
    encoded = [p.encode() if isinstance(p, str) else p for p in payloads]
    return decode_json(pa.array(encoded, pa.binary()), _ORDER)


_GOOD = '{"id": 1}'


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("null", ""),
        ("[1]", ""),
        ("5", ""),
        ('"x"', ""),
        ('{"id": 1} {"id": 2}', ""),
        ('{"id": 1}, {"id": 2}', ""),
        ('{"id": 1', ""),
        ('{"id": 1,}', ""),
        ('{"id": NaN}', ""),
        ('{"id": 1, "amount": Infinity}', ""),
        ('{"id": 1, "amount": NaN}', ""),
        ('{"id": 1, "id": 2}', ""),
        ('\ufeff{"id": 1}', ""),
        ('{"id": 1, "note": "a\nb"}', ""),
        ('{"id": 1, "note": "a\rb"}', ""),
        ('{"id": 1, "note": "a\tb"}', ""),
        ('{"id": "1"}', "id"),
        ('{"id": 1.5}', "id"),
        ('{"id": 1.0}', "id"),
        ('{"id": 1e3}', "id"),
        ('{"id": true}', "id"),
        ('{"id": 9223372036854775808}', "id"),
        ('{"id": -9223372036854775809}', "id"),
        ('{"id": 1, "amount": "1.5"}', "amount"),
        ('{"id": 1, "amount": 1e400}', "amount"),
        ('{"id": 1, "note": 5}', "note"),
        ('{"id": 1, "note": {"a": 1}}', "note"),
        ('{"id": 1, "note": ["a"]}', "note"),
        ('{"id": 1, "note": "\\ud800"}', "note"),
        ('{"id": 1, "tags": "a"}', "tags"),
        ('{"id": 1, "tags": ["a", 2]}', "tags[1]"),
        ('{"id": 1, "tags": [["a"]]}', "tags[0]"),
        ('{"id": 1, "items": [{"sku": "a"}, {"n": 2}]}', "items[1].sku"),
        ('{"id": 1, "items": [{"sku": "a", "n": 3000000000}]}', "items[0].n"),
        ('{"id": 1, "items": [{"sku": "a", "colour": "red"}]}', "items[0].colour"),
        ('{"id": 1, "address": {}}', "address.city"),
        ('{"id": 1, "address": {"city": null}}', "address.city"),
        ('{"id": 1, "address": {"city": "x", "zip": "1"}}', "address.zip"),
        ('{"id": 1, "address": "Paris"}', "address"),
        ('{"id": 1, "at": "yesterday"}', "at"),
        ('{"id": 1, "at": true}', "at"),
        ('{"id": 1, "photo": "not base64!"}', "photo"),
        ('{"id": 1, "photo": "abc"}', "photo"),
        ('{"id": 1, "photo": "ab=c"}', "photo"),
        ('{"id": 1, "unknown": 1}', "unknown"),
        ("{}", "id"),
        ('{"id": null}', "id"),
    ],
)
def test_decode_json_refuses_the_first_bad_record(payload: str | None, path: str) -> None:
    with pytest.raises(SchemaViolation) as raised:
        _decode(_GOOD, _GOOD, payload, _GOOD, '{"id": "later"}')
    assert raised.value.index == 2
    assert raised.value.path == path


def test_decode_json_refuses_invalid_utf8() -> None:
    with pytest.raises(SchemaViolation) as raised:
        _decode(_GOOD, b'{"id": 1, "note": "\xff"}')
    assert (raised.value.index, raised.value.path) == (1, "")


def test_decode_json_first_violation_wins_across_kinds() -> None:
    """A null required field (found after the native read) before a type error (which
    stops the native read) is still the one reported."""
    with pytest.raises(SchemaViolation) as raised:
        _decode(_GOOD, '{"id": null}', '{"id": "x"}')
    assert (raised.value.index, raised.value.path) == (1, "id")


def test_decode_json_accepts_json_whitespace_and_raw_line_breaks_between_tokens() -> None:
    decoded = _decode(' {"id":\n1,\r\n"note":\t"a"}\n', '{"id": 2}')
    assert decoded.to_pylist()[0]["note"] == "a"
    assert decoded.field("id").to_pylist() == [1, 2]


def test_decode_json_timestamp_forms() -> None:
    decoded = _decode(
        '{"id": 1, "at": "2024-01-02T03:04:05.678Z"}',
        '{"id": 2, "at": "2024-01-02T05:04:05.678+02:00"}',
    )
    assert decoded.field("at").cast(pa.int64()).to_pylist() == [1704164645678] * 2
    as_integers = _decode('{"id": 1, "at": 1704164645678}')
    assert as_integers.field("at").cast(pa.int64()).to_pylist() == [1704164645678]
    mixed = _decode('{"id": 1, "at": 1704164645678}', '{"id": 2, "at": "2024-01-02T03:04:05.678Z"}')
    assert mixed.field("at").cast(pa.int64()).to_pylist() == [1704164645678] * 2


def test_decode_json_bytes_dates_times_decimals_durations() -> None:
    data_type = pa.struct(
        [
            ("b", pa.binary()),
            ("f", pa.binary(2)),
            ("d", pa.date32()),
            ("t", pa.time64("us")),
            ("m", pa.decimal128(6, 2)),
            ("u", pa.duration("ms")),
            ("h", pa.float16()),
        ]
    )
    payload = (
        '{"b": "aGk=", "f": "AAE=", "d": "2024-02-29", "t": "23:59:59.25", "m": "12.5", "u": 5, "h": 0.5}'
    )
    decoded = decode_json(pa.array([payload, '{"m": 3}']), data_type)
    assert decoded.to_pylist()[0] == {
        "b": b"hi",
        "f": b"\x00\x01",
        "d": datetime.date(2024, 2, 29),
        "t": datetime.time(23, 59, 59, 250000),
        "m": decimal.Decimal("12.50"),
        "u": datetime.timedelta(milliseconds=5),
        "h": 0.5,
    }
    with pytest.raises(SchemaViolation) as raised:
        decode_json(pa.array(['{"m": 1.234}']), data_type)
    assert raised.value.path == "m"


def test_decode_json_maps() -> None:
    data_type = pa.struct([pa.field("m", pa.map_(pa.string(), pa.int64()))])
    decoded = decode_json(pa.array(['{"m": {"a": 1, "b": null}}', '{"m": null}']), data_type)
    assert decoded.to_pylist() == [{"m": [("a", 1), ("b", None)]}, {"m": None}]
    with pytest.raises(SchemaViolation) as raised:
        decode_json(pa.array(['{"m": {"a": 1}}', '{"m": {"a": "x"}}']), data_type)
    assert (raised.value.index, raised.value.path) == (1, 'm["a"]')


def test_decode_json_accepts_what_pythons_json_dumps_writes() -> None:
    """What a Python producer (Confluent's JSON serializer uses json.dumps) sends."""
    document = {"id": 7, "note": 'quote " back \\ tab \t nul \x00 emoji 😀', "amount": 1e-7, "tags": []}
    for ensure_ascii in (True, False):
        decoded = _decode(json.dumps(document, ensure_ascii=ensure_ascii))
        assert {k: v for k, v in decoded.to_pylist()[0].items() if k in document} == document


def test_decode_json_string_and_chunked_inputs() -> None:
    payloads = pa.chunked_array(
        [pa.array([_GOOD], pa.large_string()), pa.array(['{"id": 2}'], pa.large_string())]
    )
    assert decode_json(payloads, _ORDER).field("id").to_pylist() == [1, 2]
    assert len(decode_json(pa.array([], pa.binary()), _ORDER)) == 0


def test_decode_json_sliced_input() -> None:
    payloads = pa.array(['{"id": "bad"}', _GOOD, '{"id": 2}', '{"id": "bad"}'], pa.binary()).slice(1, 2)
    assert decode_json(payloads, _ORDER).field("id").to_pylist() == [1, 2]


def test_decode_json_refuses_deep_nesting_without_crashing() -> None:
    payload = '{"id": 1, "tags": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(SchemaViolation) as raised:
        _decode(payload)
    assert raised.value.index == 0
