"""Record batches (magic v2) to and from Arrow, and the virtual-partition hash.

Goal: any set of records -- null or empty keys and values, headers with null values,
timestamps, offsets with gaps -- survives encode/decode under every compression codec;
batches written by another implementation decode, and ours are read by it; corruption
(CRC, lengths, varints, magic) is refused with DecodeError, never another exception;
an empty batch only moves readers on; murmur2 matches Kafka's partitioner.

Method: hypothesis generates the records; aiokafka's record codec (a C/Python
implementation of the same format) is the independent reference where installed;
kafka-python's murmur2 is the reference hash.
"""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek.protocols.kafka.codec.compression import Compression
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.codec.records import (
    HEADER_BYTES,
    _record_ends,
    decode_batch,
    decode_batches,
    encode_batch,
)
from odradek.protocols.kafka.partitions import murmur2, partition_of
from odradek.records import STORED_SCHEMA

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

records_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.none() | st.binary(max_size=20),
            "value": st.none() | st.binary(max_size=300),
            "headers": st.none()
            | st.lists(
                st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), min_size=1, max_size=4
            ),
            "millis": st.integers(0, 2**41),
            "gap": st.integers(1, 3),
        }
    ),
    min_size=1,
    max_size=60,
)


def stored(rows: list[dict[str, Any]], base: int = 100) -> pa.RecordBatch:
    offset = base
    out = []
    for row in rows:
        out.append(
            {
                "offset": offset,
                "timestamp": row["millis"] * 1000,
                "key": row["key"],
                "value": row["value"],
                "headers": row["headers"],
                "version": None,
            }
        )
        offset += row["gap"]
    return pa.RecordBatch.from_pylist(out, schema=STORED_SCHEMA)


@SETTINGS
@given(records_strategy, st.sampled_from(list(Compression)))
def test_records_round_trip_under_every_codec(rows: list[dict[str, Any]], codec: Compression) -> None:
    batch = stored(rows)
    data = encode_batch(batch, compression=codec, last_offset=int(batch.column("offset")[-1].as_py()) + 5)
    (decoded,) = decode_batches(data)
    assert decoded.header.base_offset == 100 and decoded.header.compression == codec
    assert decoded.header.last_offset_delta == batch.column("offset")[-1].as_py() + 5 - 100
    assert (decoded.offset_deltas + 100).tolist() == batch.column("offset").to_pylist()
    got = decoded.records
    assert got.column("key").to_pylist() == [r["key"] for r in rows]
    assert got.column("value").to_pylist() == [r["value"] for r in rows]
    assert got.column("headers").to_pylist() == [r["headers"] for r in rows]
    assert got.column("timestamp").cast(pa.int64()).to_pylist() == [r["millis"] * 1000 for r in rows]


@SETTINGS
@given(records_strategy, st.sampled_from([0, 1, 2, 3, 4]))
def test_reference_implementation_agrees_both_ways(rows: list[dict[str, Any]], codec: int) -> None:
    reference = pytest.importorskip("aiokafka.record.default_records")
    builder = reference.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=7,
        producer_epoch=1,
        base_sequence=3,
        batch_size=1 << 30,
    )
    for index, row in enumerate(rows):
        builder.append(
            index,
            timestamp=row["millis"],
            key=row["key"],
            value=row["value"],
            headers=list(row["headers"] or []),
        )
    theirs = decode_batch(bytes(builder.build()))
    assert theirs.header.producer_id == 7 and theirs.header.base_sequence == 3
    assert theirs.records.column("key").to_pylist() == [r["key"] for r in rows]
    assert theirs.records.column("value").to_pylist() == [r["value"] for r in rows]
    assert theirs.records.column("headers").to_pylist() == [r["headers"] for r in rows]
    ours = reference.DefaultRecordBatch(bytearray(encode_batch(stored(rows), compression=Compression(codec))))
    assert ours.validate_crc()
    read = list(ours)
    assert [r.key for r in read] == [r["key"] for r in rows]
    assert [r.value for r in read] == [r["value"] for r in rows]
    assert [list(r.headers) for r in read] == [list(r["headers"] or []) for r in rows]
    assert [r.timestamp for r in read] == [r["millis"] for r in rows]


