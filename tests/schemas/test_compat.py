"""Goal: a schema change is refused exactly when a consumer could not read a record under
the topic's compatibility mode, with a readable line naming the path and the versions;
and data written under an older compatible type reads in the newer one.

Method: a table of single changes (one per rule, nested ones included), each checked in
every mode against the expected backward/forward verdict; ``check`` over histories for
the transitive modes; ``diff`` lines; hypothesis properties over random nested struct
types (a type is compatible with itself; an added nullable field is compatible both
ways; a removed required field breaks forward only) and over random chains of
backward-compatible edits, whose random data ``evolve`` must carry into the new type.
"""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.errors import InvalidRequest
from odradek.schemas.compat import MODES, check, diff, problems, validate_mode
from odradek.schemas.conform import evolve
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY


def default(value: Any) -> dict[bytes, bytes]:
    return {DEFAULT_KEY: json.dumps(value).encode()}


def enum(*symbols: str, default_symbol: str | None = None) -> dict[bytes, bytes]:
    metadata = {ENUM_KEY: json.dumps(list(symbols)).encode()}
    if default_symbol is not None:
        metadata[DEFAULT_KEY] = json.dumps(default_symbol).encode()
    return metadata


def record(*fields: pa.Field) -> pa.StructType:
    return pa.struct([pa.field("id", pa.int64(), nullable=False), *fields])


def one(name: str, data_type: pa.DataType, nullable: bool = True, metadata: Any = None) -> pa.StructType:
    return record(pa.field(name, data_type, nullable=nullable, metadata=metadata))


ADDRESS = pa.struct([pa.field("city", pa.string())])
ITEM = pa.struct([pa.field("sku", pa.string(), nullable=False)])

