"""Avro binary payloads → an Arrow struct array, decoded for all records at once.

Every record gets a cursor into the concatenated payload bytes; the schema's fields are
read in order for all cursors in lockstep, so each NumPy or Arrow call handles one field
of every record. Varints are read a byte position at a time over only the records whose
varint is still going; strings are cut out of the payload buffer by Arrow's native take;
union values and array items are decoded for the subset of records that have them.
A length or count is checked against the bytes left in its payload before anything is
allocated for it, so a hostile declared size costs nothing.

A malformed batch is decoded again by halves to find the first bad record: records are
independent, so a prefix of the batch decodes if and only if every record in it is
good, and the error names the record the producer will recognise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.errors import SchemaViolation
from odradek.schemas.arrays import offsets_and_data
from odradek.schemas.avro_nodes import AvroNode

Positions = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]

# Avro spec: a long is a zig-zag varint of at most 10 bytes (ceil(64 / 7)).
_VARINT_BYTES_MAX = 10
# Zero bytes after the copied payload data, so a varint or an 8-byte float may be
# gathered before its bounds are checked (the widest such read is 10 bytes).
_PADDING_BYTES = 16
# Arrow decimal128 values are 16 bytes, little-endian two's complement.
_DECIMAL128_BYTES = 16
# A binary array's 32-bit offsets address at most this many bytes.
_BINARY_OFFSET_MAX = 2**31 - 1

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def decode_records(root: AvroNode, payloads: pa.Array | pa.ChunkedArray) -> pa.StructArray:
    """Decode Avro binary payloads of the record ``root``; SchemaViolation for the first
    bad payload, with its index in ``payloads`` and the field path."""
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks()
    if not (pa.types.is_binary(payloads.type) or pa.types.is_large_binary(payloads.type)):
        raise SchemaViolation(f"Avro payloads must be a binary array, not {payloads.type}")
    if payloads.null_count:
        first = int(np.flatnonzero(payloads.is_null().to_numpy(zero_copy_only=False))[0])
        raise SchemaViolation("an Avro payload is null; a record's value must be present", first, None)
    try:
        return _decode_batch(root, payloads)
    except SchemaViolation as error:
        raise _first_bad_record(root, payloads, error) from None


def _first_bad_record(root: AvroNode, payloads: pa.Array, error: SchemaViolation) -> SchemaViolation:
    """The error of the first record that does not decode, found by bisecting prefixes."""
    good, bad = 0, len(payloads)  # payloads[:good] decode; payloads[:bad] do not
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            _decode_batch(root, payloads.slice(0, middle))
            good = middle
        except SchemaViolation:
            bad = middle
    index = bad - 1
    try:
        _decode_batch(root, payloads.slice(index, 1))
    except SchemaViolation as own_error:
        error = own_error
    return SchemaViolation(error.message, index, error.path)


def _decode_batch(root: AvroNode, payloads: pa.Array) -> pa.StructArray:
    count = len(payloads)
    offsets, source = offsets_and_data(payloads)
    first, last = (int(offsets[0]), int(offsets[-1])) if count else (0, 0)
    data = np.zeros(last - first + _PADDING_BYTES, dtype=np.uint8)
    if last > first:
        data[: last - first] = source[first:last]
    reader = _Reader(data)
    position = offsets[:-1] - first
    end = offsets[1:] - first
    values = reader.decode(root, position, end, "")
    trailing = np.flatnonzero(position != end)
    if trailing.size:
        raise SchemaViolation("an Avro payload has bytes after its record", int(trailing[0]), None)
    assert isinstance(values, pa.StructArray)
    return values


def _fail(message: str, path: str, element: int | None = None) -> SchemaViolation:
    """A refusal inside a batch; ``element`` is the position of the bad value among the
    cursors of the failing call (the caller that knows the layout maps it to a path)."""
    return SchemaViolation(message, element, path or None)


def _refuse_any(bad: npt.NDArray[np.bool_], message: str, path: str) -> None:
    offending = np.flatnonzero(bad)
    if offending.size:
        raise _fail(message, path, int(offending[0]))


class _Reader:
    """Reads Avro values at many cursors at once out of one padded byte buffer.

    Each ``read``/``decode`` takes the cursors (``position``) and payload ends of the
    records being read, advances the cursors in place and returns one value per cursor.
    """

    def __init__(self, data: Bytes) -> None:
        self.data = data
        self.buffer = pa.py_buffer(data)
        self.wide_offsets = data.size > _BINARY_OFFSET_MAX
        # Positions of the bytes that end a varint, found once when first needed.
        self.last_bytes: Positions | None = None

    def decode(self, node: AvroNode, position: Positions, end: Positions, path: str) -> pa.Array:
        kind = node.kind
        if kind == "record":
            children = [
                self.decode(field.node, position, end, f"{path}.{field.name}" if path else field.name)
                for field in node.fields
            ]
            assert isinstance(node.arrow_type, pa.StructType)
            if not children:
                return pa.Array.from_buffers(node.arrow_type, position.size, [None], children=[])
            return pa.StructArray.from_arrays(children, fields=list(node.arrow_type))
        if kind == "optional":
            return self._optional(node, position, end, path)
        if kind in ("int", "long"):
            values = self.read_long(position, end, path)
            if kind == "int":
                _refuse_any(
                    (values < _INT_MIN) | (values > _INT_MAX), "an Avro int is outside the 32-bit range", path
                )
                return _from_numpy(node.arrow_type, values.astype(np.int32))
            return _from_numpy(node.arrow_type, values)
        if kind == "string" or kind == "bytes":
            if node.logical == "decimal":
                start, length = self._sized(position, end, path)
                return self._decimal(node, start, length, path)
            return self._binary(node.arrow_type, position, end, path)
        if kind == "double" or kind == "float":
            width = 8 if kind == "double" else 4
            matrix = self._gather(position, end, width, path)
            return pa.array(matrix.view("<f8" if width == 8 else "<f4").reshape(-1))
        if kind == "boolean":
            self._require(position, end, 1, path)
            flags = self.data[position]
            _refuse_any(flags > 1, "an Avro boolean byte is neither 0 nor 1", path)
            position += 1
            return pa.array(flags.view(np.bool_))
        if kind == "enum":
            indices = self.read_long(position, end, path)
            outside = (indices < 0) | (indices >= len(node.symbols))
            _refuse_any(outside, f"an Avro enum index is outside its {len(node.symbols)} symbols", path)
            return pa.array(node.symbols, type=pa.utf8()).take(pa.array(indices))
        if kind == "fixed":
            if node.logical == "decimal":
                start = position.copy()
                self._require(position, end, node.size, path)
                position += node.size
                return self._decimal(node, start, np.full(position.size, node.size, np.int64), path)
            matrix = self._gather(position, end, node.size, path)
            return pa.Array.from_buffers(node.arrow_type, position.size, [None, pa.py_buffer(matrix)])
        if kind == "array" and _packed_width(node.inner) is not None:
            return self._packed_array(node, position, end, path)
        if kind == "array":
            item_types = [node.arrow_type.value_type]
            decode_item = self._array_item(node.inner)
            item_bytes_min = node.inner.encoded_bytes_min
            offsets, (items,) = self._blocks(position, end, path, decode_item, item_types, item_bytes_min)
            return pa.ListArray.from_arrays(pa.array(offsets), items, type=node.arrow_type)
        if kind == "map":
            entry_types = [pa.utf8(), node.arrow_type.item_type]
            decode_entry = self._map_entry(node.inner)
            entry_bytes_min = 1 + node.inner.encoded_bytes_min
            offsets, (keys, values) = self._blocks(
                position, end, path, decode_entry, entry_types, entry_bytes_min
            )
            return pa.MapArray.from_arrays(pa.array(offsets), keys, values, type=node.arrow_type)
        raise AssertionError(f"unknown Avro node kind {kind}")  # pragma: no cover

    # -- primitives ---------------------------------------------------------------------

    def read_varint(self, position: Positions, end: Positions, path: str) -> npt.NDArray[np.uint64]:
        """The raw unsigned varints at ``position``; advances the cursors past them."""
        data = self.data
        current = data[position]
        values = (current & 0x7F).astype(np.uint64)
        going = np.flatnonzero(current >= 0x80)
        lengths: Positions | None = None
        for shift in range(1, _VARINT_BYTES_MAX):
            if not going.size:
                break
            if lengths is None:
                lengths = np.ones(position.size, dtype=np.int64)
            current = data[position[going] + shift]
            values[going] |= (current & 0x7F).astype(np.uint64) << np.uint64(7 * shift)
            lengths[going] += 1
            going = going[current >= 0x80]
        if going.size:
            raise _fail("an Avro varint is longer than 10 bytes", path, int(going[0]))
        if lengths is None:
            position += 1
        else:
            position += lengths
        _refuse_any(position > end, "an Avro payload ends inside a number", path)
        return values

    def read_long(self, position: Positions, end: Positions, path: str) -> Positions:
        """Zig-zag varints (Avro int and long) at ``position``."""
        raw = self.read_varint(position, end, path)
        return (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)

    def _require(self, position: Positions, end: Positions, width: int, path: str) -> None:
        _refuse_any(end - position < width, "an Avro payload ends inside a value", path)

    def _gather(self, position: Positions, end: Positions, width: int, path: str) -> Bytes:
        """``width`` bytes at every cursor as a (records, width) matrix; advances."""
        self._require(position, end, width, path)
        matrix: Bytes = self.data[position[:, None] + np.arange(width, dtype=np.int64)]
        position += width
        return matrix

    def _sized(self, position: Positions, end: Positions, path: str) -> tuple[Positions, Positions]:
        """Start and length of length-prefixed bytes at every cursor; advances past them."""
        length = self.read_long(position, end, path)
        _refuse_any(length < 0, "an Avro length is negative", path)
        _refuse_any(
            length > end - position, "an Avro length is larger than the bytes left in the payload", path
        )
        start = position.copy()
        position += length
        return start, length

    def _binary(self, arrow_type: pa.DataType, position: Positions, end: Positions, path: str) -> pa.Array:
        start, _ = self._sized(position, end, path)
        count = start.size
        if not count:
            return pa.array([], type=arrow_type)
        # Starts and stops interleaved are non-decreasing (cursors move forward and the
        # payloads are in order), so they are the offsets of a binary array over the
        # whole buffer whose even elements are the values: Arrow's take copies them out.
        bounds = np.empty(2 * count + 1, dtype=np.int64 if self.wide_offsets else np.int32)
        bounds[0 : 2 * count : 2] = start
        bounds[1 : 2 * count : 2] = position
        bounds[2 * count] = position[-1]
        binary_type = pa.large_binary() if self.wide_offsets else pa.binary()
        spans = pa.Array.from_buffers(binary_type, 2 * count, [None, pa.py_buffer(bounds), self.buffer])
        values = spans.take(pa.array(np.arange(0, 2 * count, 2, dtype=np.int64)))
        if arrow_type == pa.binary():
            return values if not self.wide_offsets else values.cast(pa.binary())
        text_type = pa.large_utf8() if self.wide_offsets else pa.utf8()
        text = pa.Array.from_buffers(text_type, count, values.buffers())
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            raise _fail("an Avro string is not valid UTF-8", path) from None
        return text if not self.wide_offsets else text.cast(pa.utf8())

    def _decimal(self, node: AvroNode, start: Positions, length: Positions, path: str) -> pa.Array:
        """Big-endian two's complement (Avro decimal) → Arrow decimal128 values."""
        count = start.size
        widest = int(length.max()) if count else 0
        if node.kind == "bytes" and widest > _DECIMAL128_BYTES:
            raise _fail("an Avro decimal is longer than 16 bytes", path)
        present = np.flatnonzero(length > 0)
        negative = np.zeros(count, dtype=np.bool_)
        negative[present] = self.data[start[present]] >= 0x80
        matrix = np.zeros((count, _DECIMAL128_BYTES), dtype=np.uint8)
        matrix[negative] = 0xFF
        sign = np.where(negative, 0xFF, 0).astype(np.uint8)
        for little_end_position in range(widest):
            rows = np.flatnonzero(length > little_end_position)
            digits = self.data[start[rows] + length[rows] - 1 - little_end_position]
            if little_end_position < _DECIMAL128_BYTES:
                matrix[rows, little_end_position] = digits
            else:
                overflow = np.zeros(count, dtype=np.bool_)
                overflow[rows] = digits != sign[rows]
                _refuse_any(overflow, "an Avro decimal does not fit in 128 bits", path)
        return pa.Array.from_buffers(node.arrow_type, count, [None, pa.py_buffer(matrix)])

    # -- unions, arrays and maps --------------------------------------------------------

    def _optional(self, node: AvroNode, position: Positions, end: Positions, path: str) -> pa.Array:
        branch = self.read_long(position, end, path)
        _refuse_any((branch < 0) | (branch > 1), "an Avro union branch index is out of range", path)
        present = branch != node.null_branch
        rows = np.flatnonzero(present)
        if rows.size == position.size:
            return self.decode(node.inner, position, end, path)
        if not rows.size:
            return pa.nulls(position.size, type=node.arrow_type)
        subset = position[rows]
        values = self.decode(node.inner, subset, end[rows], path)
        position[rows] = subset
        slots = np.cumsum(present) - 1
        return values.take(pa.array(slots, mask=~present))

    def _array_item(self, items: AvroNode) -> _ItemDecoder:
        def decode_item(position: Positions, end: Positions, path: str) -> list[pa.Array]:
            return [self.decode(items, position, end, path)]

        return decode_item

    def _map_entry(self, values: AvroNode) -> _ItemDecoder:
        def decode_entry(position: Positions, end: Positions, path: str) -> list[pa.Array]:
            key = self._binary(pa.utf8(), position, end, f"{path}.key")
            return [key, self.decode(values, position, end, path)]

        return decode_entry

    def _blocks(
        self,
        position: Positions,
        end: Positions,
        path: str,
        decode_item: _ItemDecoder,
        item_types: list[pa.DataType],
        item_bytes_min: int,
    ) -> tuple[npt.NDArray[np.int32], list[pa.Array]]:
        """Avro array/map blocks at every cursor: list offsets and the item columns.

        Item ``j`` of every record that has more than ``j`` items is decoded in one
        call; the columns come out grouped by item position and are reordered by record
        with one take at the end.
        """
        count = position.size
        left_in_block = np.zeros(count, dtype=np.int64)
        item_counts = np.zeros(count, dtype=np.int64)
        going = np.arange(count, dtype=np.int64)
        steps: list[tuple[Positions, list[pa.Array]]] = []
        item_position = 0
        while going.size:
            starting = going[left_in_block[going] == 0]
            if starting.size:
                left_in_block[starting] = self._block_header(starting, position, end, path, item_bytes_min)
                going = going[left_in_block[going] > 0]
                if not going.size:
                    break
            subset = position[going]
            columns = decode_item(subset, end[going], f"{path}[{item_position}]")
            position[going] = subset
            steps.append((going, columns))
            item_counts[going] += 1
            left_in_block[going] -= 1
            item_position += 1
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(item_counts, out=offsets[1:])
        if offsets[-1] > _BINARY_OFFSET_MAX:
            raise _fail("an Avro batch has more array items than one column holds", path)
        if not steps:
            return offsets.astype(np.int32), [pa.array([], type=item_type) for item_type in item_types]
        return offsets.astype(np.int32), _items_by_record(steps, offsets)

    def _packed_array(self, node: AvroNode, position: Positions, end: Positions, path: str) -> pa.Array:
        """An array of numbers, booleans, enums or fixed: every item of a whole block of
        every record is located at once (fixed-width items by arithmetic, varints by the
        positions of their last bytes), so the cost does not grow with the longest
        array as the item-by-item path's does."""
        items = node.inner
        width = _packed_width(items)
        count = position.size
        item_counts = np.zeros(count, dtype=np.int64)
        rounds: list[tuple[Positions, Positions, Positions, pa.Array]] = []
        going = np.arange(count, dtype=np.int64)
        while going.size:
            block_count = self._block_header(going, position, end, path, items.encoded_bytes_min)
            has_items = block_count > 0
            going, block_count = going[has_items], block_count[has_items]
            if not going.size:
                break
            round_offsets = np.zeros(going.size + 1, dtype=np.int64)
            np.cumsum(block_count, out=round_offsets[1:])
            within = np.arange(round_offsets[-1], dtype=np.int64) - np.repeat(round_offsets[:-1], block_count)
            item_end = np.repeat(end[going], block_count)
            earlier = item_counts[going]
            try:
                if width:
                    starts = np.repeat(position[going], block_count) + within * width
                    following = position[going] + block_count * width
                else:
                    starts, following = self._varint_items(
                        going, position, block_count, item_end, within, path
                    )
                values = self.decode(items, starts.copy(), item_end, path)
            except SchemaViolation as error:
                if error.index is None:
                    raise
                row = int(np.searchsorted(round_offsets, error.index, side="right")) - 1
                item_number = int(within[error.index] + earlier[row])
                raise _fail(error.message, f"{path}[{item_number}]", int(going[row])) from None
            position[going] = following
            rounds.append((going, block_count, earlier, values))
            item_counts[going] += block_count
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(item_counts, out=offsets[1:])
        if offsets[-1] > _BINARY_OFFSET_MAX:
            raise _fail("an Avro batch has more array items than one column holds", path)
        item_type = node.arrow_type.value_type
        if not rounds:
            values = pa.array([], type=item_type)
        elif len(rounds) == 1:
            values = rounds[0][3]
        else:
            order = np.empty(int(offsets[-1]), dtype=np.int64)
            base = 0
            for rows, block_count, earlier, _ in rounds:
                total = int(block_count.sum())
                first_slot = np.repeat(offsets[rows] + earlier, block_count)
                row_firsts = np.repeat(np.cumsum(block_count) - block_count, block_count)
                order[first_slot + np.arange(total) - row_firsts] = np.arange(base, base + total)
                base += total
            values = pa.concat_arrays([round_values for *_, round_values in rounds]).take(pa.array(order))
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, type=node.arrow_type)

    def _varint_items(
        self,
        rows: Positions,
        position: Positions,
        block_count: Positions,
        item_end: Positions,
        within: Positions,
        path: str,
    ) -> tuple[Positions, Positions]:
        """Starts of consecutive varint items and the position after each row's last:
        item k of a block ends at the k-th byte at or after the block's start that has
        no continuation bit."""
        if self.last_bytes is None:
            self.last_bytes = np.flatnonzero(self.data < 0x80).astype(np.int64)
        last_bytes = self.last_bytes
        first_rank = np.searchsorted(last_bytes, position[rows])
        ranks = np.repeat(first_rank, block_count) + within
        np.minimum(ranks, last_bytes.size - 1, out=ranks)
        item_last = last_bytes[ranks]
        starts = np.where(within == 0, np.repeat(position[rows], block_count), last_bytes[ranks - 1] + 1)
        _refuse_any(item_last >= item_end, "an Avro payload ends inside a number", path)
        _refuse_any(item_last - starts >= _VARINT_BYTES_MAX, "an Avro varint is longer than 10 bytes", path)
        row_last = np.cumsum(block_count) - 1
        return starts, item_last[row_last] + 1

    def _block_header(
        self, rows: Positions, position: Positions, end: Positions, path: str, item_bytes_min: int
    ) -> Positions:
        """The item count of the next block of each of ``rows``; 0 ends the array. A
        count of more items than the bytes left can hold is refused here, before any
        item is decoded."""
        subset = position[rows]
        subset_end = end[rows]
        block_count = self.read_long(subset, subset_end, path)
        negative = np.flatnonzero(block_count < 0)
        if negative.size:
            # A negative count is followed by the block's size in bytes (Avro spec).
            sized = subset[negative]
            block_bytes = self.read_long(sized, subset_end[negative], path)
            subset[negative] = sized
            if np.flatnonzero((block_bytes < 0) | (block_bytes > subset_end[negative] - sized)).size:
                raise _fail("an Avro block size is negative or larger than the bytes left", path)
            block_count[negative] = -block_count[negative]
        items_room = (subset_end - subset) // max(item_bytes_min, 1)
        if np.flatnonzero((block_count < 0) | (block_count > items_room)).size:
            raise _fail("an Avro item count is larger than the bytes left in the payload", path)
        position[rows] = subset
        return block_count


