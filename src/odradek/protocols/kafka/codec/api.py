"""Request framing and the dispatch table: (api_key, version) -> message classes.

Theory of operation
-------------------
A Kafka connection carries size-delimited frames: an int32 byte count, then the frame.
A request frame is a header (api key, version, correlation id, client id; header v2
adds a tagged-field buffer) and the request body; a response frame is a header
(correlation id; v1 adds a tagged-field buffer) and the response body. Which header
version applies follows from whether the API's version is *flexible* (KIP-482), except
that ApiVersions responses always use header v0 so that a client can read them before
it knows anything about the broker.

:func:`decode_request` turns a frame into a :class:`Request` carrying a typed body;
:func:`encode_response` turns a typed body back into frame chunks. Both are pure
functions over bytes. A request this table cannot decode raises
:class:`UnsupportedRequest` (the caller knows its correlation id and can answer an
ApiVersions request with UNSUPPORTED_VERSION, as KIP-511 asks, or close the connection
as Kafka does for other APIs); a malformed one raises :class:`DecodeError`.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Any

from odradek import limits
from odradek.protocols.kafka.codec import messages_acls as acls
from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_consumer as consumer
from odradek.protocols.kafka.codec import messages_data as data
from odradek.protocols.kafka.codec import messages_groups as groups
from odradek.protocols.kafka.codec import messages_logs as logs
from odradek.protocols.kafka.codec import messages_quotas as quotas
from odradek.protocols.kafka.codec import messages_sasl as sasl
from odradek.protocols.kafka.codec import messages_share as share
from odradek.protocols.kafka.codec import messages_txn as txn
from odradek.protocols.kafka.codec.primitives import DecodeError, Reader, Writer
from odradek.protocols.kafka.codec.schema import compile_struct

_SIZE = struct.Struct(">i")


class ApiKey(enum.IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    SASL_AUTHENTICATE = 36
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_CLIENT_QUOTAS = 48
    ALTER_CLIENT_QUOTAS = 49
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    SHARE_GROUP_HEARTBEAT = 76
    SHARE_GROUP_DESCRIBE = 77
    SHARE_FETCH = 78
    SHARE_ACKNOWLEDGE = 79


@dataclasses.dataclass(frozen=True)
class Api:
    """One API: its message classes, the versions this codec reads and writes, and the
    first flexible version (None: never flexible)."""

    key: ApiKey
    request: type
    response: type
    min_version: int
    max_version: int
    flexible_from: int | None

    def flexible(self, version: int) -> bool:
        return self.flexible_from is not None and version >= self.flexible_from


def _api(key: ApiKey, request: type, response: type, versions: str, flexible_from: int | None) -> Api:
    low, high = (int(part) for part in versions.split("-"))
    return Api(key, request, response, low, high, flexible_from)


# Version ranges are those of the Kafka 4.x message definitions (the floor is where
# Kafka 4.0 dropped old versions, KIP-896).
APIS: dict[int, Api] = {
    api.key: api
    for api in (
        _api(ApiKey.PRODUCE, data.ProduceRequest, data.ProduceResponse, "3-13", 9),
        _api(ApiKey.FETCH, data.FetchRequest, data.FetchResponse, "4-18", 12),
        _api(ApiKey.LIST_OFFSETS, data.ListOffsetsRequest, data.ListOffsetsResponse, "1-11", 6),
        _api(ApiKey.METADATA, data.MetadataRequest, data.MetadataResponse, "0-13", 9),
        _api(ApiKey.OFFSET_COMMIT, groups.OffsetCommitRequest, groups.OffsetCommitResponse, "2-10", 8),
        _api(ApiKey.OFFSET_FETCH, groups.OffsetFetchRequest, groups.OffsetFetchResponse, "1-10", 6),
        _api(
            ApiKey.FIND_COORDINATOR, groups.FindCoordinatorRequest, groups.FindCoordinatorResponse, "0-6", 3
        ),
        _api(ApiKey.JOIN_GROUP, groups.JoinGroupRequest, groups.JoinGroupResponse, "0-9", 6),
        _api(ApiKey.HEARTBEAT, groups.HeartbeatRequest, groups.HeartbeatResponse, "0-4", 4),
        _api(ApiKey.LEAVE_GROUP, groups.LeaveGroupRequest, groups.LeaveGroupResponse, "0-5", 4),
        _api(ApiKey.SYNC_GROUP, groups.SyncGroupRequest, groups.SyncGroupResponse, "0-5", 4),
        _api(ApiKey.DESCRIBE_GROUPS, groups.DescribeGroupsRequest, groups.DescribeGroupsResponse, "0-6", 5),
        _api(ApiKey.LIST_GROUPS, groups.ListGroupsRequest, groups.ListGroupsResponse, "0-5", 3),
        _api(ApiKey.SASL_HANDSHAKE, admin.SaslHandshakeRequest, admin.SaslHandshakeResponse, "0-1", None),
        _api(ApiKey.SASL_AUTHENTICATE, sasl.SaslAuthenticateRequest, sasl.SaslAuthenticateResponse, "0-2", 2),
        _api(ApiKey.API_VERSIONS, data.ApiVersionsRequest, data.ApiVersionsResponse, "0-4", 3),
        _api(ApiKey.CREATE_TOPICS, admin.CreateTopicsRequest, admin.CreateTopicsResponse, "2-7", 5),
        _api(ApiKey.DELETE_TOPICS, admin.DeleteTopicsRequest, admin.DeleteTopicsResponse, "1-6", 4),
        _api(ApiKey.INIT_PRODUCER_ID, data.InitProducerIdRequest, data.InitProducerIdResponse, "0-6", 2),
        # Transactions (transactions.py). Versions 5 of AddPartitionsToTxn, EndTxn and
        # TxnOffsetCommit (KIP-890 part 2: an epoch bump per transaction) are not served.
        _api(
            ApiKey.ADD_PARTITIONS_TO_TXN,
            txn.AddPartitionsToTxnRequest,
            txn.AddPartitionsToTxnResponse,
            "0-4",
            3,
        ),
        _api(ApiKey.ADD_OFFSETS_TO_TXN, txn.AddOffsetsToTxnRequest, txn.AddOffsetsToTxnResponse, "0-4", 3),
        _api(ApiKey.END_TXN, txn.EndTxnRequest, txn.EndTxnResponse, "0-4", 3),
        _api(ApiKey.TXN_OFFSET_COMMIT, txn.TxnOffsetCommitRequest, txn.TxnOffsetCommitResponse, "0-4", 3),
        _api(
            ApiKey.DESCRIBE_TRANSACTIONS,
            txn.DescribeTransactionsRequest,
            txn.DescribeTransactionsResponse,
            "0-0",
            0,
        ),
        _api(ApiKey.LIST_TRANSACTIONS, txn.ListTransactionsRequest, txn.ListTransactionsResponse, "0-2", 0),
        # Access control lists (acl_api.py); from version 1, as Kafka 4.0 (KIP-896).
        _api(ApiKey.DESCRIBE_ACLS, acls.DescribeAclsRequest, acls.DescribeAclsResponse, "1-3", 2),
        _api(ApiKey.CREATE_ACLS, acls.CreateAclsRequest, acls.CreateAclsResponse, "1-3", 2),
        _api(ApiKey.DELETE_ACLS, acls.DeleteAclsRequest, acls.DeleteAclsResponse, "1-3", 2),
        _api(ApiKey.DESCRIBE_CONFIGS, admin.DescribeConfigsRequest, admin.DescribeConfigsResponse, "1-4", 4),
        _api(ApiKey.ALTER_CONFIGS, admin.AlterConfigsRequest, admin.AlterConfigsResponse, "0-2", 2),
        _api(
            ApiKey.CREATE_PARTITIONS,
            admin.CreatePartitionsRequest,
            admin.CreatePartitionsResponse,
            "0-3",
            2,
        ),
        _api(ApiKey.DELETE_GROUPS, groups.DeleteGroupsRequest, groups.DeleteGroupsResponse, "0-2", 2),
        _api(
            ApiKey.INCREMENTAL_ALTER_CONFIGS,
            admin.IncrementalAlterConfigsRequest,
            admin.IncrementalAlterConfigsResponse,
            "0-1",
            1,
        ),
        _api(ApiKey.DESCRIBE_CLUSTER, admin.DescribeClusterRequest, admin.DescribeClusterResponse, "0-2", 0),
        _api(ApiKey.DELETE_RECORDS, logs.DeleteRecordsRequest, logs.DeleteRecordsResponse, "0-2", 2),
        _api(ApiKey.DESCRIBE_LOG_DIRS, logs.DescribeLogDirsRequest, logs.DescribeLogDirsResponse, "1-5", 2),
        _api(ApiKey.OFFSET_DELETE, logs.OffsetDeleteRequest, logs.OffsetDeleteResponse, "0-0", None),
        _api(
            ApiKey.DESCRIBE_CLIENT_QUOTAS,
            quotas.DescribeClientQuotasRequest,
            quotas.DescribeClientQuotasResponse,
            "0-1",
            1,
        ),
        _api(
            ApiKey.ALTER_CLIENT_QUOTAS,
            quotas.AlterClientQuotasRequest,
            quotas.AlterClientQuotasResponse,
            "0-1",
            1,
        ),
        _api(
            ApiKey.DESCRIBE_PRODUCERS,
            logs.DescribeProducersRequest,
            logs.DescribeProducersResponse,
            "0-0",
            0,
        ),
        _api(
            ApiKey.CONSUMER_GROUP_HEARTBEAT,
            consumer.ConsumerGroupHeartbeatRequest,
            consumer.ConsumerGroupHeartbeatResponse,
            "0-1",
            0,
        ),
        _api(
            ApiKey.CONSUMER_GROUP_DESCRIBE,
            consumer.ConsumerGroupDescribeRequest,
            consumer.ConsumerGroupDescribeResponse,
            "0-1",
            0,
        ),
        # Share groups (KIP-932, share_groups.py and share_fetch.py): version 1, the stable one of Kafka
        # 4.1; version 0 was 4.0's early access, version 2 (KIP-1206, KIP-1222) is not
        # served.
        _api(
            ApiKey.SHARE_GROUP_HEARTBEAT,
            share.ShareGroupHeartbeatRequest,
            share.ShareGroupHeartbeatResponse,
            "1-1",
            0,
        ),
        _api(
            ApiKey.SHARE_GROUP_DESCRIBE,
            share.ShareGroupDescribeRequest,
            share.ShareGroupDescribeResponse,
            "1-1",
            0,
        ),
        _api(ApiKey.SHARE_FETCH, share.ShareFetchRequest, share.ShareFetchResponse, "1-1", 0),
        _api(
            ApiKey.SHARE_ACKNOWLEDGE,
            share.ShareAcknowledgeRequest,
            share.ShareAcknowledgeResponse,
            "1-1",
            0,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Request:
    """A decoded request frame."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any


