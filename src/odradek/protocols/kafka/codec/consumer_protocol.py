"""The consumer protocol's embedded messages: what a classic group's members carry
inside JoinGroup's metadata and SyncGroup's assignment bytes.

The coordinator relays these bytes without reading them (the leader assigns); the node
reads a member's assignment only to tell which partitions it holds (``odradek group
describe``, the console's members table). Kafka's ``ConsumerProtocolAssignment``:

    version           int16   0-3 (every version has the same fields, none flexible)
    assigned topics   array of {topic: string, partitions: array of int32}
    user data         nullable bytes (the assignor's, e.g. cooperative-sticky's)

A version above the highest known is read as the highest (Kafka's ConsumerProtocol does
the same: newer versions only append fields). Groups of another protocol type
(``connect``, ...) carry other bytes: :func:`decode_assignment` is for ``consumer``
groups only, and raises :class:`DecodeError` on anything that is not an assignment.
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.primitives import DecodeError, Reader
from odradek.protocols.kafka.codec.schema import BYTES, INT32, STRING, Array, compile_struct, f

ASSIGNMENT_VERSION_MAX = 3  # ConsumerProtocolAssignment.json: "validVersions": "0-3"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AssignedTopic:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerProtocolAssignment:
    assigned_partitions: tuple[AssignedTopic, ...] = f(Array(AssignedTopic))
    user_data: bytes | None = f(BYTES, nullable="0+", default=None)


def decode_assignment(data: bytes) -> ConsumerProtocolAssignment:
    """A ``consumer`` group member's assignment (SyncGroup's bytes); empty bytes (a
    member not yet assigned) are an empty assignment. Raises DecodeError."""
    if not data:
        return ConsumerProtocolAssignment()
    reader = Reader(data)
    version = reader.int16()
    if version < 0:
        raise DecodeError(f"consumer protocol assignment version {version} is negative")
    codec = compile_struct(ConsumerProtocolAssignment, min(version, ASSIGNMENT_VERSION_MAX), False)
    assignment: ConsumerProtocolAssignment = codec.read(reader)
    return assignment


def assigned_partitions(data: bytes) -> frozenset[tuple[str, int]]:
    """The (topic, partition) pairs of an assignment's bytes. Raises DecodeError."""
    return frozenset(
        (assigned.topic, partition)
        for assigned in decode_assignment(data).assigned_partitions
        for partition in assigned.partitions
    )
