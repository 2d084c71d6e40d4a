"""Kafka record batches (magic v2) to and from Arrow, in bulk.

Layout of a batch (all integers big-endian)::

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 (2)
    crc uint32 (CRC-32C of everything from attributes to the end)
    attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64
    producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32
    records (compressed as one block when attributes & 7 != 0)

and of a record, where varints are zigzag::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
    keyLength varint | key | valueLength varint | value
    headerCount varint | (keyLength varint | key | valueLength varint | value)*

How the work is split
---------------------
Decoding: a record's start depends on the previous record's length, so finding the
record boundaries is inherently sequential; it is the one per-record Python loop here
(one varint per record, about 0.1 µs each; see docs/decisions/0003-kafka-codec.md
for measurements). Everything else is vectorized with NumPy over all records at once:
each field is read at an array of positions, and keys, values and headers become Arrow
arrays by one ``take`` over a zero-copy view of the batch bytes.

Encoding needs no loop at all: the varint prefixes of every record are built as one
NumPy byte matrix, and Arrow's ``binary_join_element_wise`` concatenates prefixes, keys,
values and header blobs per record; the joined array's data buffer *is* the records
section of the batch.
"""

from __future__ import annotations

import dataclasses
import struct

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.protocols.kafka.codec.compression import Compression, compress, decompress
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.records import HEADERS_TYPE, INPUT_SCHEMA, TIMESTAMP_TYPE

_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_BYTES = _HEADER.size  # 61
_LENGTH_END = 12  # baseOffset + batchLength: batchLength counts the bytes after it
_CRC_FROM = 21  # attributes start here
MAGIC = 2

_ATTR_COMPRESSION = 0x07
_ATTR_LOG_APPEND_TIME = 0x08
_ATTR_TRANSACTIONAL = 0x10
_ATTR_CONTROL = 0x20

_SHIFTS = np.arange(10, dtype=np.uint64) * np.uint64(7)
_EMPTY = pa.py_buffer(b"")


class RecordOverLimit(DecodeError):
    """A well-formed record over one of the door's bounds (limits.header_count_max): the
    batch is refused as invalid (INVALID_RECORD, which clients do not retry), not as
    corrupt (CORRUPT_MESSAGE, which they retry forever)."""


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> int:
        return self.attributes & _ATTR_COMPRESSION

    @property
    def transactional(self) -> bool:
        return bool(self.attributes & _ATTR_TRANSACTIONAL)

    @property
    def control(self) -> bool:
        return bool(self.attributes & _ATTR_CONTROL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & _ATTR_LOG_APPEND_TIME)


@dataclasses.dataclass(frozen=True)
class DecodedBatch:
    """One batch: its header, its records as an INPUT_SCHEMA batch (key, value,
    headers, timestamp) and each record's offset delta."""

    header: BatchHeader
    records: pa.RecordBatch
    offset_deltas: np.ndarray


# -- decoding -------------------------------------------------------------------------


def decode_batches(data: bytes | memoryview, *, allow_partial: bool = False) -> list[DecodedBatch]:
    """Every batch in ``data`` (a Produce request's or Fetch response's records).

    Raises DecodeError for anything malformed. ``allow_partial`` ignores a truncated
    last batch, which a Fetch response may legally end with.
    """
    return [decode_batch(batch) for batch in _split(data, allow_partial)]


def check_batches(data: bytes | memoryview) -> list[BatchHeader]:
    """The header of every batch in ``data`` (a Produce request's records), checked
    without decoding its records into Arrow: the batches' framing, magic, lengths and
    CRC, the record count's bound, the compressed block's decompression, and the
    records delimited by their lengths, which must fill the batch exactly; and the
    header bound (limits.header_count_max: RecordOverLimit), which only a record long
    enough to hold that many headers (two bytes each at least) can break: a batch with
    one is decoded whole here. DecodeError where any fails.

    The CRC proves the bytes are those the client encoded, so a batch that passes
    fails ``decode_batches`` only if its client wrote malformed record fields under a
    right CRC. A transactional Produce is answered after these checks and decoded after
    its answer (decision 0016); about 50 us for 1,000 short records against 400 for the
    decode."""
    headers = []
    for batch in _split(data, False):
        header = _batch_header(batch)
        body = decompress(header.compression, batch[HEADER_BYTES:])
        ends = _record_ends(body, header.record_count)
        # The longest record (with its length varint) that cannot hold more headers than
        # the bound: each header takes two bytes at least (its key's and value's lengths).
        if len(ends) and int(np.diff(ends, prepend=0).max()) > 2 * (limits.header_count_max + 1):
            _decode_records(body, header.record_count, header.base_timestamp)
        headers.append(header)
    return headers


