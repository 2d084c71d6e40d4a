"""What an Arrow type cannot promise about Avro values: required values present and enum
values among their symbols, checked a column at a time.

Each check finds the first offending element of a column with NumPy; an element deep in
lists is traced back to its record and its path (``items[3].sku``) only for that one
element. Checks of different columns are compared by record, so the error names the
first offending record of the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import SchemaViolation
from odradek.schemas.avro_nodes import AvroNode

Mask = npt.NDArray[np.bool_]
# Element index at one nesting level → (record index, path of that element).
Locate = Callable[[int], tuple[int, str]]


@dataclass(frozen=True)
class _Violation:
    record: int
    path: str
    message: str


def check_records(root: AvroNode, values: pa.StructArray | pa.ChunkedArray) -> None:
    """Raise SchemaViolation for the first record of ``values`` that breaks the schema."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count:
        first = int(np.flatnonzero(_valid(values) == 0)[0])
        raise SchemaViolation("a record is null; a value must be present", first, None)
    found = _check(root, values, None, _top_level, required=True)
    if found is not None:
        raise SchemaViolation(found.message, found.record, found.path or None)


def _top_level(element: int) -> tuple[int, str]:
    return element, ""


def _valid(values: pa.Array) -> Mask:
    if not values.null_count:
        return np.ones(len(values), dtype=np.bool_)
    return np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)


def _first(found: list[_Violation | None]) -> _Violation | None:
    best: _Violation | None = None
    for candidate in found:
        if candidate is not None and (best is None or candidate.record < best.record):
            best = candidate
    return best


def _check(
    node: AvroNode, values: pa.Array, relevant: Mask | None, locate: Locate, required: bool
) -> _Violation | None:
    """The first violation in ``values``; ``relevant`` marks elements whose enclosing
    values are all present (None: every element)."""
    if node.kind == "optional":
        return _check(node.inner, values, relevant, locate, required=False)
    valid = _valid(values)
    if required and values.null_count:
        missing = ~valid if relevant is None else ~valid & relevant
        offending = np.flatnonzero(missing)
        if offending.size:
            record, path = locate(int(offending[0]))
            return _Violation(record, path, f"{path or 'the value'} is required but null")
    kind = node.kind
    if kind not in ("enum", "record", "array", "map"):
        return None
    present = valid if relevant is None else valid & relevant
    if kind == "enum":
        known = pc.is_in(values, value_set=pa.array(node.symbols, type=pa.utf8())).fill_null(True)
        offending = np.flatnonzero(~known.to_numpy(zero_copy_only=False) & present)
        if offending.size:
            record, path = locate(int(offending[0]))
            symbols = ", ".join(node.symbols)
            return _Violation(record, path, f"{path or 'the value'} is not one of the symbols {symbols}")
        return None
    if kind == "record":
        assert isinstance(values, pa.StructArray)
        found: list[_Violation | None] = []
        for position, field in enumerate(node.fields):
            child_locate = _field_locate(locate, field.name)
            child = values.field(position)
            found.append(_check(field.node, child, present, child_locate, required=True))
        return _first(found)
    if kind == "array":
        assert isinstance(values, pa.ListArray)
        return _check_items(node.inner, values, values.values, present, locate)
    if kind == "map":
        assert isinstance(values, pa.MapArray)
        return _check_items(node.inner, values, values.items, present, locate)
    return None


def _check_items(
    items_node: AvroNode, lists: pa.Array, items: pa.Array, present: Mask, locate: Locate
) -> _Violation | None:
    offsets = lists.offsets.to_numpy().astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    if last == first:
        return None
    items = items.slice(first, last - first)
    offsets = offsets - first
    item_relevant = np.repeat(present, np.diff(offsets))

    def item_locate(element: int) -> tuple[int, str]:
        parent = int(np.searchsorted(offsets, element, side="right")) - 1
        record, path = locate(parent)
        return record, f"{path}[{element - int(offsets[parent])}]"

    return _check(items_node, items, item_relevant, item_locate, required=True)


def _field_locate(locate: Locate, name: str) -> Locate:
    def field_locate(element: int) -> tuple[int, str]:
        record, path = locate(element)
        return record, f"{path}.{name}" if path else name

    return field_locate
