"""Hostile input: the request decoder and the listener survive anything.

Goal: random bytes, truncated frames, frames declaring huge sizes or huge array
counts, unknown api keys and versions, and record batches mangled behind a valid CRC
never crash, hang, or allocate without bound: the codec raises DecodeError (or
UnsupportedRequest), the listener answers ApiVersions with UNSUPPORTED_VERSION or
closes the connection, and keeps serving everybody else. The checks a transactional
Produce makes without decoding (check_batches) refuse with DecodeError only and pass
every batch the decode takes.

Method: hypothesis against the sans-IO codec; raw sockets against a live listener
(conftest), each with a timeout so that a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from typing import Any

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek import limits
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import (
    APIS,
    ApiKey,
    FrameTooLarge,
    UnsupportedRequest,
    decode_request,
    decode_response,
    encode_request,
    frame_size,
)
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.codec.records import check_batches, decode_batches, encode_batch
from odradek.records import STORED_SCHEMA

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)

VALID_FRAMES = [
    encode_request(ApiKey.METADATA, 12, 1, m.MetadataRequest(topics=(m.MetadataRequestTopic(name="a.b"),)))[
        4:
    ],
    encode_request(
        ApiKey.PRODUCE,
        9,
        2,
        m.ProduceRequest(
            acks=1,
            timeout_ms=100,
            topic_data=(
                m.TopicProduceData(
                    name="a.b", partition_data=(m.PartitionProduceData(index=0, records=b"x" * 70),)
                ),
            ),
        ),
    )[4:],
    encode_request(
        ApiKey.FETCH,
        12,
        3,
        m.FetchRequest(
            max_wait_ms=1,
            min_bytes=1,
            topics=(
                m.FetchTopic(
                    topic="a.b",
                    partitions=(m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=9),),
                ),
            ),
        ),
    )[4:],
    encode_request(ApiKey.API_VERSIONS, 3, 4, m.ApiVersionsRequest(client_software_name="x"))[4:],
]


def _decode_only_refuses(frame: bytes) -> None:
    try:
        decode_request(frame)
    except (DecodeError, UnsupportedRequest):
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_random_frames_never_crash_the_decoder(frame: bytes) -> None:
    _decode_only_refuses(frame)


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.integers(0, 10_000))
def test_truncated_frames_are_refused(frame: bytes, cut: int) -> None:
    with pytest.raises((DecodeError, UnsupportedRequest)):
        decode_request(frame[: cut % len(frame)])


@FUZZ
@given(st.sampled_from(VALID_FRAMES), st.binary(max_size=8), st.integers(0, 10_000))
def test_mutated_frames_are_refused_or_decode_to_what_they_say(frame: bytes, noise: bytes, at: int) -> None:
    """A mutation may leave a valid request (a changed character of a name): then it must
    decode to a request that encodes back to the very same bytes, never to garbage."""
    position = at % len(frame)
    mutated = frame[:position] + noise + frame[position + len(noise) :]
    try:
        request = decode_request(mutated)
    except (DecodeError, UnsupportedRequest):
        return
    again = encode_request(
        request.api_key, request.api_version, request.correlation_id, request.body, request.client_id
    )
    assert decode_request(again[4:]) == request


def test_huge_declared_counts_are_refused_before_allocating() -> None:
    # Metadata v1: topics is an int32 array count; claim 2**31-1 topics in a tiny frame.
    header = struct.pack(">hhih", ApiKey.METADATA, 1, 9, 0)
    started = time.monotonic()
    with pytest.raises(DecodeError):
        decode_request(header + struct.pack(">i", 2**31 - 1))
    with pytest.raises(DecodeError):
        decode_request(
            header + struct.pack(">i", 5) + struct.pack(">h", 30000)
        )  # string longer than the frame
    assert time.monotonic() - started < 1.0


def test_frame_size_limit() -> None:
    assert frame_size(struct.pack(">i", 100)) == 100
    with pytest.raises(FrameTooLarge):
        frame_size(struct.pack(">i", limits.kafka_frame_bytes_max + 1))
    with pytest.raises(FrameTooLarge):
        frame_size(struct.pack(">i", -5))


def _refresh_crc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
    return bytes(batch)


@FUZZ
@given(st.integers(61, 400), st.binary(min_size=1, max_size=6), st.integers(0, 400))
def test_record_batches_mangled_behind_a_valid_crc_are_refused(at: int, noise: bytes, cut: int) -> None:
    import pyarrow as pa

    rows = [
        {
            "offset": i,
            "timestamp": 1000 * i,
            "key": b"k%d" % i,
            "value": b"v" * i,
            "headers": [("h", b"x")] if i % 2 else None,
            "version": 1,
        }
        for i in range(6)
    ]
    good = bytearray(encode_batch(pa.RecordBatch.from_pylist(rows, schema=STORED_SCHEMA)))
    position = 61 + (at - 61) % (len(good) - 61)
    mangled = bytearray(good[:position] + noise + good[position + len(noise) :])
    struct.pack_into(">i", mangled, 8, len(mangled) - 12)
    data = _refresh_crc(mangled)
    try:
        decoded = decode_batches(data)  # may decode: the noise may be well-formed
    except DecodeError:
        decoded = None
    # The transactional Produce's checks, which decode no record, refuse only with
    # DecodeError, and pass every batch the decode takes.
    try:
        checked = check_batches(data)
    except DecodeError:
        checked = None
    assert decoded is None or checked == [batch.header for batch in decoded]
    truncated = bytes(good[: 1 + cut % (len(good) - 1)])
    with pytest.raises(DecodeError):
        decode_batches(truncated)
    with pytest.raises(DecodeError):
        check_batches(truncated)


# -- against a live listener ----------------------------------------------------------


def _connect(door: Any) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", door.listener.port), timeout=5)
    sock.settimeout(5)
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _api_versions_works(door: Any) -> None:
    with _connect(door) as sock:
        sock.sendall(encode_request(ApiKey.API_VERSIONS, 3, 77, m.ApiVersionsRequest()))
        size = struct.unpack(">i", sock.recv(4))[0]
        data = b""
        while len(data) < size:
            data += sock.recv(size - len(data))
        correlation, body = decode_response(ApiKey.API_VERSIONS, 3, data)
        assert correlation == 77 and body.error_code == 0 and body.api_keys


def test_listener_closes_on_huge_frames_and_unknown_apis(kafka_door: Any) -> None:
    with _connect(kafka_door) as sock:
        sock.sendall(struct.pack(">i", limits.kafka_frame_bytes_max + 1) + b"\x00" * 16)
        assert _closed(sock)
    with _connect(kafka_door) as sock:
        payload = struct.pack(">hhih", 9999, 0, 1, 0)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        assert _closed(sock)
    with _connect(kafka_door) as sock:
        payload = struct.pack(">hhih", ApiKey.METADATA, 99, 1, 0)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        assert _closed(sock)
    with _connect(kafka_door) as sock:  # a truncated frame, then the client goes away
        sock.sendall(struct.pack(">i", 1000) + b"\x00" * 10)
    _api_versions_works(kafka_door)


def test_unsupported_api_versions_version_is_answered_in_v0(kafka_door: Any) -> None:
    with _connect(kafka_door) as sock:
        payload = struct.pack(">hhih", ApiKey.API_VERSIONS, 42, 5, 0) + b"\x00" * 4
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", sock.recv(4))[0]
        data = sock.recv(size)
        correlation, body = decode_response(ApiKey.API_VERSIONS, 0, data)
        assert correlation == 5 and body.error_code == ErrorCode.UNSUPPORTED_VERSION
        assert {k.api_key for k in body.api_keys} >= {ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.API_VERSIONS}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=4))
def test_listener_survives_garbage_frames(kafka_door: Any, frames: list[bytes]) -> None:
    with _connect(kafka_door) as sock:
        try:
            for frame in frames:
                sock.sendall(struct.pack(">i", len(frame)) + frame)
        except (BrokenPipeError, ConnectionResetError):
            pass
    _api_versions_works(kafka_door)


def test_every_served_api_is_in_api_versions(kafka_door: Any) -> None:
    with _connect(kafka_door) as sock:
        sock.sendall(encode_request(ApiKey.API_VERSIONS, 0, 1, m.ApiVersionsRequest()))
        size = struct.unpack(">i", sock.recv(4))[0]
        data = b""
        while len(data) < size:
            data += sock.recv(size - len(data))
        _, body = decode_response(ApiKey.API_VERSIONS, 0, data)
    served = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
    for key, api in APIS.items():
        if key != ApiKey.SASL_HANDSHAKE:
            assert served[key] == (api.min_version, api.max_version)


def _tame(api_key: int, body: Any) -> Any:
    """Keep waits short: a fetch or a rebalance may legitimately wait as long as asked."""
    if api_key == ApiKey.FETCH:
        return dataclasses.replace(body, max_wait_ms=min(body.max_wait_ms, 20))
    if api_key == ApiKey.JOIN_GROUP:
        return dataclasses.replace(
            body,
            session_timeout_ms=min(max(body.session_timeout_ms, 1000), 2000),
            rebalance_timeout_ms=min(body.rebalance_timeout_ms, 300),
        )
    return body


@pytest.mark.parametrize("api_key", sorted(APIS))
def test_any_well_formed_request_gets_an_answer(
    kafka_door: Any, api_key: int, message_values: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Well-formed requests with random contents reach the handlers: each is answered
    (or, for acks=0 produces, not) and no handler fails with an unexpected exception."""
    api = APIS[api_key]
    data = st.data()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data)
    def check(draw: Any) -> None:
        version = draw.draw(st.integers(api.min_version, api.max_version))
        body = _tame(api_key, draw.draw(message_values(api.request, version, api.flexible(version))))
        with _connect(kafka_door) as sock:
            sock.sendall(encode_request(api_key, version, 11, body))
            if api_key == ApiKey.PRODUCE and body.acks == 0:
                return
            prefix = sock.recv(4)
            assert len(prefix) == 4, "the connection closed instead of answering"

    check()
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "odradek" in r.name]
    assert not failures, failures[0].getMessage()
