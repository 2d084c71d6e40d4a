"""Messages of the consumer group protocol (KIP-848): ConsumerGroupHeartbeat and
ConsumerGroupDescribe.

Field layouts follow the Kafka protocol's message definitions (Kafka 4.x: heartbeat
v1 adds the subscribed topic regex and lets the member make its own id, KIP-1082;
describe v1 adds each member's type, KIP-1099); each field names the versions it
exists in. Both APIs are flexible in every version.
"""

# ruff: noqa: RUF009 - f() builds an immutable dataclasses.field with Kafka metadata

from __future__ import annotations

import dataclasses
import uuid

from odradek.protocols.kafka.codec.primitives import DecodeError, Reader, Writer
from odradek.protocols.kafka.codec.schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    STRING,
    UUID,
    Array,
    ReadFn,
    Struct,
    WriteFn,
    compile_struct,
    f,
)


class NullableStruct(Struct):
    """A nested message that may be null: one byte, -1 for null or 1, then the message
    (how Kafka writes a nullable struct field)."""

    def reader(self, flexible: bool, nullable: bool, version: int) -> ReadFn:
        read_struct = compile_struct(self.cls, version, flexible).read

        def read(reader: Reader) -> object:
            marker = reader.int8()
            if marker < 0:
                if not nullable:
                    raise DecodeError("null struct in a field that is not nullable")
                return None
            return read_struct(reader)

        return read

    def writer(self, flexible: bool, nullable: bool, version: int) -> WriteFn:
        write_struct = compile_struct(self.cls, version, flexible).write

        def write(writer: Writer, value: object) -> None:
            if value is None:
                writer.int8(-1)
                return
            writer.int8(1)
            write_struct(writer, value)

        return write


# -- ConsumerGroupHeartbeat (68) ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatTopicPartitions:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerGroupHeartbeatRequest:
    group_id: str = f(STRING)
    member_id: str = f(STRING)
    member_epoch: int = f(INT32)
    instance_id: str | None = f(STRING, nullable="0+", default=None)
    rack_id: str | None = f(STRING, nullable="0+", default=None)
    rebalance_timeout_ms: int = f(INT32, default=-1)
    subscribed_topic_names: tuple[str, ...] | None = f(Array(STRING), nullable="0+", default=None)
    subscribed_topic_regex: str | None = f(STRING, "1+", nullable="1+", default=None)
    server_assignor: str | None = f(STRING, nullable="0+", default=None)
    topic_partitions: tuple[HeartbeatTopicPartitions, ...] | None = f(
        Array(HeartbeatTopicPartitions), nullable="0+", default=None
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAssignment:
    topic_partitions: tuple[HeartbeatTopicPartitions, ...] = f(Array(HeartbeatTopicPartitions))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerGroupHeartbeatResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    member_id: str | None = f(STRING, nullable="0+", default=None)
    member_epoch: int = f(INT32)
    heartbeat_interval_ms: int = f(INT32)
    assignment: HeartbeatAssignment | None = f(
        NullableStruct(HeartbeatAssignment), nullable="0+", default=None
    )


# -- ConsumerGroupDescribe (69) -------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerGroupDescribeRequest:
    group_ids: tuple[str, ...] = f(Array(STRING))
    include_authorized_operations: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedTopicPartitions:
    topic_id: uuid.UUID = f(UUID)
    topic_name: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedAssignment:
    topic_partitions: tuple[DescribedTopicPartitions, ...] = f(Array(DescribedTopicPartitions))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedConsumerMember:
    member_id: str = f(STRING)
    instance_id: str | None = f(STRING, nullable="0+", default=None)
    rack_id: str | None = f(STRING, nullable="0+", default=None)
    member_epoch: int = f(INT32)
    client_id: str = f(STRING)
    client_host: str = f(STRING)
    subscribed_topic_names: tuple[str, ...] = f(Array(STRING))
    subscribed_topic_regex: str | None = f(STRING, nullable="0+", default=None)
    assignment: DescribedAssignment = f(Struct(DescribedAssignment))
    target_assignment: DescribedAssignment = f(Struct(DescribedAssignment))
    member_type: int = f(INT8, "1+", default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedConsumerGroup:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    group_id: str = f(STRING)
    group_state: str = f(STRING)
    group_epoch: int = f(INT32)
    assignment_epoch: int = f(INT32)
    assignor_name: str = f(STRING)
    members: tuple[DescribedConsumerMember, ...] = f(Array(DescribedConsumerMember))
    authorized_operations: int = f(INT32, default=-(2**31))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerGroupDescribeResponse:
    throttle_time_ms: int = f(INT32)
    groups: tuple[DescribedConsumerGroup, ...] = f(Array(DescribedConsumerGroup))