# (what changes, old, new, path named, breaks backward, breaks forward)
CHANGES = [
    ("add optional field", record(), one("note", pa.string()), None, False, False),
    ("add required field", record(), one("currency", pa.string(), False), "currency", True, False),
    (
        "add required field with default",
        record(),
        one("currency", pa.string(), False, default("EUR")),
        None,
        False,
        False,
    ),
    ("remove optional field", one("note", pa.string()), record(), None, False, False),
    ("remove required field", one("legacy", pa.int64(), False), record(), "legacy", False, True),
    (
        "remove required field with default",
        one("legacy", pa.int64(), False, default(0)),
        record(),
        None,
        False,
        False,
    ),
    ("int32 to int64", one("n", pa.int32()), one("n", pa.int64()), "n", False, True),
    ("int64 to int32", one("n", pa.int64()), one("n", pa.int32()), "n", True, False),
    ("int64 to double", one("n", pa.int64()), one("n", pa.float64()), "n", False, True),
    ("int8 to float32", one("n", pa.int8()), one("n", pa.float32()), "n", False, True),
    ("float to double", one("n", pa.float32()), one("n", pa.float64()), "n", False, True),
    ("uint8 to int16", one("n", pa.uint8()), one("n", pa.int16()), "n", False, True),
    ("int8 to uint16", one("n", pa.int8()), one("n", pa.uint16()), "n", True, True),
    ("string to bytes", one("s", pa.string()), one("s", pa.binary()), None, False, False),
    ("fixed bytes to bytes", one("s", pa.binary(4)), one("s", pa.binary()), "s", False, True),
    ("string to int", one("s", pa.string()), one("s", pa.int64()), "s", True, True),
    ("bool to int", one("s", pa.bool_()), one("s", pa.int64()), "s", True, True),
    (
        "finer timestamp",
        one("t", pa.timestamp("ms", "UTC")),
        one("t", pa.timestamp("us", "UTC")),
        "t",
        False,
        True,
    ),
    ("timestamp zone", one("t", pa.timestamp("ms", "UTC")), one("t", pa.timestamp("ms")), "t", True, True),
    ("wider decimal", one("d", pa.decimal128(10, 2)), one("d", pa.decimal128(12, 2)), "d", False, True),
    ("decimal scale up", one("d", pa.decimal128(10, 2)), one("d", pa.decimal128(10, 3)), "d", True, True),
    ("date32 to date64", one("d", pa.date32()), one("d", pa.date64()), "d", False, True),
    ("optional to required", one("n", pa.int64()), one("n", pa.int64(), False), "n", True, False),
    (
        "optional to required with default",
        one("n", pa.int64()),
        one("n", pa.int64(), False, default(1)),
        None,
        False,
        False,
    ),
    ("required to optional", one("n", pa.int64(), False), one("n", pa.int64()), "n", False, True),
    (
        "required with default to optional",
        one("n", pa.int64(), False, default(1)),
        one("n", pa.int64()),
        None,
        False,
        False,
    ),
    (
        "enum loses a symbol",
        one("e", pa.string(), metadata=enum("A", "B")),
        one("e", pa.string(), metadata=enum("A")),
        "e",
        True,
        False,
    ),
    (
        "enum gains a symbol",
        one("e", pa.string(), metadata=enum("A")),
        one("e", pa.string(), metadata=enum("A", "B")),
        "e",
        False,
        True,
    ),
    (
        "enum loses a symbol but has a default",
        one("e", pa.string(), metadata=enum("A", "B")),
        one("e", pa.string(), metadata=enum("A", default_symbol="A")),
        None,
        False,
        False,
    ),
    (
        "enum gains a symbol the old one defaults",
        one("e", pa.string(), metadata=enum("A", default_symbol="A")),
        one("e", pa.string(), metadata=enum("A", "B")),
        None,
        False,
        False,
    ),
    (
        "string becomes an enum",
        one("e", pa.string()),
        one("e", pa.string(), metadata=enum("A")),
        "e",
        True,
        False,
    ),
    (
        "enum becomes a string",
        one("e", pa.string(), metadata=enum("A")),
        one("e", pa.string()),
        "e",
        False,
        True,
    ),
    (
        "nested field added required",
        one("address", ADDRESS),
        one("address", pa.struct([*ADDRESS, pa.field("zip", pa.string(), nullable=False)])),
        "address.zip",
        True,
        False,
    ),
    (
        "nested field type narrowed",
        one("address", pa.struct([pa.field("n", pa.int64())])),
        one("address", pa.struct([pa.field("n", pa.int16())])),
        "address.n",
        True,
        False,
    ),
    (
        "list item widened",
        one("items", pa.list_(pa.int32())),
        one("items", pa.list_(pa.int64())),
        "items[]",
        False,
        True,
    ),
    (
        "list item struct field added required",
        one("items", pa.list_(ITEM)),
        one("items", pa.list_(pa.struct([*ITEM, pa.field("qty", pa.int32(), nullable=False)]))),
        "items[].qty",
        True,
        False,
    ),
    (
        "list items become required",
        one("tags", pa.list_(pa.string())),
        one("tags", pa.list_(pa.field("item", pa.string(), nullable=False))),
        "tags[]",
        True,
        False,
    ),
    (
        "list to large list",
        one("tags", pa.list_(pa.string())),
        one("tags", pa.large_list(pa.string())),
        None,
        False,
        False,
    ),
    ("fixed list to list", one("p", pa.list_(pa.int8(), 2)), one("p", pa.list_(pa.int8())), "p", False, True),
    (
        "map value widened",
        one("attributes", pa.map_(pa.string(), pa.int32())),
        one("attributes", pa.map_(pa.string(), pa.int64())),
        "attributes[]",
        False,
        True,
    ),
    (
        "map value struct field removed",
        one("attributes", pa.map_(pa.string(), ITEM)),
        one("attributes", pa.map_(pa.string(), pa.struct([pa.field("other", pa.string())]))),
        "attributes[].sku",
        False,
        True,
    ),
    ("struct to int", one("address", ADDRESS), one("address", pa.int64()), "address", True, True),
    ("list to string", one("tags", pa.list_(pa.string())), one("tags", pa.string()), "tags", True, True),
]


