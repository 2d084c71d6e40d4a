"""Poison records are refused on append, at every door (records.py).

Goal: a record a reader could not decode never gets into a topic. A header name that
is not valid UTF-8 (or null) once made every consumer of the record fail and a
consumer group loop on it forever; a timestamp outside the years 1 to 9999 fails every
Python reader; more than ``header_count_max`` headers is over the documented bound.
Each is refused with a clear error naming the record (and the header), and nothing of
the append is written. Valid batches, also sliced ones whose buffers hold bad names
outside the slice, go through. ``undecodable_rows`` finds such records among stored
ones (what consumers use to skip them).

Method: batches built with Arrow buffers directly (pyarrow itself refuses to build
invalid UTF-8 strings); calls to ``to_input_batch``, appends to an engine, and a raw
``pyarrow.flight`` DoPut through the Flight door, with the topic's next offset checked
after each refusal. The Kafka door's codec refuses such names on its own (its tests).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek import limits
from odradek.engine import Engine
from odradek.errors import InvalidRequest, RequestTooLarge
from odradek.protocols.flight.server import FlightService
from odradek.records import INPUT_SCHEMA, TIMESTAMP_TYPE, to_input_batch, undecodable_rows

LIMIT = limits.append_bytes_max_default
BAD_NAME = b"\xff\xfe-not-utf8"


UTF8 = pa.utf8()


def _strings(values: list[bytes], kind: pa.DataType = UTF8) -> pa.Array:
    """A string (or binary) array holding exactly these bytes, valid UTF-8 or not."""
    large = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
    offsets = np.concatenate(([0], np.cumsum([len(v) for v in values]))).astype(
        np.int64 if large else np.int32
    )
    return pa.Array.from_buffers(
        kind, len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    )


def _headers(per_record: list[list[bytes]], kind: pa.DataType = UTF8) -> pa.MapArray:
    """A headers column: for each record, its header names (every value is b"v")."""
    names = [name for record in per_record for name in record]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in per_record]))).astype(np.int32)
    return pa.MapArray.from_arrays(pa.array(offsets), _strings(names, kind), pa.array([b"v"] * len(names)))


def _batch(headers: pa.Array, timestamps: pa.Array | None = None) -> pa.RecordBatch:
    count = len(headers)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([f"k{i}".encode() for i in range(count)], pa.binary()),
            pa.array([f"v{i}".encode() for i in range(count)], pa.binary()),
            headers,
            timestamps if timestamps is not None else pa.nulls(count, TIMESTAMP_TYPE),
        ],
        names=INPUT_SCHEMA.names,
    )


def _micros(count: int, at: int, micros: int) -> pa.Array:
    values = np.full(count, 1_700_000_000_000_000, dtype=np.int64)
    values[at] = micros
    return pa.array(values).view(TIMESTAMP_TYPE)


# -- header names -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [pa.utf8(), pa.binary(), pa.large_utf8(), pa.large_binary()])
def test_a_header_name_that_is_not_utf8_is_refused_naming_record_and_header(kind: pa.DataType) -> None:
    records: list[list[bytes]] = [
        [b"a", b"b"],
        [],
        [b"c"],
        [b"d", b"e", b"f"],
        [b"g"],
        [b"h", BAD_NAME],
        [b"i"],
    ]
    with pytest.raises(InvalidRequest, match="record 5 has a header named") as caught:
        to_input_batch(_batch(_headers(records, kind)), LIMIT)
    assert repr(BAD_NAME) in caught.value.message and "UTF-8" in caught.value.message


def test_the_first_bad_name_is_the_one_reported() -> None:
    names = [[f"h{i}".encode()] for i in range(1000)]
    names[700] = [b"x\xc3"]  # a truncated two-byte sequence
    names[300] = [b"ok", b"\xed\xa0\x80"]  # an encoded surrogate: not UTF-8 either
    with pytest.raises(InvalidRequest, match="record 300 has a header named"):
        to_input_batch(_batch(_headers(names)), LIMIT)


def test_a_character_split_across_two_names_is_refused() -> None:
    acute = "é".encode()  # two bytes
    first, second = b"a" + acute[:1], acute[1:] + b"b"  # together "aéb", apart cut in two
    with pytest.raises(InvalidRequest, match=re.escape(f"record 0 has a header named {first!r}")):
        to_input_batch(_batch(_headers([[first, second]])), LIMIT)
    names = [[b"ascii", "naïve".encode(), "日本語".encode()]]
    headers = to_input_batch(_batch(_headers(names)), LIMIT).column("headers").to_pylist()
    assert [name for name, _ in headers[0]] == ["ascii", "naïve", "日本語"]


def test_valid_names_pass_also_in_a_slice_whose_buffers_hold_bad_ones() -> None:
    records = [[b"a"], [BAD_NAME], [b"b", "é".encode()], ["日本".encode()], [BAD_NAME]]
    batch = _batch(_headers(records)).slice(2, 2)  # the bad names lie outside the slice
    result = to_input_batch(batch, LIMIT)
    assert result.column("headers").to_pylist() == [[("b", b"v"), ("é", b"v")], [("日本", b"v")]]
    assert undecodable_rows(result).tolist() == []


def test_a_bad_name_through_dicts_cannot_happen_and_valid_dicts_pass() -> None:
    batch = to_input_batch([{"value": b"v", "headers": {"ünïcode": b"\xff", "plain": None}}], LIMIT)
    assert batch.column("headers").to_pylist() == [[("ünïcode", b"\xff"), ("plain", None)]]


def test_more_headers_than_the_limit_are_refused() -> None:
    per_record = [[b"a"], [f"h{i}".encode() for i in range(limits.header_count_max + 1)]]
    with pytest.raises(RequestTooLarge, match=f"record 1 has {limits.header_count_max + 1} headers"):
        to_input_batch(_batch(_headers(per_record)), LIMIT)
    at_limit = [[f"h{i}".encode() for i in range(limits.header_count_max)]]
    assert to_input_batch(_batch(_headers(at_limit)), LIMIT).num_rows == 1


# -- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("micros", [limits.timestamp_micros_max + 1, limits.timestamp_micros_min - 1, 2**62])
def test_a_timestamp_readers_cannot_decode_is_refused(micros: int) -> None:
    batch = _batch(pa.nulls(4, INPUT_SCHEMA.field("headers").type), _micros(4, 2, micros))
    with pytest.raises(InvalidRequest, match=f"record 2 has a timestamp of {micros} microseconds"):
        to_input_batch(batch, LIMIT)


def test_the_extreme_timestamps_readers_can_decode_pass() -> None:
    stamps = pa.array([limits.timestamp_micros_min, limits.timestamp_micros_max]).view(TIMESTAMP_TYPE)
    batch = to_input_batch(_batch(pa.nulls(2, INPUT_SCHEMA.field("headers").type), stamps), LIMIT)
    years = [stamp.year for stamp in batch.column("timestamp").to_pylist()]
    assert years == [1, 9999]


# -- finding them among stored records ----------------------------------------------------


def test_undecodable_rows_finds_every_bad_record() -> None:
    names = [[f"h{i}".encode(), b"x"] for i in range(200)]
    for row in (3, 4, 150, 199):
        names[row][1] = BAD_NAME
    stored = _batch(_headers(names), _micros(200, 77, limits.timestamp_micros_max + 1))
    assert undecodable_rows(stored).tolist() == [3, 4, 77, 150, 199]


# -- at the doors: nothing is written -------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(tmp_path / "data", fsync=False)
    engine.create_topic("t")
    yield engine
    engine.close()


def test_an_engine_append_of_a_poison_record_writes_nothing(engine: Engine) -> None:
    engine.append("t", [{"key": b"k", "value": b"before"}])
    with pytest.raises(InvalidRequest, match="record 1 has a header named"):
        engine.append("t", _batch(_headers([[b"fine"], [BAD_NAME]])))
    assert engine.describe_topic("t").next_offset == 1
    assert engine.key_version("t", b"k1") == 0


@pytest.mark.parametrize("kind", [pa.utf8(), pa.binary()])
def test_a_raw_flight_doput_of_a_poison_record_is_refused_and_writes_nothing(
    engine: Engine, kind: pa.DataType
) -> None:
    server = FlightService(engine, "grpc://127.0.0.1:0")
    url = f"grpc://127.0.0.1:{server.port}"
    try:
        batch = _batch(_headers([[b"a"], [b"b", BAD_NAME]], kind))
        plain = flight.connect(url)
        writer, reader = plain.do_put(flight.FlightDescriptor.for_path("t"), batch.schema)
        with pytest.raises(flight.FlightError, match="record 1 has a header named"):
            writer.write_batch(batch)
            writer.done_writing()
            reader.read()
            writer.close()
        plain.close()
        with odradek.connect(url) as client:
            with pytest.raises(InvalidRequest, match="record 1 has a header named"):
                client.append("t", batch)
            assert client.describe_topic("t").next_offset == 0
            when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
            assert (
                client.append("t", [{"value": b"fine", "headers": {"h": b"v"}, "timestamp": when}]).count == 1
            )
    finally:
        server.drain(5.0)
