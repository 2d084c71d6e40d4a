"""The Kafka message codec: every message of every served version round-trips, and
its bytes match an independent implementation's.

Goal: each (api key, version) the codec declares -- requests and responses -- encodes
and decodes to the same value, and the byte layout is exactly Kafka's, including
compact strings/arrays and tagged fields of flexible versions (KIP-482), nullable
fields, and the header versions (ApiVersions responses keep header v0).

Method: hypothesis, with values generated from the codec's own field declarations.
(1) They round-trip through encode/decode. (2) Their bytes are read by ``kio`` (typed
entities generated from Kafka's JSON message definitions, with a native reader) and
written back by kio, which must give the same bytes: this checks our declarations
against Kafka's definitions for every version, not only those the real clients in the
e2e tests happen to use.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from odradek.protocols.kafka.codec import schema
from odradek.protocols.kafka.codec.api import (
    APIS,
    ApiKey,
    UnsupportedRequest,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from odradek.protocols.kafka.codec.primitives import Reader, Writer

CASES = [
    (api.key, version, side)
    for api in APIS.values()
    for version in range(api.min_version, api.max_version + 1)
    for side in ("request", "response")
]
FAST = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize(("api_key", "version", "side"), CASES, ids=lambda c: str(c))
def test_messages_round_trip(api_key: int, version: int, side: str, message_values: Any) -> None:
    api = APIS[api_key]
    cls = api.request if side == "request" else api.response
    codec = schema.compile_struct(cls, version, api.flexible(version))

    @FAST
    @given(message_values(cls, version, api.flexible(version)))
    def check(value: Any) -> None:
        writer = Writer()
        codec.write(writer, value)
        data = writer.getvalue()
        reader = Reader(data)
        assert codec.read(reader) == value
        assert reader.remaining() == 0

    check()


@pytest.mark.parametrize(("api_key", "version", "side"), CASES, ids=lambda c: str(c))
def test_bytes_match_kafka_definitions(api_key: int, version: int, side: str, message_values: Any) -> None:
    index = pytest.importorskip("kio.index")
    serial = pytest.importorskip("kio.serial")
    api = APIS[api_key]
    loader = index.load_request_schema if side == "request" else index.load_response_schema
    reference = loader(api_key, version)
    read_reference = serial.entity_reader(reference)
    write_reference = serial.entity_writer(reference)
    cls = api.request if side == "request" else api.response
    codec = schema.compile_struct(cls, version, api.flexible(version))

    @FAST
    @given(message_values(cls, version, api.flexible(version), plain=True))
    def check(value: Any) -> None:
        writer = Writer()
        codec.write(writer, value)
        ours = writer.getvalue()
        entity, size = read_reference(ours, 0)
        assert size == len(ours)
        buffer = io.BytesIO()
        write_reference(buffer, entity)
        assert buffer.getvalue() == ours

    check()


@pytest.mark.parametrize("api_key", sorted(APIS))
def test_request_frames_round_trip_with_headers(api_key: int) -> None:
    api = APIS[api_key]
    for version in (api.min_version, api.max_version):
        body = api.request()
        frame = encode_request(api_key, version, 1234, body, client_id="tester")
        request = decode_request(frame[4:])
        assert (request.api_key, request.api_version, request.correlation_id) == (api_key, version, 1234)
        assert request.client_id == "tester"
        assert encode_request(api_key, version, 1234, request.body, client_id="tester") == frame
        chunks = encode_response(api_key, version, 1234, api.response())
        response = b"".join(chunks)
        assert int.from_bytes(response[:4], "big") == len(response) - 4
        assert decode_response(api_key, version, response[4:]) == (1234, api.response())


def test_api_versions_response_keeps_header_v0_even_when_flexible() -> None:
    chunks = encode_response(ApiKey.API_VERSIONS, 3, 7, APIS[ApiKey.API_VERSIONS].response())
    frame = b"".join(chunks)
    # size, correlation id, then error code right away: no tagged-field byte in the header
    assert frame[4:8] == (7).to_bytes(4, "big") and frame[8:10] == b"\x00\x00"


def test_unknown_api_or_version_is_reported_with_its_correlation_id() -> None:
    frame = (999).to_bytes(2, "big") + (0).to_bytes(2, "big") + (42).to_bytes(4, "big") + b"\xff\xff"
    with pytest.raises(UnsupportedRequest) as caught:
        decode_request(frame)
    assert (caught.value.api_key, caught.value.correlation_id) == (999, 42)
    too_new = encode_request(ApiKey.METADATA, 13, 5, APIS[ApiKey.METADATA].request())[4:]
    too_new = too_new[:2] + (99).to_bytes(2, "big") + too_new[4:]
    with pytest.raises(UnsupportedRequest):
        decode_request(too_new)


def test_tagged_fields_are_written_only_when_not_default_and_unknown_tags_skipped() -> None:
    from odradek.protocols.kafka.codec import messages_data as m

    codec = schema.compile_struct(m.FetchPartitionData, 12, True)
    plain = Writer()
    codec.write(plain, m.FetchPartitionData(partition_index=1))
    tagged = Writer()
    codec.write(
        tagged, m.FetchPartitionData(partition_index=1, current_leader=m.LeaderIdAndEpoch(leader_id=3))
    )
    assert len(tagged.getvalue()) > len(plain.getvalue())
    assert codec.read(Reader(tagged.getvalue())).current_leader.leader_id == 3
    # An unknown tag (99) with a 2-byte body is skipped.
    data = plain.getvalue()[:-1] + b"\x01\x63\x02\xab\xcd"
    assert codec.read(Reader(data)) == m.FetchPartitionData(partition_index=1)


def test_uuid_fields_default_to_zero() -> None:
    from odradek.protocols.kafka.codec import messages_data as m

    assert m.MetadataRequestTopic().topic_id == uuid.UUID(int=0)