class UnsupportedRequest(Exception):
    """The frame names an API or version this codec does not know."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"unsupported api key {api_key} version {api_version}")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class FrameTooLarge(DecodeError):
    """A frame's size prefix is negative or above the limit; the connection must close."""


def frame_size(prefix: bytes) -> int:
    """The size a 4-byte frame prefix declares, refused if over the frame limit."""
    size: int = _SIZE.unpack(prefix)[0]
    if size < 0 or size > limits.kafka_frame_bytes_max:
        raise FrameTooLarge(
            f"frame of {size} bytes declared; the limit is {limits.kafka_frame_bytes_max} bytes"
        )
    return size


def _read_header_tags(reader: Reader) -> None:
    for _ in range(reader.uvarint()):
        reader.uvarint()
        reader._take(reader.uvarint())


def decode_request(frame: bytes) -> Request:
    """Decode one request frame (without its size prefix)."""
    reader = Reader(frame)
    api_key = reader.int16()
    api_version = reader.int16()
    correlation_id = reader.int32()
    api = APIS.get(api_key)
    if api is None or not api.min_version <= api_version <= api.max_version:
        raise UnsupportedRequest(api_key, api_version, correlation_id)
    flexible = api.flexible(api_version)
    size = reader.int16()
    client_id = None if size < 0 else reader.raw(size).decode("utf-8", "replace")
    if flexible:
        _read_header_tags(reader)
    body = compile_struct(api.request, api_version, flexible).read(reader)
    return Request(api_key, api_version, correlation_id, client_id, body)