@pytest.mark.parametrize(
    ("old", "new", "path", "breaks_backward", "breaks_forward"),
    [change[1:] for change in CHANGES],
    ids=[change[0] for change in CHANGES],
)
def test_each_rule_in_each_mode(
    old: pa.StructType, new: pa.StructType, path: str | None, breaks_backward: bool, breaks_forward: bool
) -> None:
    expected = {
        "backward": breaks_backward,
        "forward": breaks_forward,
        "full": breaks_backward or breaks_forward,
        "none": False,
    }
    for mode, breaks in expected.items():
        for spelling in (mode, f"{mode}_transitive" if mode != "none" else "NONE"):
            found = problems(old, new, spelling, old_version=3)
            assert bool(found) == breaks, (spelling, found)
            for line in found:
                assert f"`{path}`" in line and "version 3" in line
    assert bool(problems(old, new, "backward")) == bool(problems(new, old, "forward"))


def test_problem_line_reads_well() -> None:
    found = problems(record(), one("currency", pa.string(), False), "backward", old_version=1)
    assert found == [
        "field `currency` was added without a default and is required: records written with version 1 "
        "have no value for it (give it a default or make it optional)"
    ]


def test_problems_without_versions_name_the_previous_schema() -> None:
    (line,) = problems(one("n", pa.int64()), one("n", pa.int32()), "backward")
    assert "the previous schema" in line and "int64" in line and "int32" in line


def test_full_mode_reports_both_directions() -> None:
    old = one("legacy", pa.int64(), False)
    new = pa.struct([*old, pa.field("currency", pa.string(), nullable=False)])
    new = pa.struct([field for field in new if field.name != "legacy"])
    found = problems(old, new, "full", old_version=1)
    assert len(found) == 2
    assert any("`currency`" in line for line in found) and any("`legacy`" in line for line in found)


@pytest.mark.parametrize("spelling", ["BACKWARD", "Full_Transitive", " forward ", "none"])
def test_validate_mode_accepts_any_case(spelling: str) -> None:
    assert validate_mode(spelling) == spelling.strip().lower()


def test_validate_mode_refuses_unknown_and_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_mode("sideways")
    assert all(mode in caught.value.message for mode in MODES)
    with pytest.raises(InvalidRequest):
        problems(record(), record(), "sideways")


def test_check_non_transitive_compares_with_the_latest_only() -> None:
    version_1 = one("n", pa.int64(), False)
    version_2 = record()  # removed n: backward-compatible
    version_3 = one("n", pa.string())  # n back, optional, as text
    assert check([version_1, version_2], version_3, "backward") == []
    transitive = check([version_1, version_2], version_3, "backward_transitive")
    assert len(transitive) == 1 and "version 1" in transitive[0] and "`n`" in transitive[0]


def test_check_numbers_versions_from_one_and_compares_every_one_when_transitive() -> None:
    history = [one("n", pa.int64()), one("n", pa.int64()), one("n", pa.int64())]
    found = check(history, one("n", pa.int8()), "full_transitive")
    assert [line for line in found if "version 1" in line]
    assert [line for line in found if "version 3" in line]
    assert not [line for line in found if "version 4" in line or "version 0" in line]
    assert all("version 3" in line for line in check(history, one("n", pa.int8()), "full"))


def test_check_first_version_and_none_mode() -> None:
    assert check([], one("n", pa.int8(), False), "full_transitive") == []
    assert check([record()], one("n", pa.int8(), False), "none") == []


def test_diff_lists_additions_removals_and_changes() -> None:
    old = pa.struct(
        [
            pa.field("amount", pa.int32()),
            pa.field("legacy_id", pa.int64()),
            pa.field("status", pa.string(), metadata=enum("PAID", "REFUNDED")),
            pa.field("note", pa.string()),
            pa.field("address", ADDRESS),
        ]
    )
    new = pa.struct(
        [
            pa.field("amount", pa.int64()),
            pa.field("status", pa.string(), metadata=enum("PAID", "PARTIAL")),
            pa.field("note", pa.string(), nullable=False, metadata=default("")),
            pa.field("address", pa.struct([*ADDRESS, pa.field("zip", pa.string())])),
            pa.field("currency", pa.string()),
        ]
    )
    assert diff(old, new) == [
        "- legacy_id: int64",
        "~ amount: int32 → int64",
        "~ status: enum symbols \N{MINUS SIGN}REFUNDED +PARTIAL",
        "~ note: optional → required",
        '~ note: default none → ""',
        "+ address.zip: string (optional)",
        "+ currency: string (optional)",
    ]
    assert diff(old, old) == []