def _split(data: bytes | memoryview, allow_partial: bool) -> list[memoryview]:
    """``data`` cut into its batches (each complete, as its length says)."""
    batches = []
    position = 0
    end = len(data)
    while position < end:
        if end - position < HEADER_BYTES:
            if allow_partial:
                break
            raise DecodeError(f"{end - position} trailing bytes are too few for a record batch")
        (length,) = struct.unpack_from(">i", data, position + 8)
        batch_end = position + _LENGTH_END + length
        if length < HEADER_BYTES - _LENGTH_END:
            raise DecodeError(f"record batch length {length} is smaller than a batch header")
        if batch_end > end:
            if allow_partial:
                break
            raise DecodeError(f"record batch of {length} bytes runs past the end of the data")
        batches.append(memoryview(data)[position:batch_end])
        position = batch_end
    return batches


def decode_batch(data: bytes | memoryview) -> DecodedBatch:
    """One complete batch."""
    header = _batch_header(data)
    body = decompress(header.compression, data[HEADER_BYTES:])
    records, deltas = _decode_records(body, header.record_count, header.base_timestamp)
    return DecodedBatch(header, records, deltas)


def _batch_header(data: bytes | memoryview) -> BatchHeader:
    """A complete batch's header, once its magic, length, CRC and record count are
    checked."""
    (
        base_offset,
        length,
        leader_epoch,
        magic,
        crc,
        attributes,
        last_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise DecodeError(
            f"record batch magic {magic} is not supported; clients send magic 2 (Kafka >= 0.11)"
        )
    if len(data) != _LENGTH_END + length:
        raise DecodeError("record batch length does not match its data")
    actual = crc32c.crc32c(data[_CRC_FROM:])
    if actual != crc:
        raise DecodeError(f"record batch CRC mismatch: header says {crc:#010x}, data has {actual:#010x}")
    if count < 0 or count > limits.append_records_max:
        raise DecodeError(f"record batch declares {count} records")
    return BatchHeader(
        base_offset,
        leader_epoch,
        attributes,
        last_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )


def _record_ends(data: bytes | memoryview, count: int) -> np.ndarray:
    """The end of each record: the sequential part of decoding.

    Only the length varint of each record is read here. Records of one size come in
    runs (a producer's records often have one layout; only their offset and timestamp
    deltas grow, a byte at a time): from a record's length varint, the next records of
    its run are where the same varint bytes repeat at its stride, which one gather
    over the rest of the batch finds. A run of one goes back to the loop over records
    (_scan_record_ends) for a stretch that doubles each time, so a batch of records of
    every size costs about what the loop alone costs.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    size = len(buffer)
    ends = np.empty(count, dtype=np.int64)
    done = 0
    position = 0
    stretch = _SCAN_STRETCH
    while done < count:
        try:
            value, start = _length_varint(data, position)
        except IndexError:
            raise DecodeError(f"the records end inside record {done} of {count}") from None
        if value & 1:
            raise DecodeError("a record has a negative length")
        stride = start - position + (value >> 1)
        if stride <= 0:  # pragma: no cover - a length varint takes at least one byte
            raise DecodeError("a record has no bytes")
        # The records whose length varint starts inside the data, at most.
        candidates = min(count - done, (size - position - 1) // stride + 1)
        run = 1
        if candidates > 1:
            starts = position + stride * np.arange(1, candidates, dtype=np.int64)
            width = start - position
            inside = starts + width <= size
            same = inside.copy()
            for offset in range(width):
                same &= buffer[np.minimum(starts + offset, size - 1)] == buffer[position + offset]
            run += len(same) if same.all() else int(np.argmin(same))
        if run > 1:
            ends[done : done + run] = position + stride * np.arange(1, run + 1, dtype=np.int64)
            done += run
            position += stride * run
            stretch = _SCAN_STRETCH
            continue
        # A run of one: the loop over records for a stretch, longer each time.
        take = min(stretch, count - done)
        position = _scan_record_ends(data, position, ends, done, take, count)
        done += take
        stretch *= 2
    if position != size:
        raise DecodeError(f"the records take {position} bytes but the batch holds {size}")
    return ends


# Records the loop delimits before runs of one size are looked for again (doubled after
# each run of one).
_SCAN_STRETCH = 16


def _length_varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    """A record's raw length varint at ``position`` and where the record's fields start
    (IndexError past the data)."""
    byte = data[position]
    if byte < 0x80:
        return byte, position + 1
    second = data[position + 1]
    if second < 0x80:
        return (byte & 0x7F) | (second << 7), position + 2
    return _long_varint(data, position)


def _scan_record_ends(
    data: bytes | memoryview, position: int, ends: np.ndarray, done: int, take: int, count: int
) -> int:
    """Delimit ``take`` records from ``position`` one by one into ``ends[done:]``; where
    the last one ends.

    A valid length is a non-negative zigzag value, i.e. an even raw varint, so the loop
    ORs the raw values together and checks the lowest bit once at the end instead of
    per record.
    """
    found: list[int] = []
    append = found.append
    seen = 0
    try:
        for _ in range(take):
            byte = data[position]
            if byte < 0x80:
                seen |= byte
                position += 1 + (byte >> 1)
            else:
                second = data[position + 1]
                if second < 0x80:
                    value = (byte & 0x7F) | (second << 7)
                    position += 2
                else:
                    value, position = _long_varint(data, position)
                seen |= value
                position += value >> 1
            append(position)
    except IndexError:
        raise DecodeError(f"the records end inside record {done + len(found)} of {count}") from None
    if seen & 1:
        raise DecodeError("a record has a negative length")
    ends[done : done + take] = found
    return position


def _long_varint(data: bytes | memoryview, position: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 28:
            raise DecodeError("a record length varint is longer than 5 bytes")


def _read_varints(
    buffer: np.ndarray, positions: np.ndarray, ends: np.ndarray, wide: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Zigzag varints at ``positions`` (each inside its record): values and sizes.

    Vectorized byte by byte: each round reads one more byte of only those varints
    that continue, so 1-byte varints cost one gather and 2-byte ones two.
    """
    count = len(positions)
    if count == 0:
        return positions.copy(), positions.copy()
    if (positions >= ends).any():
        raise DecodeError("a record ends before all its fields")
    byte = buffer[positions]
    unsigned = (byte & 0x7F).astype(np.uint64)
    sizes = np.ones(count, dtype=np.int64)
    going = np.flatnonzero(byte >= 0x80)
    last = len(buffer) - 1
    shift = 7
    while len(going):
        if shift > (63 if wide else 28):
            raise DecodeError("a varint in a record is too long")
        at = np.minimum(positions[going] + sizes[going], last)
        byte = buffer[at]
        unsigned[going] |= (byte & 0x7F).astype(np.uint64) << np.uint64(shift)
        sizes[going] += 1
        going = going[byte >= 0x80]
        shift += 7
    if (positions + sizes > ends).any():
        raise DecodeError("a varint runs past the end of its record")
    half = (unsigned >> np.uint64(1)).view(np.int64)
    sign = (unsigned & np.uint64(1)).view(np.int64)
    return half ^ -sign, sizes


def _decode_records(
    body: bytes | memoryview, count: int, base_timestamp: int
) -> tuple[pa.RecordBatch, np.ndarray]:
    ends = _record_ends(body, count)
    buffer = np.frombuffer(body, dtype=np.uint8)
    arrow_buffer = pa.py_buffer(body)
    begins = np.zeros(count, dtype=np.int64)
    begins[1:] = ends[:-1]
    lengths, sizes = _read_varints(buffer, begins, ends, wide=False)
    position = begins + sizes
    if (position + lengths != ends).any():
        raise DecodeError("record lengths are inconsistent")
    position += 1  # the record attributes byte is unused
    timestamp_deltas, sizes = _read_varints(buffer, position, ends, wide=True)
    position += sizes
    offset_deltas, sizes = _read_varints(buffer, position, ends, wide=False)
    position += sizes
    key_lengths, sizes = _read_varints(buffer, position, ends, wide=False)
    position += sizes
    key_starts = position.copy()
    position += np.maximum(key_lengths, 0)
    value_lengths, sizes = _read_varints(buffer, position, ends, wide=False)
    position += sizes
    value_starts = position.copy()
    position += np.maximum(value_lengths, 0)
    header_counts, sizes = _read_varints(buffer, position, ends, wide=False)
    position += sizes
    if count and header_counts.min() < 0:
        raise DecodeError("a record has a negative header count")
    if count and header_counts.max() > limits.header_count_max:
        index = int(np.argmax(header_counts > limits.header_count_max))
        raise RecordOverLimit(
            f"record {index} of the batch has {int(header_counts[index])} headers; a record has at "
            f"most {limits.header_count_max}"
        )
    headers = _decode_headers(buffer, arrow_buffer, position, ends, header_counts)
    if (position != ends).any():
        raise DecodeError("a record's fields do not add up to its length")
    if (key_lengths < -1).any() or (value_lengths < -1).any():
        raise DecodeError("a record has a key or value length below -1")
    keys = _slices(arrow_buffer, key_starts, key_lengths, pa.binary())
    values = _slices(arrow_buffer, value_starts, value_lengths, pa.binary())
    timestamps = _timestamps(base_timestamp, timestamp_deltas)
    batch = pa.RecordBatch.from_arrays([keys, values, headers, timestamps], schema=INPUT_SCHEMA)
    return batch, offset_deltas


def _decode_headers(
    buffer: np.ndarray, arrow_buffer: pa.Buffer, position: np.ndarray, ends: np.ndarray, counts: np.ndarray
) -> pa.Array:
    total = int(counts.sum())
    if total == 0:
        return pa.nulls(len(counts), HEADERS_TYPE)
    entry_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=entry_offsets[1:])
    key_starts = np.empty(total, dtype=np.int64)
    key_lengths = np.empty(total, dtype=np.int64)
    value_starts = np.empty(total, dtype=np.int64)
    value_lengths = np.empty(total, dtype=np.int64)
    for ordinal in range(int(counts.max())):
        active = np.flatnonzero(counts > ordinal)
        at = position[active]
        limit = ends[active]
        entry = entry_offsets[active] + ordinal
        lengths, sizes = _read_varints(buffer, at, limit, wide=False)
        if (lengths < 0).any():
            raise DecodeError("a header key has a negative length")
        at += sizes
        key_starts[entry] = at
        key_lengths[entry] = lengths
        at += lengths
        lengths, sizes = _read_varints(buffer, at, limit, wide=False)
        at += sizes
        value_starts[entry] = at
        value_lengths[entry] = lengths
        at += np.maximum(lengths, 0)
        if (at > limit).any():
            raise DecodeError("a header runs past the end of its record")
        position[active] = at
    keys = _slices(arrow_buffer, key_starts, key_lengths, pa.utf8())
    values = _slices(arrow_buffer, value_starts, value_lengths, pa.binary())
    offsets = pa.array(entry_offsets.astype(np.int32))
    mask = pa.array(counts == 0)
    return pa.MapArray.from_arrays(offsets, keys, values, type=HEADERS_TYPE, mask=mask)


