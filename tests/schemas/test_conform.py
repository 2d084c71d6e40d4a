"""Goal: values reach a topic only as exactly its value type, and every refusal names the
first offending record and the path inside it; older data reads in a newer type.

Method: small hand-built arrays for each rule of ``check_nulls``, ``conform_struct``,
``values_from_python`` and ``evolve``, each asserting the violation's index and path
(nested structs, list items, map values, nulls hidden under null parents, sliced
arrays); a hypothesis property compares ``check_nulls`` with a plain Python scan of
random records.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.conform import (
    check_nulls,
    check_values,
    conform_struct,
    default_of,
    evolve,
    values_from_python,
)
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY

ITEM = pa.struct([pa.field("sku", pa.string(), nullable=False), pa.field("quantity", pa.int32())])
ORDER = pa.struct(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("address", pa.struct([pa.field("city", pa.string(), nullable=False)])),
        pa.field("items", pa.list_(ITEM)),
        pa.field("attributes", pa.map_(pa.string(), ITEM)),
        pa.field("tags", pa.list_(pa.field("item", pa.string(), nullable=False))),
    ]
)
GOOD = [
    {"id": 1, "address": {"city": "Prague"}, "items": [{"sku": "a", "quantity": 1}], "tags": ["x"]},
    {"id": 2, "address": None, "items": None, "attributes": {"color": {"sku": "c"}}},
]


def violation(function: Any, *arguments: Any) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as caught:
        function(*arguments)
    return caught.value


# --- check_nulls -----------------------------------------------------------------------


def test_check_nulls_accepts_conforming_values() -> None:
    check_nulls(pa.array(GOOD, ORDER), ORDER)


def test_check_nulls_top_level_required_field() -> None:
    error = violation(check_nulls, pa.array([*GOOD, {"id": None}], ORDER), ORDER)
    assert (error.index, error.path) == (2, "id")


def test_check_nulls_null_value_itself() -> None:
    error = violation(check_nulls, pa.array([*GOOD, None], ORDER), ORDER)
    assert (error.index, error.path) == (2, "")


def test_check_nulls_nested_struct_field() -> None:
    values = pa.array([*GOOD, {"id": 3, "address": {"city": None}}], ORDER)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (2, "address.city")


def test_check_nulls_null_optional_parent_hides_required_child() -> None:
    # A null address leaves its required city null underneath: not a violation.
    city = pa.array([None, "Brno"], pa.string())
    address = pa.StructArray.from_arrays(
        [city], fields=list(ORDER.field("address").type), mask=pa.array([True, False])
    )
    values = pa.StructArray.from_arrays(
        [
            pa.array([1, 2]),
            address,
            *(pa.nulls(2, ORDER.field(name).type) for name in ("items", "attributes", "tags")),
        ],
        fields=list(ORDER),
    )
    check_nulls(values, ORDER)


def test_check_nulls_list_item_field_with_position() -> None:
    items = [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}, {"sku": None}]
    values = pa.array([*GOOD, {"id": 3, "items": [{"sku": "z"}]}, {"id": 4, "items": items}], ORDER)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (3, "items[3].sku")


def test_check_nulls_required_list_item() -> None:
    values = pa.array([*GOOD, {"id": 3, "tags": ["a", None]}], ORDER)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (2, "tags[1]")


def test_check_nulls_map_value_field_names_the_key() -> None:
    values = pa.array([*GOOD, {"id": 3, "attributes": {"size": {"sku": "s"}, "color": {"sku": None}}}], ORDER)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (2, 'attributes["color"].sku')


def test_check_nulls_nested_lists() -> None:
    matrix_type = pa.struct(
        [pa.field("rows", pa.list_(pa.list_(pa.field("item", pa.struct([pa.field("v", pa.int8(), False)])))))]
    )
    values = pa.array(
        [{"rows": [[{"v": 1}]]}, {"rows": [[{"v": 1}], [{"v": 2}, {"v": None}]]}, {"rows": [[{"v": None}]]}],
        matrix_type,
    )
    error = violation(check_nulls, values, matrix_type)
    assert (error.index, error.path) == (1, "rows[1][1].v")


def test_check_nulls_reports_the_lowest_record_across_fields() -> None:
    values = pa.array([GOOD[0], {"id": 2, "items": [{"sku": None}]}, {"id": None}], ORDER)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (1, "items[0].sku")


def test_check_nulls_index_is_within_a_sliced_array() -> None:
    values = pa.array([{"id": None}, *GOOD, {"id": 3, "address": {"city": None}}], ORDER).slice(1)
    error = violation(check_nulls, values, ORDER)
    assert (error.index, error.path) == (2, "address.city")


# --- check_values: required fields and enum symbols ------------------------------------

STATUS = {ENUM_KEY: b'["PAID", "REFUNDED"]'}
ENUMS = pa.struct(
    [
        pa.field("status", pa.string(), metadata=STATUS),
        pa.field("history", pa.list_(pa.field("item", pa.string(), metadata=STATUS))),
        pa.field("by_day", pa.map_(pa.string(), pa.field("value", pa.string(), metadata=STATUS))),
        pa.field("id", pa.int64(), nullable=False),
    ]
)


def test_check_values_accepts_symbols_and_nulls() -> None:
    rows = [
        {"status": "PAID", "history": ["PAID", None], "by_day": [("mon", "REFUNDED")], "id": 1},
        {"id": 2},
    ]
    check_values(pa.array(rows, ENUMS), ENUMS)


@pytest.mark.parametrize(
    ("row", "path"),
    [
        ({"status": "LOST", "id": 1}, "status"),
        ({"history": ["PAID", "LOST"], "id": 1}, "history[1]"),
        ({"by_day": [("tue", "LOST")], "id": 1}, 'by_day["tue"]'),
        ({"status": "PAID"}, "id"),
    ],
)
def test_check_values_names_the_bad_symbol_or_missing_value(row: dict[str, Any], path: str) -> None:
    values = pa.array([{"status": "PAID", "id": 0}, row], ENUMS)
    error = violation(check_values, values, ENUMS)
    assert (error.index, error.path) == (1, path)
    if path != "id":
        check_nulls(values, ENUMS)  # a bad symbol is not a missing value


def test_check_values_refuses_a_null_record() -> None:
    error = violation(check_values, pa.array([{"id": 1}, None], ENUMS), ENUMS)
    assert (error.index, error.path) == (1, "")


# --- conform_struct --------------------------------------------------------------------


def test_conform_exact_type_returns_the_same_array() -> None:
    values = pa.array(GOOD, ORDER)
    assert conform_struct(values, ORDER) is values


def test_conform_exact_type_still_checks_nulls() -> None:
    error = violation(conform_struct, pa.array([*GOOD, {"id": None}], ORDER), ORDER)
    assert (error.index, error.path) == (2, "id")


def test_conform_missing_fields_become_null_and_fields_reorder() -> None:
    source = pa.array(
        [{"tags": ["t"], "id": 7}], pa.struct([("tags", pa.list_(pa.string())), ("id", pa.int32())])
    )
    result = conform_struct(source, ORDER)
    assert result.type.equals(ORDER, check_metadata=True)
    assert result.to_pylist() == [
        {"id": 7, "address": None, "items": None, "attributes": None, "tags": ["t"]}
    ]


def test_conform_missing_required_field_is_refused() -> None:
    source = pa.array([{"tags": ["t"]}], pa.struct([("tags", pa.list_(pa.string()))]))
    error = violation(conform_struct, source, ORDER)
    assert (error.index, error.path) == (0, "id")


def test_conform_keeps_field_metadata_of_the_schema() -> None:
    target = pa.struct([pa.field("n", pa.int64(), metadata={DEFAULT_KEY: b"3"})])
    result = conform_struct(pa.array([{"n": 1}], pa.struct([("n", pa.int32())])), target)
    assert result.type.equals(target, check_metadata=True)


def test_conform_extra_field_index_is_first_non_null() -> None:
    source = pa.array(
        [{"id": 1, "note": None}, {"id": 2, "note": "x"}],
        pa.struct([("id", pa.int64()), ("note", pa.string())]),
    )
    error = violation(conform_struct, source, ORDER)
    assert (error.index, error.path) == (1, "note")


def test_conform_extra_field_all_null_is_refused_at_zero() -> None:
    source = pa.array([{"id": 1, "note": None}], pa.struct([("id", pa.int64()), ("note", pa.string())]))
    error = violation(conform_struct, source, ORDER)
    assert (error.index, error.path) == (0, "note")


def test_conform_extra_field_inside_list_items() -> None:
    item = pa.struct([("sku", pa.string()), ("colour", pa.string())])
    source_type = pa.struct([("id", pa.int64()), ("items", pa.list_(item))])
    source = pa.array(
        [
            {"id": 1, "items": [{"sku": "a"}]},
            {"id": 2, "items": [{"sku": "b"}, {"sku": "c", "colour": "red"}]},
        ],
        source_type,
    )
    error = violation(conform_struct, source, ORDER)
    assert (error.index, error.path) == (1, "items[1].colour")


@pytest.mark.parametrize(
    ("source_type", "values", "target_type", "expected"),
    [
        (pa.int32(), [1, None, -5], pa.int64(), [1, None, -5]),
        (pa.int64(), [1, 2**31 - 1], pa.int32(), [1, 2**31 - 1]),
        (pa.int16(), [3], pa.float64(), [3.0]),
        (pa.float64(), [2.0, -4.0], pa.int32(), [2, -4]),
        (pa.float32(), [1.5], pa.float64(), [1.5]),
        (pa.string(), ["é"], pa.binary(), ["é".encode()]),
        (pa.binary(), [b"ok"], pa.string(), ["ok"]),
        (pa.string(), ["a"], pa.large_string(), ["a"]),
        (pa.timestamp("s", "UTC"), [1], pa.timestamp("ms", "UTC"), [1000]),
        (pa.timestamp("ms"), [2000], pa.timestamp("s"), [2]),
    ],
)
def test_conform_lossless_casts(
    source_type: pa.DataType, values: list[Any], target_type: pa.DataType, expected: list[Any]
) -> None:
    source = pa.StructArray.from_arrays([pa.array(values, source_type)], names=["v"])
    target = pa.struct([pa.field("v", target_type)])
    result = conform_struct(source, target)
    assert result.type == target
    if pa.types.is_timestamp(target_type):
        assert result.field("v").cast(pa.int64()).to_pylist() == expected
    else:
        assert result.field("v").to_pylist() == expected


@pytest.mark.parametrize(
    ("source_type", "values", "target_type", "bad_index"),
    [
        (pa.int64(), [1, 2, 2**31], pa.int32(), 2),
        (pa.int32(), [0, -1], pa.uint8(), 1),
        (pa.float64(), [1.0, 2.5], pa.int64(), 1),
        (pa.float64(), [1.0, float("nan")], pa.int64(), 1),
        (pa.binary(), [b"a", b"b", b"\xff"], pa.string(), 2),
        (pa.timestamp("ms"), [1000, 1500], pa.timestamp("s"), 1),
        (pa.float64(), [1.0, 1e300], pa.float32(), 1),
        (pa.int64(), [1, 2**53 + 1], pa.float64(), 1),
    ],
)
def test_conform_lossy_casts_name_the_first_bad_value(
    source_type: pa.DataType, values: list[Any], target_type: pa.DataType, bad_index: int
) -> None:
    source = pa.StructArray.from_arrays([pa.array(values, source_type)], names=["v"])
    error = violation(conform_struct, source, pa.struct([pa.field("v", target_type)]))
    assert (error.index, error.path) == (bad_index, "v")


@pytest.mark.parametrize(
    ("source", "target_type"),
    [
        (pa.array(["2020-01-01"]), pa.timestamp("s")),
        (pa.array([True]), pa.int8()),
        (pa.array([1]), pa.string()),
        (pa.array([1], pa.timestamp("s")), pa.timestamp("s", "UTC")),
        (pa.array([[1]]), pa.int64()),
        (pa.array([1]), pa.list_(pa.int64())),
    ],
)
def test_conform_refuses_casts_that_parse_or_reinterpret(source: pa.Array, target_type: pa.DataType) -> None:
    values = pa.StructArray.from_arrays([source], names=["v"])
    error = violation(conform_struct, values, pa.struct([pa.field("v", target_type)]))
    assert (error.index, error.path) == (0, "v")


def test_conform_cast_error_inside_list_names_record_and_position() -> None:
    source_item = pa.struct([("sku", pa.string()), ("quantity", pa.int64())])
    source = pa.array(
        [
            {"id": 1, "items": [{"sku": "a", "quantity": 1}]},
            {"id": 2, "items": [{"sku": "a", "quantity": 5}, {"sku": "b", "quantity": 2**40}]},
        ],
        pa.struct([("id", pa.int64()), ("items", pa.list_(source_item))]),
    )
    error = violation(conform_struct, source, ORDER)
    assert (error.index, error.path) == (1, "items[1].quantity")


def test_conform_ignores_filler_under_null_parents() -> None:
    # The child slot under a null struct holds a value too large for int32: not data.
    quantity = pa.array([2**40, 3], pa.int64())
    item = pa.StructArray.from_arrays(
        [pa.array(["a", "b"]), quantity], names=["sku", "quantity"], mask=pa.array([True, False])
    )
    source = pa.StructArray.from_arrays([pa.array([1, 2]), item], names=["id", "address_like"])
    target = pa.struct([pa.field("id", pa.int64()), pa.field("address_like", ITEM)])
    result = conform_struct(source, target)
    assert result.to_pylist() == [
        {"id": 1, "address_like": None},
        {"id": 2, "address_like": {"sku": "b", "quantity": 3}},
    ]


def test_conform_map_values_and_list_kinds() -> None:
    source_type = pa.struct(
        [
            ("id", pa.int32()),
            ("attributes", pa.map_(pa.string(), pa.struct([("sku", pa.string()), ("quantity", pa.int8())]))),
            ("tags", pa.large_list(pa.string())),
        ]
    )
    rows = [{"id": 1, "attributes": [("k", {"sku": "s", "quantity": 2})], "tags": ["a", "b"]}, {"id": 2}]
    result = conform_struct(pa.array(rows, source_type), ORDER)
    assert result.type.equals(ORDER, check_metadata=True)
    assert result.to_pylist()[0]["attributes"] == [("k", {"sku": "s", "quantity": 2})]
    assert result.to_pylist()[1]["tags"] is None


def test_conform_fixed_size_list_target() -> None:
    target = pa.struct([pa.field("point", pa.list_(pa.float64(), 2))])
    source = pa.array(
        [{"point": [1, 2]}, {"point": None}, {"point": [3, 4]}], pa.struct([("point", pa.list_(pa.int32()))])
    )
    result = conform_struct(source, target)
    assert result.to_pylist() == [{"point": [1.0, 2.0]}, {"point": None}, {"point": [3.0, 4.0]}]
    bad = pa.array([{"point": [1, 2]}, {"point": [3]}], pa.struct([("point", pa.list_(pa.int32()))]))
    error = violation(conform_struct, bad, target)
    assert (error.index, error.path) == (1, "point")


def test_conform_decodes_dictionary_columns() -> None:
    source = pa.StructArray.from_arrays([pa.array(["a", "b", "a"]).dictionary_encode()], names=["v"])
    result = conform_struct(source, pa.struct([pa.field("v", pa.string())]))
    assert result.field("v").to_pylist() == ["a", "b", "a"]


def test_conform_refuses_a_column_that_is_not_a_struct() -> None:
    error = violation(conform_struct, pa.array([1, 2]), ORDER)
    assert (error.index, error.path) == (0, "")


# --- values_from_python ----------------------------------------------------------------


def test_values_from_python_builds_the_type() -> None:
    result = values_from_python(GOOD, ORDER)
    assert result.type.equals(ORDER, check_metadata=True)
    assert result.to_pylist()[1]["attributes"] == [("color", {"sku": "c", "quantity": None})]


@pytest.mark.parametrize(
    ("record", "path"),
    [
        ({"id": 3, "colour": "red"}, "colour"),
        ({"id": 3, "address": {"city": "x", "zip": "1"}}, "address.zip"),
        ({"id": 3, "items": [{"sku": "a", "size": 1}]}, "items[].size"),
        ({"id": 3, "attributes": {"k": {"sku": "a", "size": 1}}}, "attributes[].size"),
    ],
)
def test_values_from_python_refuses_unknown_keys(record: dict[str, Any], path: str) -> None:
    error = violation(values_from_python, [*GOOD, record], ORDER)
    assert (error.index, error.path) == (2, path)


@pytest.mark.parametrize(
    ("record", "path"),
    [
        ({"id": "three"}, "id"),
        ({"id": 3, "items": [{"sku": "a"}, {"sku": "b", "quantity": "many"}]}, "items[1].quantity"),
        ({"id": 3, "attributes": {"k": {"sku": 5}}}, 'attributes["k"].sku'),
        ("not a record", ""),
    ],
)
def test_values_from_python_conversion_errors_name_record_and_path(record: Any, path: str) -> None:
    error = violation(values_from_python, [*GOOD, *GOOD, record, GOOD[0]], ORDER)
    assert (error.index, error.path) == (4, path)


def test_values_from_python_checks_required_fields() -> None:
    error = violation(values_from_python, [*GOOD, {"id": 3, "items": [{"quantity": 1}]}], ORDER)
    assert (error.index, error.path) == (2, "items[0].sku")
    error = violation(values_from_python, [GOOD[0], None], ORDER)
    assert (error.index, error.path) == (1, "")


# --- evolve ----------------------------------------------------------------------------


def with_default(field: pa.Field, default: Any) -> pa.Field:
    return field.with_metadata({DEFAULT_KEY: json.dumps(default).encode()})


def test_evolve_adds_defaults_drops_removed_and_promotes() -> None:
    old_type = pa.struct(
        [
            ("id", pa.int32()),
            ("amount", pa.float32()),
            ("legacy", pa.string()),
            ("name", pa.string()),
            ("at", pa.timestamp("ms", "UTC")),
        ]
    )
    new_type = pa.struct(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("amount", pa.float64()),
            with_default(pa.field("currency", pa.string()), "EUR"),
            pa.field("note", pa.string()),
            pa.field("name", pa.binary()),
            pa.field("at", pa.timestamp("us", "UTC")),
            with_default(pa.field("tags", pa.list_(pa.string())), ["a"]),
        ]
    )
    old = pa.array([{"id": 1, "amount": 1.5, "legacy": "x", "name": "n", "at": 1}, None], old_type)
    result = evolve(old, new_type)
    assert result.type.equals(new_type, check_metadata=True)
    first = result.to_pylist()[0]
    assert first["id"] == 1 and first["amount"] == 1.5 and first["currency"] == "EUR"
    assert first["note"] is None and first["name"] == b"n" and first["tags"] == ["a"]
    assert result.field("at").cast(pa.int64()).to_pylist()[0] == 1000
    assert result.is_null().to_pylist() == [False, True]


def test_evolve_recurses_into_lists_and_maps() -> None:
    old_item = pa.struct([("sku", pa.string()), ("quantity", pa.int32()), ("gone", pa.bool_())])
    new_item = pa.struct(
        [
            pa.field("sku", pa.string()),
            pa.field("quantity", pa.int64()),
            with_default(pa.field("unit", pa.string()), "pcs"),
        ]
    )
    old_type = pa.struct([("items", pa.list_(old_item)), ("by_name", pa.map_(pa.string(), old_item))])
    new_type = pa.struct(
        [pa.field("items", pa.list_(new_item)), pa.field("by_name", pa.map_(pa.string(), new_item))]
    )
    old = pa.array(
        [
            {
                "items": [{"sku": "a", "quantity": 2, "gone": True}],
                "by_name": [("k", {"sku": "b", "quantity": 1})],
            }
        ],
        old_type,
    )
    result = evolve(old, new_type)
    assert result.type.equals(new_type, check_metadata=True)
    row = result.to_pylist()[0]
    assert row["items"] == [{"sku": "a", "quantity": 2, "unit": "pcs"}]
    assert row["by_name"] == [("k", {"sku": "b", "quantity": 1, "unit": "pcs"})]


def test_evolve_same_type_is_the_same_array() -> None:
    values = pa.array(GOOD, ORDER)
    assert evolve(values, ORDER) is values


def test_default_of_reads_bytes_and_refuses_a_misfit() -> None:
    default = default_of(with_default(pa.field("b", pa.binary()), "\u00ff"))
    assert default is not None and default.as_py() == b"\xff"
    null_default = default_of(with_default(pa.field("n", pa.int8()), None))
    assert null_default is not None and not null_default.is_valid
    assert default_of(pa.field("n", pa.int8())) is None
    with pytest.raises(InvalidSchema):
        default_of(with_default(pa.field("n", pa.int8()), "many"))


# --- property: check_nulls agrees with a plain scan ------------------------------------

PROPERTY_TYPE = pa.struct(
    [
        pa.field("a", pa.int64(), nullable=False),
        pa.field("s", pa.struct([pa.field("b", pa.string(), nullable=False)])),
        pa.field("l", pa.list_(pa.struct([pa.field("c", pa.int8(), nullable=False)]))),
    ]
)


def expected_first_violation(rows: list[dict[str, Any]]) -> tuple[int, str] | None:
    for index, row in enumerate(rows):
        if row["a"] is None:
            return index, "a"
        if row["s"] is not None and row["s"]["b"] is None:
            return index, "s.b"
        for position, item in enumerate(row["l"] or []):
            if item is not None and item["c"] is None:
                return index, f"l[{position}].c"
    return None


maybe_int = st.one_of(st.none(), st.integers(-100, 100))
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "a": st.one_of(st.none(), st.integers()),
            "s": st.one_of(
                st.none(), st.fixed_dictionaries({"b": st.one_of(st.none(), st.text(max_size=3))})
            ),
            "l": st.one_of(
                st.none(),
                st.lists(st.one_of(st.none(), st.fixed_dictionaries({"c": maybe_int})), max_size=4),
            ),
        }
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_check_nulls_matches_a_plain_scan(rows: list[dict[str, Any]]) -> None:
    rows = [{**row, "a": None if row["a"] is None else row["a"] % 2**62} for row in rows]
    values = pa.array(rows, PROPERTY_TYPE)
    expected = expected_first_violation(rows)
    if expected is None:
        check_nulls(values, PROPERTY_TYPE)
    else:
        error = violation(check_nulls, values, PROPERTY_TYPE)
        assert (error.index, error.path) == expected