# --- properties ------------------------------------------------------------------------

LEAF_TYPES = [
    pa.bool_(),
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.float32(),
    pa.float64(),
    pa.string(),
    pa.binary(),
    pa.timestamp("ms", "UTC"),
    pa.date32(),
    pa.decimal128(9, 2),
]
NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])


def struct_of(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.StructType]:
    field = st.builds(pa.field, NAMES, children, st.booleans())
    return st.lists(field, min_size=1, max_size=4, unique_by=lambda item: item.name).map(pa.struct)


data_types: st.SearchStrategy[pa.DataType] = st.recursive(
    st.sampled_from(LEAF_TYPES),
    lambda children: st.one_of(
        struct_of(children),
        st.builds(pa.list_, children),
        st.builds(lambda item: pa.map_(pa.string(), item), children),
    ),
    max_leaves=8,
)
struct_types = struct_of(data_types)


@settings(max_examples=150, deadline=None)
@given(struct_types, st.sampled_from(MODES))
def test_a_type_is_compatible_with_itself(value_type: pa.StructType, mode: str) -> None:
    assert problems(value_type, value_type, mode) == []
    assert diff(value_type, value_type) == []


@settings(max_examples=150, deadline=None)
@given(struct_types, data_types, st.sampled_from(MODES))
def test_adding_an_optional_field_is_compatible_both_ways(
    value_type: pa.StructType, added_type: pa.DataType, mode: str
) -> None:
    new = pa.struct([*value_type, pa.field("added", added_type, nullable=True)])
    assert problems(value_type, new, mode) == []


@settings(max_examples=150, deadline=None)
@given(struct_types, data_types)
def test_removing_a_required_field_breaks_forward_only(
    value_type: pa.StructType, removed_type: pa.DataType
) -> None:
    old = pa.struct([*value_type, pa.field("removed", removed_type, nullable=False)])
    assert problems(old, value_type, "backward") == []
    assert problems(old, value_type, "forward") != []
    assert problems(old, value_type, "full") != []


# Backward-compatible promotions the edits below may apply to a leaf field.
PROMOTIONS = {
    pa.int8(): [pa.int16(), pa.int32(), pa.int64(), pa.float64()],
    pa.int16(): [pa.int32(), pa.float32()],
    pa.int32(): [pa.int64(), pa.float64()],
    pa.int64(): [pa.float64()],
    pa.uint8(): [pa.int16(), pa.uint32()],
    pa.float32(): [pa.float64()],
    pa.string(): [pa.binary(), pa.large_string()],
    pa.timestamp("ms", "UTC"): [pa.timestamp("us", "UTC")],
    pa.date32(): [pa.date64()],
    pa.decimal128(9, 2): [pa.decimal128(12, 3)],
}
# Added required fields get one of these (type, default).
DEFAULTS = [(pa.int64(), 7), (pa.string(), "x"), (pa.list_(pa.int32()), [1, 2]), (pa.float64(), None)]


@st.composite
def backward_edit(draw: st.DrawFn, value_type: pa.StructType) -> pa.StructType:
    """``value_type`` after random backward-compatible edits, in nested structs too."""
    fields = []
    for item in value_type:
        choice = draw(st.sampled_from(["keep", "remove", "promote", "optional", "nested"]))
        if choice == "remove" and len(value_type) > 1:
            continue
        if choice == "promote" and item.type in PROMOTIONS:
            item = item.with_type(draw(st.sampled_from(PROMOTIONS[item.type])))
        elif choice == "optional":
            item = item.with_nullable(True)
        elif choice == "nested" and pa.types.is_struct(item.type):
            item = item.with_type(draw(backward_edit(item.type)))
        fields.append(item)
    for position in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            fields.append(pa.field(f"added_{position}", draw(data_types), nullable=True))
        else:
            added_type, value = draw(st.sampled_from(DEFAULTS))
            fields.append(pa.field(f"added_{position}", added_type, nullable=False, metadata=default(value)))
    return pa.struct(fields)