def _slices(data: pa.Buffer, starts: np.ndarray, lengths: np.ndarray, kind: pa.DataType) -> pa.Array:
    """The byte ranges (start, length) of ``data`` as an Arrow array; length -1 is null.

    Ranges are in increasing, non-overlapping order, so [s0, e0, s1, e1, ...] is a valid
    offsets buffer whose even elements are the wanted values: one ``take`` copies them.
    """
    count = len(starts)
    if count == 0:
        return pa.array([], kind)
    valid = lengths >= 0
    offsets = np.empty(2 * count, dtype=np.int32)
    offsets[0::2] = starts
    offsets[1::2] = starts + np.maximum(lengths, 0)
    spread = pa.Array.from_buffers(pa.binary(), 2 * count - 1, [None, pa.py_buffer(offsets), data])
    taken = spread.take(pa.array(np.arange(0, 2 * count - 1, 2, dtype=np.int32)))
    nulls = count - int(valid.sum())
    if nulls:
        bitmap = pa.array(valid).buffers()[1]
        taken = pa.Array.from_buffers(pa.binary(), count, [bitmap, *taken.buffers()[1:]], null_count=nulls)
    if kind == pa.utf8():
        try:
            return taken.cast(pa.utf8())
        except pa.ArrowInvalid:
            raise DecodeError("a header key is not valid UTF-8") from None
    return taken


