"""An Arrow struct array → Avro binary payloads, encoded a column at a time.

Each value of the schema is turned into a binary column holding every record's bytes
for that value (varints built as a byte matrix with NumPy, strings prefixed with their
lengths); a record's payload is then its fields' columns joined element-wise, and an
array's bytes its items' columns joined per list, both by Arrow's native joins. Arrays
and maps are written as one block with a positive count followed by the empty block
(an empty array is just the empty block).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import SchemaViolation
from odradek.schemas.avro_check import check_records
from odradek.schemas.avro_nodes import AvroNode

# Avro spec: a long is a zig-zag varint of at most 10 bytes (ceil(64 / 7)).
_VARINT_BYTES_MAX = 10
# Arrow decimal128 values are 16 bytes, little-endian two's complement.
_DECIMAL128_BYTES = 16

_NUMERIC_VIEWS: dict[str, pa.DataType] = {"int": pa.int32(), "long": pa.int64()}


def encode_records(root: AvroNode, values: pa.StructArray | pa.ChunkedArray) -> pa.Array:
    """Avro binary payloads (no registry header) of the records in ``values``.

    The values are checked first (required fields present, enum symbols known), since a
    null where Avro has no null branch has no encoding at all.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not values.type.equals(root.arrow_type):
        try:
            values = values.cast(root.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SchemaViolation(f"values of type {values.type} do not match the schema") from None
    check_records(root, values)
    return _encode(root, values)


def _encode(node: AvroNode, values: pa.Array) -> pa.Array:
    """Each element's Avro bytes; elements that are null here (masked by an enclosing
    null) come out as whatever is cheapest, since the caller drops them."""
    kind = node.kind
    count = len(values)
    if kind == "record":
        assert isinstance(values, pa.StructArray)
        columns = [_encode(field.node, values.field(position)) for position, field in enumerate(node.fields)]
        if not columns:
            return _constant(count, b"")
        if len(columns) == 1:
            return columns[0]
        return pc.binary_join_element_wise(*columns, b"")
    if kind == "optional":
        inner = _encode(node.inner, values)
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        value_branch = 1 - node.null_branch
        # A branch index is a zig-zag varint: 0 → 0x00, 1 → 0x02.
        branch_bytes = np.where(valid, 2 * value_branch, 2 * node.null_branch).astype(np.uint8)
        branch = _fixed_width(branch_bytes, 1)
        if not values.null_count:
            return pc.binary_join_element_wise(branch, inner, b"")
        present = pc.if_else(pa.array(valid), inner, pa.scalar(b"", type=pa.binary()))
        return pc.binary_join_element_wise(branch, present, b"")
    if kind in ("int", "long"):
        numbers = values.view(_NUMERIC_VIEWS[kind]) if values.type != _NUMERIC_VIEWS[kind] else values
        filled = numbers.fill_null(0) if numbers.null_count else numbers
        return _varints(_zigzag(filled.to_numpy().astype(np.int64)))
    if kind in ("string", "bytes"):
        if node.logical == "decimal":
            return _decimal_bytes(values)
        return _length_prefixed(values)
    if kind in ("float", "double"):
        filled = values.fill_null(0) if values.null_count else values
        dtype = "<f8" if kind == "double" else "<f4"
        numbers = np.ascontiguousarray(filled.to_numpy().astype(dtype))
        return _fixed_width(numbers.view(np.uint8), numbers.itemsize)
    if kind == "boolean":
        filled = values.fill_null(False) if values.null_count else values
        return _fixed_width(filled.to_numpy(zero_copy_only=False).astype(np.uint8), 1)
    if kind == "enum":
        indices = pc.index_in(values, value_set=pa.array(node.symbols, type=pa.utf8())).fill_null(0)
        return _varints(_zigzag(indices.to_numpy().astype(np.int64)))
    if kind == "fixed":
        if node.logical == "decimal":
            return _decimal_fixed(values, node.size)
        data = values.buffers()[1]
        start = values.offset * node.size
        offsets = np.arange(count + 1, dtype=np.int64) * node.size + start
        return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets.astype(np.int32)), data])
    if kind == "array":
        assert isinstance(values, pa.ListArray)
        items = _encode(node.inner, values.values)
        return _blocks(values.offsets, items)
    if kind == "map":
        assert isinstance(values, pa.MapArray)
        keys = _length_prefixed(values.keys)
        entries = pc.binary_join_element_wise(keys, _encode(node.inner, values.items), b"")
        return _blocks(values.offsets, entries)
    raise AssertionError(f"unknown Avro node kind {kind}")  # pragma: no cover