def encode_response(
    api_key: int, api_version: int, correlation_id: int, body: Any
) -> list[bytes | bytearray]:
    """A response frame, size prefix included, as chunks to write in order."""
    api = APIS[api_key]
    flexible = api.flexible(api_version)
    writer = Writer()
    writer.int32(0)  # size, patched below
    writer.int32(correlation_id)
    if flexible and api_key != ApiKey.API_VERSIONS:
        writer.uvarint(0)
    compile_struct(api.response, api_version, flexible).write(writer, body)
    chunks = writer.chunks()
    size = sum(len(chunk) for chunk in chunks) - 4
    first = chunks[0]
    assert isinstance(first, bytearray)  # the Writer's first chunk holds the header
    first[0:4] = _SIZE.pack(size)
    return chunks


# -- the client side, for tests and tools ---------------------------------------------


def encode_request(
    api_key: int, api_version: int, correlation_id: int, body: Any, client_id: str | None = "odradek"
) -> bytes:
    """A request frame, size prefix included."""
    api = APIS[api_key]
    flexible = api.flexible(api_version)
    writer = Writer()
    writer.int16(api_key)
    writer.int16(api_version)
    writer.int32(correlation_id)
    if client_id is None:
        writer.int16(-1)
    else:
        encoded = client_id.encode()
        writer.int16(len(encoded))
        writer.raw(encoded)
    if flexible:
        writer.uvarint(0)
    compile_struct(api.request, api_version, flexible).write(writer, body)
    payload = writer.getvalue()
    return _SIZE.pack(len(payload)) + payload


def decode_response(api_key: int, api_version: int, frame: bytes) -> tuple[int, Any]:
    """(correlation id, body) of a response frame without its size prefix."""
    api = APIS[api_key]
    flexible = api.flexible(api_version)
    reader = Reader(frame)
    correlation_id = reader.int32()
    if flexible and api_key != ApiKey.API_VERSIONS:
        _read_header_tags(reader)
    return correlation_id, compile_struct(api.response, api_version, flexible).read(reader)
