"""Bringing values to a topic's value type: checking required fields, conforming a
caller's struct column, converting Python dicts, and reading older data in a newer type.

Every function here works on whole arrays with Arrow compute and NumPy: the walk goes
over the *fields* of the type (and into list items and map values by flattening them),
never over records. Only an error path looks at single records, to say which one broke.

A refusal is a :class:`SchemaViolation` naming the first offending record (its index in
the array given) and the path inside it: ``address.city``, ``items[3].sku``,
``attributes["color"].size``. Flattened list items are mapped back to their record with
``list_parent_indices``; since items keep record order, the first offending item is in
the first offending record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY

__all__ = ["check_nulls", "check_values", "conform_struct", "default_of", "evolve", "values_from_python"]

# Largest value offset an Arrow `list` or `map` (int32 offsets) can address.
list_offset_max = 2**31 - 1


# ---------------------------------------------------------------------------------------
# Where elements sit: mapping positions in a flattened array back to records and paths.


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass(frozen=True)
class _Where:
    """Where the elements of an array being walked sit in the records given.

    ``locate`` maps an element position to (record index, path with list positions);
    ``present`` says which elements lie inside non-null ancestors (None: all of them),
    because a child value under a null parent is filler, not data; ``path`` is the
    path without positions (``items[].sku``), for messages about a whole column.
    """

    locate: Callable[[int], tuple[int, str]]
    present: np.ndarray | None
    path: str

    @staticmethod
    def top() -> _Where:
        return _Where(lambda position: (position, ""), None, "")

    def field(self, name: str) -> _Where:
        """The same elements, one struct field down."""
        locate = self.locate

        def locate_field(position: int) -> tuple[int, str]:
            record, path = locate(position)
            return record, _join(path, name)

        return _Where(locate_field, self.present, _join(self.path, name))

    def inside(self, array: pa.Array) -> _Where:
        """The same elements, knowing that null elements of ``array`` hide their children."""
        if array.null_count == 0:
            return self
        valid = _to_numpy_bool(pc.is_valid(array))
        present = valid if self.present is None else self.present & valid
        return _Where(self.locate, present, self.path)

    def items(self, list_array: pa.Array, keys: pa.Array | None = None) -> _Where:
        """The items of ``list_array`` (a list or map array) as ``pc.list_flatten`` gives
        them; ``keys`` (a map's flattened keys) name map items in paths."""
        parents = pc.list_parent_indices(list_array).to_numpy()
        lengths = pc.fill_null(pc.list_value_length(list_array), 0).to_numpy()
        starts = np.cumsum(lengths) - lengths
        locate = self.locate

        def locate_item(position: int) -> tuple[int, str]:
            parent = int(parents[position])
            record, path = locate(parent)
            if keys is None:
                return record, f"{path}[{position - int(starts[parent])}]"
            key = keys[position].as_py()
            label = json.dumps(key) if isinstance(key, str) else repr(key)
            return record, f"{path}[{label}]"

        present = None if self.present is None else self.present[parents]
        return _Where(locate_item, present, f"{self.path}[]")

    def first(self, offending: np.ndarray) -> tuple[int, str] | None:
        """The record and path of the first offending present element, if any."""
        if self.present is not None:
            offending = offending & self.present
        positions = np.flatnonzero(offending)
        if len(positions) == 0:
            return None
        return self.locate(int(positions[0]))


def _to_numpy_bool(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _relaxed(data_type: pa.DataType) -> pa.DataType:
    """``data_type`` with every field nullable: what a zero-copy ``view`` may label data
    with before its nulls are checked (Arrow refuses to view nulls as non-nullable)."""
    if pa.types.is_struct(data_type):
        return pa.struct([field.with_type(_relaxed(field.type)).with_nullable(True) for field in data_type])
    if pa.types.is_map(data_type):
        item = data_type.item_field
        return pa.map_(data_type.key_field, item.with_type(_relaxed(item.type)).with_nullable(True))
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        item = data_type.value_field.with_type(_relaxed(data_type.value_type)).with_nullable(True)
        return pa.large_list(item) if pa.types.is_large_list(data_type) else pa.list_(item)
    if pa.types.is_fixed_size_list(data_type):
        item = data_type.value_field.with_type(_relaxed(data_type.value_type)).with_nullable(True)
        return pa.list_(item, data_type.list_size)
    return data_type


def _map_entries(map_array: pa.MapArray) -> pa.Array:
    """A map array seen as the list of key/value structs it is laid out as, so the list
    kernels (flatten, parent indices) apply."""
    map_type: pa.MapType = map_array.type
    entry = pa.struct([pa.field("key", map_type.key_type), pa.field("value", _relaxed(map_type.item_type))])
    return map_array.view(pa.list_(pa.field("entries", entry)))


# ---------------------------------------------------------------------------------------
# check_nulls


@dataclass
class _Violations:
    """The violation with the lowest record index seen so far."""

    index: int | None = None
    path: str = ""
    message: str = ""

    def offer(self, found: tuple[int, str] | None, describe: Callable[[str], str]) -> None:
        if found is None:
            return
        index, path = found
        if self.index is None or index < self.index:
            self.index, self.path, self.message = index, path, describe(path)

    def raise_first(self) -> None:
        if self.index is not None:
            raise SchemaViolation(self.message, self.index, self.path)


def _breakable(field: pa.Field, enums: bool) -> bool:
    """Whether a field's own values can break a rule: required, or an enum (when
    enums are checked)."""
    return not field.nullable or (enums and ENUM_KEY in (field.metadata or {}))


def _has_rule(data_type: pa.DataType, enums: bool = False) -> bool:
    """Whether a type holds any field or item that can break a rule, i.e. whether
    walking it can find a violation at all (most optional subtrees are skipped)."""
    if pa.types.is_struct(data_type):
        return any(_breakable(field, enums) or _has_rule(field.type, enums) for field in data_type)
    if pa.types.is_map(data_type):
        return _breakable(data_type.item_field, enums) or _has_rule(data_type.item_type, enums)
    if _is_list_like(data_type):
        return _breakable(data_type.value_field, enums) or _has_rule(data_type.value_type, enums)
    return False


def _is_list_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_list_view(data_type)
        or pa.types.is_large_list_view(data_type)
    )


def _required_message(path: str) -> str:
    return f"field `{path}` is required but is null"


def _item_required_message(path: str) -> str:
    return f"item `{path}` is null but the items of this list or map are required"


def _enum_message(path: str) -> str:
    return f"field `{path}` holds a value that is not one of its enum symbols"


def _check_field(
    array: pa.Array, field: pa.Field, where: _Where, found: _Violations, enums: bool, item: bool
) -> None:
    """The rules on one field's (or list item's, or map value's) own values, then on
    what it holds."""
    if not field.nullable and array.null_count:
        describe = _item_required_message if item else _required_message
        found.offer(where.first(_to_numpy_bool(pc.is_null(array))), describe)
    metadata = field.metadata or {}
    if enums and ENUM_KEY in metadata:
        symbols = pa.array(json.loads(metadata[ENUM_KEY]), array.type)
        unknown = pc.and_(pc.is_valid(array), pc.invert(pc.is_in(array, value_set=symbols)))
        found.offer(where.first(_to_numpy_bool(unknown)), _enum_message)
    if _has_rule(field.type, enums):
        _check_type(array, field.type, where, found, enums)


def _check_type(
    array: pa.Array, data_type: pa.DataType, where: _Where, found: _Violations, enums: bool
) -> None:
    if pa.types.is_struct(data_type):
        inside = where.inside(array)
        for field in data_type:
            _check_field(array.field(field.name), field, inside.field(field.name), found, enums, item=False)
    elif pa.types.is_map(data_type):
        entries_list = _map_entries(array)
        entries = pc.list_flatten(entries_list)
        items_where = where.items(entries_list, entries.field("key"))
        _check_field(entries.field("value"), data_type.item_field, items_where, found, enums, item=True)
    elif _is_list_like(data_type):
        _check_field(
            pc.list_flatten(array), data_type.value_field, where.items(array), found, enums, item=True
        )


def check_nulls(values: pa.StructArray, value_type: pa.StructType) -> None:
    """Refuse the first record where a required (non-nullable) field or item is null.

    Arrow does not enforce ``nullable=False``, so a caller's batch can hold nulls where
    the schema requires values. A null struct hides its children (they are not checked)
    when the struct itself may be null; a null value (the whole record) is refused with
    the path ``""``.
    """
    if values.null_count:
        index = int(np.flatnonzero(_to_numpy_bool(pc.is_null(values)))[0])
        raise SchemaViolation("the value is null, but the topic's schema requires a record", index, "")
    found = _Violations()
    if _has_rule(value_type):
        _check_type(values, value_type, _Where.top(), found, enums=False)
    found.raise_first()


def check_values(values: pa.StructArray, value_type: pa.StructType) -> None:
    """:func:`check_nulls` and, in the same pass, refuse a field carrying enum symbols
    (:data:`ENUM_KEY`) that holds a string not among them: the whole check of a value
    type that carries no other constraint (an Arrow schema's)."""
    if values.null_count:
        check_nulls(values, value_type)
    found = _Violations()
    if _has_rule(value_type, enums=True):
        _check_type(values, value_type, _Where.top(), found, enums=True)
    found.raise_first()


# ---------------------------------------------------------------------------------------
# Defaults


def _python_for_type(value: Any, data_type: pa.DataType) -> Any:
    """A JSON default as the Python value Arrow accepts for ``data_type``: maps are given
    as key/value pairs, and bytes as text whose code points are the bytes (the Avro
    convention for byte defaults)."""
    if value is None:
        return None
    if pa.types.is_struct(data_type) and isinstance(value, dict):
        return {field.name: _python_for_type(value.get(field.name), field.type) for field in data_type}
    if pa.types.is_map(data_type) and isinstance(value, dict):
        return [(key, _python_for_type(item, data_type.item_type)) for key, item in value.items()]
    if _is_list_like(data_type) and isinstance(value, list):
        return [_python_for_type(item, data_type.value_type) for item in value]
    is_bytes = (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )
    if is_bytes and isinstance(value, str):
        return value.encode("latin-1")
    return value


def default_of(field: pa.Field) -> pa.Scalar | None:
    """The default a field declares (in its :data:`DEFAULT_KEY` metadata) as a scalar of
    its type, or None when it declares none. A declared default of JSON ``null`` is a
    null scalar, which is a default all the same."""
    metadata = field.metadata or {}
    if DEFAULT_KEY not in metadata:
        return None
    try:
        value = json.loads(metadata[DEFAULT_KEY])
        return pa.scalar(_python_for_type(value, field.type), type=field.type)
    except (ValueError, TypeError, pa.ArrowException, UnicodeError) as error:
        raise InvalidSchema(
            f"the default of field `{field.name}` does not fit its type {field.type}: {error}"
        ) from error


# ---------------------------------------------------------------------------------------
# Reshaping an array to a target type: shared by conform_struct and evolve.


class _Mode(Enum):
    # A caller's batch: unknown fields refused, only lossless casts, missing → null.
    CONFORM = "conform"
    # Stored data read in a newer type: unknown fields dropped, promotions, defaults.
    EVOLVE = "evolve"


def _describe_value(array: pa.Array, position: int) -> str:
    try:
        text = repr(array[position].as_py())
    except (pa.ArrowException, ValueError, OverflowError):
        text = str(array[position])
    return text if len(text) <= 80 else text[:77] + "..."


def _first_failing(array: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """The position of the first element ``convert`` refuses, ``convert`` being an
    element-wise conversion that refuses ``array`` as a whole. Bisection over slices:
    about twice the work of one conversion, and only ever on an error path."""
    low, high = 0, len(array)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(array.slice(low, middle - low))
        except (pa.ArrowException, ValueError, OverflowError, TypeError):
            high = middle
        else:
            low = middle
    return low


def _type_violation(array: pa.Array, target: pa.DataType, where: _Where, why: str) -> SchemaViolation:
    """A violation at the first present non-null element of ``array``, which cannot be
    ``target`` at all (callers check there is one)."""
    found = where.first(_to_numpy_bool(pc.is_valid(array)))
    index, path = found if found is not None else (0, where.path)
    return SchemaViolation(f"field `{path}` has type {array.type}, {why} {target}", index, path)


def _integer_or_float(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(data_type) or pa.types.is_floating(data_type))


def _string_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def _binary_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_binary_view(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def _conform_cast_allowed(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a caller's column of ``source`` may be cast to ``target`` when every value
    survives: the safe Arrow cast then checks each value (range, truncation, UTF-8,
    widths). Casts that parse or reinterpret (string → timestamp, bool → int) are not
    allowed: a caller sending text where the schema says time has a bug to hear about."""
    if pa.types.is_dictionary(source):
        return _conform_cast_allowed(source.value_type, target)
    if _integer_or_float(source) or pa.types.is_decimal(source):
        return bool(_integer_or_float(target) or pa.types.is_decimal(target))
    if _string_like(source) or _binary_like(source):
        return bool(_string_like(target) or _binary_like(target))
    if pa.types.is_timestamp(source):
        return bool(pa.types.is_timestamp(target) and (source.tz is None) == (target.tz is None))
    for same_kind in (pa.types.is_date, pa.types.is_time, pa.types.is_duration):
        if same_kind(source):
            return bool(same_kind(target))
    return False


def _cast_leaf(array: pa.Array, target: pa.DataType, where: _Where, mode: _Mode) -> pa.Array:
    if mode is _Mode.CONFORM and not _conform_cast_allowed(array.type, target):
        raise _type_violation(array, target, where, "which the schema does not allow as")
    # A promotion of stored data (int64 → double) may round; a caller's value may not.
    safe = not (mode is _Mode.EVOLVE and pa.types.is_integer(array.type) and pa.types.is_floating(target))

    def convert(part: pa.Array) -> pa.Array:
        return pc.cast(part, target, safe=safe)

    if where.present is not None and not where.present.all():
        # Values under null parents are filler that must not fail a cast.
        array = pc.if_else(pa.array(where.present), array, pa.scalar(None, array.type))
    try:
        result = convert(array)
    except (pa.ArrowException, ValueError, OverflowError) as error:
        position = _first_failing(array, convert)
        index, path = where.locate(position)
        raise SchemaViolation(
            f"field `{path}` holds {_describe_value(array, position)}, which cannot be stored as "
            f"{target} without loss ({error})",
            index,
            path,
        ) from error
    if pa.types.is_floating(array.type) and pa.types.is_floating(target):
        # Arrow's safe cast lets a double overflow to an infinite float; refuse that.
        overflow = pc.and_(pc.is_finite(array), pc.invert(pc.is_finite(result)))
        found = where.first(_to_numpy_bool(pc.fill_null(overflow, False)))
        if found is not None:
            index, path = found
            raise SchemaViolation(f"field `{path}` holds a value too large for {target}", index, path)
    return result


def _offsets(list_array: pa.Array, wide: bool) -> pa.Array:
    """Offsets for rebuilding a list from its flattened items (null lists are empty)."""
    lengths = pc.fill_null(pc.list_value_length(list_array), 0).to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if not wide:
        if offsets[-1] > list_offset_max:
            raise SchemaViolation(f"a list holds more than {list_offset_max} items in one array", 0, "")
        return pa.array(offsets.astype(np.int32))
    return pa.array(offsets)


def _null_mask(array: pa.Array) -> pa.Array | None:
    return pc.is_null(array) if array.null_count else None


def _reshape_struct(array: pa.Array, target: pa.StructType, where: _Where, mode: _Mode) -> pa.Array:
    source: pa.StructType = array.type
    inside = where.inside(array)
    target_names = {field.name for field in target}
    seen: set[str] = set()
    for field in source:
        if field.name in seen:
            raise SchemaViolation(f"field `{_join(where.path, field.name)}` appears twice", 0, where.path)
        seen.add(field.name)
        if field.name not in target_names and mode is _Mode.CONFORM:
            field_where = inside.field(field.name)
            found = field_where.first(_to_numpy_bool(pc.is_valid(array.field(field.name))))
            index, path = found if found is not None else (0, field_where.path)
            raise SchemaViolation(f"field `{path}` is not in the topic's schema", index, path)
    children = []
    for field in target:
        if field.name in seen:
            children.append(_reshape(array.field(field.name), field.type, inside.field(field.name), mode))
            continue
        default = default_of(field) if mode is _Mode.EVOLVE else None
        if default is None or not default.is_valid or len(array) == 0:
            children.append(pa.nulls(len(array), field.type))
        else:
            children.append(pa.repeat(default, len(array)))
    if not children:
        return pc.cast(array, target)
    return pa.StructArray.from_arrays(children, fields=list(target), mask=_null_mask(array))


def _reshape_list(array: pa.Array, target: pa.DataType, where: _Where, mode: _Mode) -> pa.Array:
    if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
        # Fixed-size lists and list views: through a plain list, whose layout the
        # flatten/rebuild below knows.
        array = pc.cast(array, pa.large_list(pa.field("item", _relaxed(array.type.value_type))))
    items = _reshape(pc.list_flatten(array), target.value_type, where.items(array), mode)
    mask = _null_mask(array)
    if pa.types.is_large_list(target):
        return pa.LargeListArray.from_arrays(_offsets(array, True), items, target, mask=mask)
    if pa.types.is_list(target):
        return pa.ListArray.from_arrays(_offsets(array, False), items, target, mask=mask)
    # A fixed-size target: every non-null list must have the size; null lists take
    # null filler items, gathered with one `take` over the flattened items.
    size = target.list_size
    lengths = pc.fill_null(pc.list_value_length(array), size).to_numpy()
    found = where.first(lengths != size)
    if found is not None:
        index, path = found
        raise SchemaViolation(f"field `{path}` must hold exactly {size} items", index, path)
    starts = _offsets(array, True).to_numpy()[:-1]
    gather = (starts[:, None] + np.arange(size)[None, :]).reshape(-1)
    hidden = None if mask is None else np.repeat(_to_numpy_bool(mask), size)
    slots = items.take(pa.array(gather, mask=hidden))
    return pa.FixedSizeListArray.from_arrays(slots, type=target, mask=mask)


def _reshape_map(array: pa.Array, target: pa.MapType, where: _Where, mode: _Mode) -> pa.Array:
    entries_list = _map_entries(array)
    entries = pc.list_flatten(entries_list)
    items_where = where.items(entries_list, entries.field("key"))
    keys = _reshape(entries.field("key"), target.key_type, items_where, mode)
    values = _reshape(entries.field("value"), target.item_type, items_where, mode)
    offsets = _offsets(entries_list, False)
    return pa.MapArray.from_arrays(offsets, keys, values, type=target, mask=_null_mask(array))


def _reshape(array: pa.Array, target: pa.DataType, where: _Where, mode: _Mode) -> pa.Array:
    """``array`` as exactly ``target`` (names, nullability, field metadata): fields
    matched by name, items and map values recursively. Nested arrays are rebuilt around
    their (zero-copy) children rather than viewed, since a view refuses nulls under a
    non-nullable label, and those nulls are for ``check_nulls`` to report."""
    if array.type.equals(target, check_metadata=True):
        return array
    if pa.types.is_null(array.type) or (
        array.null_count == len(array) and not pa.types.is_struct(array.type)
    ):
        # Nothing to convert (a struct is still walked: its fields may be unknown).
        return pa.nulls(len(array), target)
    if pa.types.is_struct(target):
        if not pa.types.is_struct(array.type):
            raise _type_violation(array, target, where, "but the schema says")
        return _reshape_struct(array, target, where, mode)
    if pa.types.is_map(target):
        if not pa.types.is_map(array.type):
            raise _type_violation(array, target, where, "but the schema says")
        return _reshape_map(array, target, where, mode)
    if _is_list_like(target):
        if not _is_list_like(array.type):
            raise _type_violation(array, target, where, "but the schema says")
        return _reshape_list(array, target, where, mode)
    if pa.types.is_struct(array.type) or pa.types.is_map(array.type) or _is_list_like(array.type):
        raise _type_violation(array, target, where, "but the schema says")
    return _cast_leaf(array, target, where, mode)


def conform_struct(values: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    """A caller's ``value`` column as exactly ``value_type``, or a SchemaViolation.

    Fields are matched by name, recursively through structs, lists and maps. A field
    the schema has but the column lacks is null (then refused if required); a field the
    schema lacks is refused, since silently dropping data hides a producer's bug. A
    type differing from the schema's is cast when the cast loses nothing (int32 →
    int64, an int64 that fits in int32, 2.0 → 2); never a parse (text → timestamp).
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type.equals(value_type, check_metadata=True):
        check_nulls(values, value_type)
        return values
    if not pa.types.is_struct(values.type):
        raise SchemaViolation(f"the value column has type {values.type}, but the topic stores records", 0, "")
    reshaped: pa.StructArray = _reshape(values, value_type, _Where.top(), _Mode.CONFORM)
    check_nulls(reshaped, value_type)
    return reshaped


def evolve(values: pa.StructArray, to_type: pa.StructType) -> pa.StructArray:
    """Data written under an older, compatible value type, read as ``to_type``: fields
    added since take their default (or null), fields removed are dropped, promoted types
    are cast (int32 → int64, int → double, float → double, string ⇄ binary, timestamp
    units), recursively. The compatibility check run when ``to_type`` was registered
    is what makes this possible; it is not repeated here."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type.equals(to_type, check_metadata=True):
        return values
    evolved: pa.StructArray = _reshape(values, to_type, _Where.top(), _Mode.EVOLVE)
    return evolved


# ---------------------------------------------------------------------------------------
# values_from_python


def _nested_dicts(values: list[Any], data_type: pa.DataType) -> list[Any]:
    """The Python values one nesting level down (through lists and map values) that
    should be dicts of the struct ``data_type`` describes."""
    if pa.types.is_map(data_type):
        values = [
            item
            for value in values
            for item in (
                value.values()
                if isinstance(value, dict)
                else (pair[1] for pair in value if isinstance(pair, list | tuple) and len(pair) == 2)
                if isinstance(value, list | tuple)
                else ()
            )
        ]
        return _nested_dicts(values, data_type.item_type)
    if _is_list_like(data_type):
        values = [item for value in values if isinstance(value, list | tuple) for item in value]
        return _nested_dicts(values, data_type.value_type)
    return values


def _first_unknown_key(values: list[Any], struct_type: pa.StructType, path: str) -> tuple[str, str] | None:
    """(path, key) of a key no field of ``struct_type`` declares, in any dict of
    ``values`` or below them (nested structs, list items, map values), or None."""
    dicts = [value for value in values if isinstance(value, dict)]
    keys: set[Any] = set().union(*dicts)
    names = {field.name for field in struct_type}
    unknown = keys - names
    if unknown:
        return path, str(sorted(map(str, unknown))[0])
    for field in struct_type:
        nested_type, nested_path = field.type, _join(path, field.name)
        while _is_list_like(nested_type) or pa.types.is_map(nested_type):
            nested_type = nested_type.item_type if pa.types.is_map(nested_type) else nested_type.value_type
            nested_path += "[]"
        if not pa.types.is_struct(nested_type):
            continue
        children = [value.get(field.name) for value in dicts]
        nested = _nested_dicts([child for child in children if child is not None], field.type)
        found = _first_unknown_key(nested, nested_type, nested_path)
        if found is not None:
            return found
    return None


def _bad_path(value: Any, data_type: pa.DataType, path: str) -> str:
    """The path inside one value that Arrow refuses to convert (error path only)."""

    def refused(part: Any, part_type: pa.DataType) -> bool:
        try:
            pa.array([part], type=part_type)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            return True
        return False

    if pa.types.is_struct(data_type) and isinstance(value, dict):
        for field in data_type:
            if refused(value.get(field.name), field.type):
                return _bad_path(value.get(field.name), field.type, _join(path, field.name))
    elif pa.types.is_map(data_type) and isinstance(value, dict):
        for key, item in value.items():
            if refused(item, data_type.item_type):
                return _bad_path(item, data_type.item_type, f"{path}[{json.dumps(str(key))}]")
    elif _is_list_like(data_type) and isinstance(value, list | tuple):
        for position, item in enumerate(value):
            if refused(item, data_type.value_type):
                return _bad_path(item, data_type.value_type, f"{path}[{position}]")
    return path


def _part_at(value: Any, data_type: pa.DataType, path: str) -> tuple[Any, pa.DataType]:
    """The part of ``value`` at ``path`` (as _bad_path writes it) and its type."""
    for step in re.findall(r"\[[^\]]*\]|[^.\[]+", path):
        if step.startswith("["):
            index = json.loads(step[1:-1])
            if pa.types.is_map(data_type):
                matches = [item for key, item in value.items() if str(key) == index]
                value, data_type = (matches[0] if matches else None), data_type.item_type
            else:
                value, data_type = value[int(index)], data_type.value_type
        else:
            field = data_type.field(step)
            value, data_type = (value.get(step) if isinstance(value, dict) else None), field.type
    return value, data_type


def _expected(data_type: pa.DataType) -> str:
    """What a Python value must be for ``data_type``, in the words of the JSON path."""
    if pa.types.is_struct(data_type) or pa.types.is_map(data_type):
        return "a dict"
    if _is_list_like(data_type):
        return "a list"
    if pa.types.is_boolean(data_type):
        return "a boolean"
    if pa.types.is_integer(data_type):
        return f"an integer ({data_type})"
    if pa.types.is_floating(data_type):
        return f"a number ({data_type})"
    if pa.types.is_decimal(data_type):
        return "a decimal number"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "a string"
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return "bytes"
    if pa.types.is_fixed_size_binary(data_type):
        return f"{data_type.byte_width} bytes"
    if pa.types.is_timestamp(data_type):
        return "a datetime or an integer"
    if pa.types.is_date(data_type):
        return "a date"
    if pa.types.is_time(data_type):
        return "a time"
    return f"a value of type {data_type}"


def _python_kind(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return f"{type(value).__name__} {shown}"


def values_from_python(values: Sequence[Any], value_type: pa.StructType) -> pa.StructArray:
    """Python dicts (what an embedded caller appends) as a struct array of ``value_type``.

    Arrow's conversion ignores keys the type lacks, so they are looked for first: the
    union of the keys of all dicts at each nesting level (top level, nested structs,
    structs in list items and map values) against the field names there. Only on a
    refusal are records looked at one by one, to name the first bad one.
    """
    records = list(values)
    unknown = _first_unknown_key(records, value_type, "")
    if unknown is not None:
        for index, record in enumerate(records):
            found = _first_unknown_key([record], value_type, "")
            if found is not None:
                path, key = found
                key_path = _join(path, key)
                raise SchemaViolation(f"field `{key_path}` is not in the topic's schema", index, key_path)

    def convert(part: Sequence[Any]) -> pa.Array:
        return pa.array(part, type=value_type)

    try:
        array = convert(records)
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as error:
        low, high = 0, len(records)
        while high - low > 1:
            middle = (low + high) // 2
            try:
                convert(records[low:middle])
            except (pa.ArrowException, ValueError, TypeError, OverflowError):
                high = middle
            else:
                low = middle
        path = _bad_path(records[low], value_type, "")
        where = f"field `{path}`" if path else "the value"
        part, part_type = _part_at(records[low], value_type, path)
        raise SchemaViolation(
            f"record {low}: {where} must be {_expected(part_type)}, got {_python_kind(part)}",
            low,
            path,
        ) from error
    check_nulls(array, value_type)
    result: pa.StructArray = array
    return result