_ItemDecoder = Callable[[Positions, Positions, str], list[pa.Array]]

# Items whose binary form is a fixed number of bytes, or one varint (width 0).
_PACKED_WIDTHS = {"boolean": 1, "float": 4, "double": 8, "int": 0, "long": 0, "enum": 0}


def _packed_width(items: AvroNode) -> int | None:
    if items.kind == "fixed":
        return items.size
    return _PACKED_WIDTHS.get(items.kind)


def _items_by_record(steps: list[tuple[Positions, list[pa.Array]]], offsets: Positions) -> list[pa.Array]:
    """Columns decoded item position by item position, reordered record by record."""
    column_count = len(steps[0][1])
    if len(steps) == 1:
        return steps[0][1]
    order = np.empty(int(offsets[-1]), dtype=np.int64)
    base = 0
    for item_position, (rows, _) in enumerate(steps):
        order[offsets[rows] + item_position] = np.arange(base, base + rows.size, dtype=np.int64)
        base += rows.size
    indices = pa.array(order)
    return [
        pa.concat_arrays([columns[column] for _, columns in steps]).take(indices)
        for column in range(column_count)
    ]


def _from_numpy(arrow_type: pa.DataType, values: npt.NDArray[np.generic]) -> pa.Array:
    return pa.Array.from_buffers(arrow_type, values.size, [None, pa.py_buffer(values)])