def python_values(data_type: pa.DataType, nullable: bool) -> st.SearchStrategy[Any]:
    """Random Python values Arrow converts to ``data_type``."""
    values: st.SearchStrategy[Any]
    if pa.types.is_struct(data_type):
        values = st.fixed_dictionaries(
            {item.name: python_values(item.type, item.nullable) for item in data_type}
        )
    elif pa.types.is_map(data_type):
        values = st.dictionaries(
            st.text(max_size=3), python_values(data_type.item_type, True), max_size=3
        ).map(lambda mapping: list(mapping.items()))
    elif pa.types.is_list(data_type):
        values = st.lists(python_values(data_type.value_type, True), max_size=3)
    elif pa.types.is_boolean(data_type):
        values = st.booleans()
    elif pa.types.is_integer(data_type):
        bits = data_type.bit_width
        low, high = (
            (0, 2**bits - 1)
            if pa.types.is_unsigned_integer(data_type)
            else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        values = st.integers(low, high)
    elif pa.types.is_floating(data_type):
        values = st.floats(allow_nan=False, width=data_type.bit_width)
    elif pa.types.is_string(data_type):
        values = st.text(max_size=5)
    elif pa.types.is_binary(data_type):
        values = st.binary(max_size=5)
    elif pa.types.is_timestamp(data_type):
        values = st.integers(-(10**12), 10**12)
    elif pa.types.is_date32(data_type):
        values = st.dates()
    elif pa.types.is_decimal(data_type):
        values = st.decimals(
            min_value=-9999999, max_value=9999999, places=2, allow_nan=False, allow_infinity=False
        )
    else:
        raise AssertionError(f"no values for {data_type}")
    return st.one_of(st.none(), values) if nullable else values


def expected_value(value: Any, old_type: pa.DataType, new_field: pa.Field) -> Any:
    """What ``evolve`` should make of one old value, computed record by record."""
    new_type = new_field.type
    if value is None:
        return None
    if pa.types.is_struct(new_type):
        old_fields = {item.name: item for item in old_type}
        result = {}
        for item in new_type:
            if item.name in old_fields:
                result[item.name] = expected_value(value[item.name], old_fields[item.name].type, item)
            else:
                metadata = item.metadata or {}
                result[item.name] = json.loads(metadata[DEFAULT_KEY]) if DEFAULT_KEY in metadata else None
        return result
    if pa.types.is_map(new_type):
        return [(key, expected_value(item, old_type.item_type, new_type.item_field)) for key, item in value]
    if pa.types.is_list(new_type):
        return [expected_value(item, old_type.value_type, new_type.value_field) for item in value]
    if pa.types.is_floating(new_type) and pa.types.is_integer(old_type):
        return float(value)
    if pa.types.is_binary(new_type) and isinstance(value, str):
        return value.encode()
    if pa.types.is_timestamp(new_type) and new_type.unit == "us" and old_type.unit == "ms":
        return value * 1000  # milliseconds read as microseconds
    if pa.types.is_date64(new_type):
        return datetime.datetime.combine(value, datetime.time())
    if isinstance(value, decimal.Decimal):
        return value
    return value


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_evolve_carries_data_through_backward_compatible_edits(data: st.DataObject) -> None:
    old = data.draw(struct_types)
    new = data.draw(backward_edit(old))
    assert problems(old, new, "backward") == []
    rows = data.draw(st.lists(python_values(old, False), max_size=6))
    old_values = pa.array(rows, old)
    evolved = evolve(old_values, new)
    assert evolved.type.equals(new, check_metadata=True)
    expected = pa.array([expected_value(row, old, pa.field("value", new)) for row in rows], new)
    assert evolved.equals(expected)