def _zigzag(numbers: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return ((numbers << 1) ^ (numbers >> 63)).view(np.uint64)


def _varint_lengths(raw: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    lengths = np.ones(raw.size, dtype=np.int64)
    for shift in range(7, 7 * _VARINT_BYTES_MAX, 7):
        longer = raw >= np.uint64(1 << shift)
        if not longer.any():
            break
        lengths += longer
    return lengths


def _varints(raw: npt.NDArray[np.uint64], lengths: npt.NDArray[np.int64] | None = None) -> pa.Array:
    """Unsigned varints of ``raw`` as a binary column; ``lengths`` (0 allowed, to write
    nothing for an element) defaults to each value's own varint length."""
    own_lengths = _varint_lengths(raw)
    if lengths is None:
        lengths = own_lengths
    width = int(lengths.max()) if raw.size else 0
    matrix = np.empty((raw.size, width), dtype=np.uint8)
    for byte_position in range(width):
        digits = ((raw >> np.uint64(7 * byte_position)) & np.uint64(0x7F)).astype(np.uint8)
        matrix[:, byte_position] = digits | np.where(own_lengths > byte_position + 1, 0x80, 0).astype(
            np.uint8
        )
    flat = matrix[np.arange(width) < lengths[:, None]]
    return _binary(lengths, flat)


def _binary(lengths: npt.NDArray[np.int64], flat: npt.NDArray[np.uint8]) -> pa.Array:
    offsets = np.zeros(lengths.size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), lengths.size, [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


def _fixed_width(flat: npt.NDArray[np.uint8], width: int) -> pa.Array:
    count = flat.size // width if width else 0
    offsets = np.arange(count + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


def _constant(count: int, value: bytes) -> pa.Array:
    flat = np.tile(np.frombuffer(value, dtype=np.uint8), count) if value else np.zeros(0, dtype=np.uint8)
    offsets = np.arange(count + 1, dtype=np.int32) * len(value)
    return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(flat)])


def _length_prefixed(values: pa.Array) -> pa.Array:
    """Avro bytes/string: the length as a zig-zag varint, then the bytes."""
    binary = values.cast(pa.binary()) if values.type != pa.binary() else values
    if binary.null_count:
        binary = binary.fill_null(b"")
    lengths = pc.binary_length(binary).to_numpy().astype(np.int64)
    return pc.binary_join_element_wise(_varints(_zigzag(lengths)), binary, b"")


def _blocks(offsets: pa.Array, items: pa.Array) -> pa.Array:
    """One block of every list's items (count, items) and the closing empty block."""
    offset_numbers = offsets.to_numpy().astype(np.int64)
    counts = np.diff(offset_numbers)
    header = _varints(_zigzag(counts), np.where(counts > 0, _varint_lengths(_zigzag(counts)), 0))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items), b"")
    return pc.binary_join_element_wise(header, joined, _constant(counts.size, b"\x00"), b"")


def _decimal_matrix(values: pa.Array) -> npt.NDArray[np.uint8]:
    """Each decimal128 value as 16 big-endian two's complement bytes."""
    data = np.frombuffer(values.buffers()[1], dtype=np.uint8)
    start = values.offset * _DECIMAL128_BYTES
    little_endian = data[start : start + len(values) * _DECIMAL128_BYTES].reshape(-1, _DECIMAL128_BYTES)
    return np.ascontiguousarray(little_endian[:, ::-1])


def _decimal_bytes(values: pa.Array) -> pa.Array:
    """Avro decimal on bytes: the shortest big-endian two's complement, length first."""
    matrix = _decimal_matrix(values)
    count = matrix.shape[0]
    sign = np.where(matrix[:, 0] >= 0x80, 0xFF, 0).astype(np.uint8)
    is_sign = matrix == sign[:, None]
    leading = np.cumprod(is_sign, axis=1).sum(axis=1).astype(np.int64)
    # Keep one sign byte when the first significant byte's top bit disagrees with it.
    first_significant = matrix[np.arange(count), np.minimum(leading, _DECIMAL128_BYTES - 1)]
    disagrees = (leading < _DECIMAL128_BYTES) & ((first_significant >= 0x80) != (sign == 0xFF))
    lengths = np.maximum(_DECIMAL128_BYTES - leading + disagrees, 1)
    flat = matrix[np.arange(_DECIMAL128_BYTES) >= (_DECIMAL128_BYTES - lengths)[:, None]]
    return pc.binary_join_element_wise(_varints(_zigzag(lengths)), _binary(lengths, flat), b"")


def _decimal_fixed(values: pa.Array, size: int) -> pa.Array:
    """Avro decimal on fixed: big-endian two's complement sign-extended to ``size``."""
    matrix = _decimal_matrix(values)
    count = matrix.shape[0]
    if size >= _DECIMAL128_BYTES:
        sign = np.where(matrix[:, :1] >= 0x80, 0xFF, 0).astype(np.uint8)
        extension = np.repeat(sign, size - _DECIMAL128_BYTES, axis=1)
        flat = np.ascontiguousarray(np.concatenate([extension, matrix], axis=1)).reshape(-1)
    else:
        # The schema's precision fits ``size`` bytes, so the dropped bytes are sign bytes.
        flat = np.ascontiguousarray(matrix[:, _DECIMAL128_BYTES - size :]).reshape(-1)
    return _fixed_width(flat, size) if count else _constant(0, b"")
