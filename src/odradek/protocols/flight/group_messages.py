"""The consumer-group wire of the Flight door (DoExchange), without IO.

One DoExchange stream is one member of a group, for as long as the stream lasts
(docs/flight-protocol.md, "DoExchange — consumer groups"):

    descriptor command  {"kind": "subscribe", "group", "pattern", "options": {...}}
    server  → joined    {"member": id, "options": {...}}                (metadata only)
    client  → poll      {"op": "poll", "max_records": n, "timeout": s}  (metadata only)
    server  → batches   DELIVERY_SCHEMA batch + {"topic": t, "lease": l}, one per topic
            → end       {"polled": n_batches, "member": id}             (metadata only)
    client  → ack/nack  {"op": "ack"} or {"op": "nack", "delay": s}
                        + a REFS_SCHEMA batch naming the deliveries (none: nothing)
    server  → result    {"settled": n, "rejected": [{topic, offset, lease, status}]}
    client  → leave     {"op": "leave"}                                 (metadata only)
    server  → left      {"left": member}, then the server ends the stream
    any request → error {"error": <errors.to_wire>}: the request was refused, the
                        member stays; a failure of the stream itself ends the call.
    client  → done writing: the member leaves.

The member's unsettled deliveries go back to the group when it leaves. After a
``leave`` they go back as they were (the member returned them cleanly); if the
stream ends in any other way (the client finished writing without ``leave``, was
cancelled or died, the stream broke) each counts as an attempt, so a record that kills
its consumers reaches the dead-letter topic (groups/group.py, "Attempts").

Rules: requests are answered one at a time, in order. Everything but records and
delivery references is JSON; every decoder refuses what it cannot read with
InvalidRequest. Values (max_records, timeout, delay, options) are checked by the
engine's group manager, so every door reports the same errors.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from odradek import defaults
from odradek.errors import InvalidRequest, OdradekError, from_wire, to_wire
from odradek.groups import AckResult, DeliveryBatch
from odradek.groups.delivery import Settleable, group_refs
from odradek.groups.options import validate_member_id
from odradek.protocols.flight.messages import cell_field, dump, encode_start, load
from odradek.records import STORED_SCHEMA

KIND_SUBSCRIBE = "subscribe"
OP_POLL = "poll"
OP_ACK = "ack"
OP_NACK = "nack"
OP_LEAVE = "leave"

# A delivered record: what a read returns, plus the delivery's attempt (1 = first).
DELIVERY_SCHEMA = STORED_SCHEMA.append(pa.field("attempt", pa.int32()))
# The deliveries an ack or a nack names.
REFS_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.utf8(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("lease", pa.int64(), nullable=False),
    ]
)


@dataclasses.dataclass(frozen=True)
class Subscribe:
    group: str
    pattern: str
    options: dict[str, Any]  # GroupOptions.build's keywords, as sent
    # One cell's part of a subscription another agent serves (decision 0038): this
    # cell's topics only, which the agent asked must serve, joined as ``member``.
    cell: str | None = None
    member: str | None = None


@dataclasses.dataclass(frozen=True)
class Poll:
    max_records: object
    timeout: object


@dataclasses.dataclass(frozen=True)
class Settle:
    nack: bool
    delay: object = defaults.nack_delay_seconds


@dataclasses.dataclass(frozen=True)
class Leave:
    """Leave the group, giving the unsettled deliveries back without counting them."""


Request = Poll | Settle | Leave


class DeliveryRef(NamedTuple):
    """A delivery named by an ack or a nack (what ``groups`` settles)."""

    topic: str
    offset: int
    lease: int


# -- the descriptor ---------------------------------------------------------------------


def encode_subscribe(
    group: str,
    pattern: str,
    options: Mapping[str, Any],
    *,
    cell: str | None = None,
    member: str | None = None,
) -> bytes:
    sent = dict(options)
    if "start" in sent:
        sent["start"] = encode_start(sent["start"])
    document: dict[str, Any] = {"kind": KIND_SUBSCRIBE, "group": group, "pattern": pattern, "options": sent}
    if cell is not None:
        document.update(cell=cell, member=member)
    return dump(document)


def decode_subscribe(raw: bytes) -> Subscribe:
    document = load(raw, "DoExchange command")
    kind = document.get("kind")
    if kind != KIND_SUBSCRIBE:
        raise InvalidRequest(f'a DoExchange command has "kind": "{KIND_SUBSCRIBE}", got {kind!r}')
    group, pattern, options = document.get("group"), document.get("pattern"), document.get("options", {})
    if not isinstance(group, str) or not isinstance(pattern, str):
        raise InvalidRequest('a subscription names its "group" and "pattern" as strings')
    if not isinstance(options, dict):
        raise InvalidRequest('a subscription\'s "options" is a JSON object')
    cell, member = cell_field(document), document.get("member")
    if member is not None:
        if cell is None:
            raise InvalidRequest('a subscription names its "member" id only with a "cell" (an agent\'s part)')
        validate_member_id(member)
    return Subscribe(group, pattern, options, cell, member)


# -- requests -------------------------------------------------------------------------------


def encode_poll(max_records: object, timeout: object) -> bytes:
    return dump({"op": OP_POLL, "max_records": max_records, "timeout": timeout})


def encode_settle(nack: bool, delay: object = defaults.nack_delay_seconds) -> bytes:
    return dump({"op": OP_NACK, "delay": delay} if nack else {"op": OP_ACK})


def encode_leave() -> bytes:
    return dump({"op": OP_LEAVE})


def decode_request(raw: bytes) -> Request:
    document = load(raw, "group request")
    op = document.get("op")
    if op == OP_POLL:
        return Poll(
            document.get("max_records", defaults.poll_records),
            document.get("timeout", defaults.poll_timeout_seconds),
        )
    if op in (OP_ACK, OP_NACK):
        return Settle(op == OP_NACK, document.get("delay", defaults.nack_delay_seconds))
    if op == OP_LEAVE:
        return Leave()
    raise InvalidRequest(f"unknown group request {op!r}; known: {[OP_POLL, OP_ACK, OP_NACK, OP_LEAVE]}")


def encode_refs(deliveries: Settleable) -> pa.RecordBatch | None:
    """The deliveries as a REFS_SCHEMA batch (None if there are none). Raises
    InvalidRequest for anything that is not a delivery, as the engine does."""
    parts = list(group_refs(deliveries))
    if not parts:
        return None
    topics = np.concatenate([np.full(len(offsets), topic, dtype=object) for topic, offsets, _ in parts])
    offsets = np.concatenate([offsets for _, offsets, _ in parts])
    leases = np.concatenate([leases for _, _, leases in parts])
    return pa.RecordBatch.from_arrays(
        [pa.array(topics, pa.utf8()), pa.array(offsets, pa.int64()), pa.array(leases, pa.int64())],
        schema=REFS_SCHEMA,
    )


def decode_refs(batch: pa.RecordBatch | None) -> list[DeliveryRef]:
    if batch is None:
        return []
    if not batch.schema.equals(REFS_SCHEMA):
        raise InvalidRequest(f"delivery references have schema {batch.schema}, not {REFS_SCHEMA}")
    return list(
        map(
            DeliveryRef,
            batch.column(0).to_pylist(),
            batch.column(1).to_numpy().tolist(),
            batch.column(2).to_numpy().tolist(),
        )
    )


# -- replies ------------------------------------------------------------------------------


def encode_joined(member: str, options: Mapping[str, Any]) -> bytes:
    return dump({"member": member, "options": dict(options)})


def decode_joined(raw: bytes) -> tuple[str, dict[str, Any]]:
    document = _reply(raw, "join answer")
    member, options = document.get("member"), document.get("options")
    if not isinstance(member, str) or not isinstance(options, dict):
        raise InvalidRequest("a join answer carries the member id and the group's options")
    return member, options


def encode_delivery_header(batch: DeliveryBatch) -> bytes:
    return dump({"topic": batch.topic, "lease": batch.lease})


def delivery_records(batch: DeliveryBatch) -> pa.RecordBatch:
    """A batch's records in DELIVERY_SCHEMA exactly, as the stream's schema demands."""
    records = batch.records
    if records.schema.equals(DELIVERY_SCHEMA):
        return records
    return pa.RecordBatch.from_arrays(records.columns, schema=DELIVERY_SCHEMA)


def decode_delivery(header: bytes, records: pa.RecordBatch) -> DeliveryBatch:
    document = _reply(header, "delivery header")
    topic, lease = document.get("topic"), document.get("lease")
    if not isinstance(topic, str) or isinstance(lease, bool) or not isinstance(lease, int):
        raise InvalidRequest("a delivery header carries its topic and lease")
    if not records.schema.equals(DELIVERY_SCHEMA):
        raise InvalidRequest(f"deliveries have schema {records.schema}, not {DELIVERY_SCHEMA}")
    return DeliveryBatch(topic, lease, records)


def encode_polled(batches: int, member: str) -> bytes:
    return dump({"polled": batches, "member": member})


def encode_left(member: str) -> bytes:
    return dump({"left": member})


def encode_settled(result: AckResult) -> bytes:
    return dump(result.to_json())


def encode_refused(error: OdradekError) -> bytes:
    return dump({"error": to_wire(error)})


def metadata_of(chunk: Any) -> bytes:
    """The ``app_metadata`` of a stream's chunk (a Flight ``FlightStreamChunk``), b"" if none."""
    metadata = chunk.app_metadata
    return metadata.to_pybytes() if metadata is not None else b""


def decode_reply(raw: bytes) -> dict[str, Any]:
    """An end-of-request reply (``polled``, an ack result or a refusal); a refusal is
    raised as the error the server sent."""
    document = _reply(raw, "group reply")
    refusal = document.get("error")
    if isinstance(refusal, dict):
        raise from_wire(refusal)
    return document


def decode_settled(document: Mapping[str, Any]) -> AckResult:
    try:
        return AckResult.from_json(dict(document))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"an ack result is malformed: {exc}") from None


def _reply(raw: bytes, what: str) -> dict[str, Any]:
    """Replies come from the server: an ack result may be large, so no size limit."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return document