@SETTINGS
@given(st.binary(min_size=0, max_size=200), st.integers(0, 400), st.integers(0, 255))
def test_corruption_is_refused_with_decode_error(noise: bytes, position: int, byte: int) -> None:
    good = encode_batch(
        stored([{"key": b"k", "value": b"v" * 30, "headers": [("h", b"1")], "millis": 5, "gap": 1}] * 3)
    )
    mutated = bytearray(good)
    mutated[position % len(mutated)] = byte
    for candidate in (bytes(mutated), good[: position % len(good)], noise, good + noise):
        try:
            decode_batches(candidate)
        except DecodeError:
            pass


def reference_record_ends(body: bytes, count: int) -> list[int] | None:
    """Each record's end, one length varint after the other (None: not a valid body)."""
    ends, position = [], 0
    for _ in range(count):
        raw, shift = 0, 0
        while True:
            if position >= len(body) or shift > 28:
                return None
            byte = body[position]
            position += 1
            raw |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if raw & 1:
            return None
        position += raw >> 1
        ends.append(position)
    return ends if position == len(body) else None


# Batches whose records come in runs of one size (as one producer's records do), so the
# run search of the record delimiting is taken, broken by records of other sizes.
runs_strategy = st.lists(
    st.tuples(st.integers(1, 90), st.none() | st.binary(max_size=300), st.integers(0, 2**41)),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(runs_strategy, st.integers(0, 2**16), st.integers(0, 255), st.booleans())
def test_records_in_runs_are_delimited_as_one_by_one(
    runs: list[tuple[int, bytes | None, int]], position: int, byte: int, mutate: bool
) -> None:
    rows = [
        {"key": None, "value": value, "headers": None, "millis": millis, "gap": 1}
        for length, value, millis in runs
        for _ in range(length)
    ]
    body = bytearray(encode_batch(stored(rows))[HEADER_BYTES:])
    if mutate:  # a damaged body (the CRC would have caught it): refused, never misread
        body[position % len(body)] = byte
    expected = reference_record_ends(bytes(body), len(rows))
    if expected is None:
        with pytest.raises(DecodeError):
            _record_ends(bytes(body), len(rows))
    else:
        assert _record_ends(bytes(body), len(rows)).tolist() == expected
    if not mutate:
        (decoded,) = decode_batches(encode_batch(stored(rows)))
        assert decoded.records.column("value").to_pylist() == [row["value"] for row in rows]


def test_crc_magic_and_lengths_are_checked() -> None:
    good = bytearray(
        encode_batch(stored([{"key": None, "value": b"x", "headers": None, "millis": 1, "gap": 1}]))
    )
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    with pytest.raises(DecodeError, match="CRC"):
        decode_batches(bytes(flipped))
    old = bytearray(good)
    old[16] = 1
    with pytest.raises(DecodeError, match="magic"):
        decode_batches(bytes(old))
    with pytest.raises(DecodeError):
        decode_batches(bytes(good[:-3]))
    assert decode_batches(bytes(good[:-3]), allow_partial=True) == []
    huge = bytearray(good)
    struct.pack_into(">i", huge, 57, 2**31 - 1)  # record count
    with pytest.raises(DecodeError):
        decode_batches(bytes(huge))


def test_empty_batch_spans_offsets_without_records() -> None:
    empty = encode_batch(pa.Table.from_batches([], schema=STORED_SCHEMA), base_offset=10, last_offset=19)
    (decoded,) = decode_batches(empty)
    assert decoded.header.record_count == 0 and decoded.header.last_offset_delta == 9
    assert decoded.records.num_rows == 0


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=50))
def test_murmur2_matches_kafkas_partitioner(keys: list[bytes]) -> None:
    reference = pytest.importorskip("kafka.partitioner.default")
    assert [int(h) for h in murmur2(pa.array(keys, pa.binary()))] == [reference.murmur2(k) for k in keys]


def test_keyless_records_spread_by_offset() -> None:
    keys = pa.array([None, b"a", None, None], pa.binary())
    offsets = pa.array([0, 1, 2, 3]).to_numpy()
    partitions = partition_of(keys, offsets, 3).tolist()
    assert partitions[0] == 0 and partitions[2] == 2 and partitions[3] == 0
    assert partitions[1] == (int(murmur2(pa.array([b"a"]))[0]) & 0x7FFFFFFF) % 3