def _timestamps(base_timestamp: int, deltas: np.ndarray) -> pa.Array:
    """Kafka milliseconds to Odradek microseconds; a negative time (-1: none) is null."""
    millis = deltas + np.int64(base_timestamp)
    valid = millis >= 0
    micros = pa.py_buffer(millis * 1000)
    if valid.all():
        return pa.Array.from_buffers(TIMESTAMP_TYPE, len(millis), [None, micros])
    bitmap = pa.array(valid).buffers()[1]
    return pa.Array.from_buffers(
        TIMESTAMP_TYPE, len(millis), [bitmap, micros], null_count=int((~valid).sum())
    )


# -- encoding -------------------------------------------------------------------------


def _zigzag(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64, copy=False)
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


_VARINT_LIMITS = np.array([1 << (7 * group) for group in range(1, 10)], dtype=np.uint64)


def _varint_sizes(unsigned: np.ndarray) -> np.ndarray:
    """Bytes each unsigned value takes as a varint (1..10)."""
    return np.searchsorted(_VARINT_LIMITS, unsigned, side="right").astype(np.int64) + 1


def _varint_rows(columns: list[np.ndarray]) -> pa.Array:
    """One binary value per row: the concatenated zigzag varints of ``columns``.

    Each column contributes as many byte columns as its longest varint needs; a byte
    matrix of all of them is flattened row by row through a mask of the bytes in use.
    """
    byte_columns = []
    masks = []
    total = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        unsigned = _zigzag(column)
        sizes = _varint_sizes(unsigned)
        total += sizes
        for group in range(int(sizes.max()) if len(sizes) else 1):
            piece = ((unsigned >> np.uint64(7 * group)) & np.uint64(0x7F)).astype(np.uint8)
            piece |= np.where(sizes > group + 1, np.uint8(0x80), np.uint8(0))
            byte_columns.append(piece)
            masks.append(sizes > group)
    data = np.stack(byte_columns, axis=1)[np.stack(masks, axis=1)]
    offsets = np.zeros(len(total) + 1, dtype=np.int32)
    np.cumsum(total, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(total), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _lengths(column: pa.Array) -> np.ndarray:
    """Byte lengths of a binary column, -1 for null."""
    lengths = pc.fill_null(pc.binary_length(column), -1)
    result: np.ndarray = np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
    return result


def _binary_offsets(array: pa.Array) -> np.ndarray:
    """The int32 offsets of a binary array, as a NumPy view (length + 1 entries)."""
    buffer = array.buffers()[1]
    return np.frombuffer(buffer, dtype=np.int32)[array.offset : array.offset + len(array) + 1]


def _join(*parts: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*parts, b"", null_handling="replace", null_replacement="")


def _header_blobs(headers: pa.Array) -> tuple[np.ndarray, pa.Array | None]:
    """Per record: header count and the encoded headers (None when no record has any)."""
    count = len(headers)
    if headers.null_count == count:
        return np.zeros(count, dtype=np.int64), None
    offsets = headers.offsets.to_numpy().astype(np.int64)
    first = int(offsets[0])
    offsets -= first
    counts = np.diff(offsets)
    if headers.null_count and (counts[~headers.is_valid().to_numpy(zero_copy_only=False)] != 0).any():
        raise ValueError("a null headers entry covers header values; the headers column is malformed")
    entries = int(offsets[-1])
    if entries == 0:
        return counts, None
    keys = headers.keys.slice(first, entries).cast(pa.binary())
    values = headers.items.slice(first, entries)
    key_lengths = _lengths(keys)
    value_lengths = _lengths(values)
    encoded = _join(_varint_rows([key_lengths]), keys, _varint_rows([value_lengths]), values)
    joined_offsets = _binary_offsets(encoded)
    blob_offsets = joined_offsets[offsets].astype(np.int32)
    blobs = pa.Array.from_buffers(
        pa.binary(), count, [None, pa.py_buffer(blob_offsets), encoded.buffers()[2]]
    )
    return counts, blobs


def encode_batch(
    records: pa.RecordBatch | pa.Table,
    *,
    base_offset: int | None = None,
    last_offset: int | None = None,
    compression: Compression = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = 0,
) -> bytes:
    """One record batch holding ``records`` (columns offset, timestamp, key, value,
    headers, as stored). ``last_offset`` may lie beyond the last record (a batch whose
    tail was filtered out, as after compaction) so that readers move past it; with no
    records at all the batch is empty and only moves readers on."""
    if isinstance(records, pa.Table):
        records = records.combine_chunks().to_batches()[0] if records.num_rows else None
    count = 0 if records is None else records.num_rows
    if records is None or count == 0:
        if base_offset is None or last_offset is None:
            raise ValueError("an empty batch needs base_offset and last_offset")
        return _assemble(
            base_offset,
            last_offset - base_offset,
            -1,
            -1,
            0,
            b"",
            compression,
            producer_id,
            producer_epoch,
            base_sequence,
            partition_leader_epoch,
        )
    offsets = records.column("offset").to_numpy(zero_copy_only=False).astype(np.int64)
    base = int(offsets[0]) if base_offset is None else base_offset
    last = int(offsets[-1]) if last_offset is None else last_offset
    millis = _millis(records.column("timestamp"))
    base_timestamp = int(millis[0])
    keys = records.column("key")
    values = records.column("value")
    key_lengths = _lengths(keys)
    value_lengths = _lengths(values)
    header_counts, blobs = _header_blobs(records.column("headers"))
    timestamp_deltas = millis - base_timestamp
    offset_deltas = offsets - base
    value_prefix = _varint_rows([value_lengths])
    header_prefix = _varint_rows([header_counts])
    body_sizes = (
        1
        + _varint_sizes(_zigzag(timestamp_deltas))
        + _varint_sizes(_zigzag(offset_deltas))
        + _varint_sizes(_zigzag(key_lengths))
        + np.maximum(key_lengths, 0)
        + _varint_sizes(_zigzag(value_lengths))
        + np.maximum(value_lengths, 0)
        + _varint_sizes(_zigzag(header_counts))
    )
    if blobs is not None:
        body_sizes += pc.binary_length(blobs).to_numpy(zero_copy_only=False)
    attributes = np.zeros(count, dtype=np.int64)
    prefix = _varint_rows([body_sizes, attributes, timestamp_deltas, offset_deltas, key_lengths])
    parts = [prefix, keys, value_prefix, values, header_prefix]
    if blobs is not None:
        parts.append(blobs)
    joined = _join(*parts)
    joined_offsets = _binary_offsets(joined)
    start, stop = int(joined_offsets[0]), int(joined_offsets[-1])
    body = joined.buffers()[2]
    body_bytes = memoryview(body)[start:stop] if body is not None else b""
    return _assemble(
        base,
        last - base,
        base_timestamp,
        int(millis.max()),
        count,
        body_bytes,
        compression,
        producer_id,
        producer_epoch,
        base_sequence,
        partition_leader_epoch,
    )


def _millis(column: pa.Array) -> np.ndarray:
    micros = column.cast(pa.int64()) if column.type != pa.int64() else column
    values = np.asarray(pc.fill_null(micros, -1000).to_numpy(zero_copy_only=False), dtype=np.int64)
    result: np.ndarray = values // 1000
    return result


def _assemble(
    base_offset: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    count: int,
    body: bytes | memoryview,
    compression: Compression,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    partition_leader_epoch: int,
) -> bytes:
    if compression != Compression.NONE and count:
        body = compress(compression, bytes(body))
    attributes = int(compression) if count else 0
    header = bytearray(
        _HEADER.pack(
            base_offset,
            _HEADER.size - _LENGTH_END + len(body),
            partition_leader_epoch,
            MAGIC,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(memoryview(header)[_CRC_FROM:]))
    struct.pack_into(">I", header, 17, crc)
    return b"".join((header, body))
