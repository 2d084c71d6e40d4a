"""What a consumer-group poll hands out and what an ack answers.

A poll produces, per topic, one Arrow record batch of the delivered records (the
stored columns plus ``attempt``) under one *lease*: a number unique to that poll, which
identifies the delivery. An ack names a delivery by ``(topic, offset, lease)``, so an
ack of a delivery that has since been handed to someone else (a newer lease) is told
apart from an ack of the current one.

:class:`Delivery` is the per-record view that ``Consumer.poll`` returns. Building it is
the one per-record cost of a poll (about 0.3 µs); ``timestamp`` is therefore computed
on access from the stored microseconds rather than built for every record.

A record a Delivery cannot hold (a header name that is not UTF-8, a timestamp outside
the years 1 to 9999: stored before appends refused them) must not fail the whole poll,
or no consumer could ever get past it: :func:`decodable_deliveries` nacks such records
(each nack counts an attempt, so they reach the dead-letter topic after
``max_deliveries``) and returns the others.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import operator
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.errors import InvalidRequest
from odradek.records import undecodable_rows

log = logging.getLogger(__name__)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# The headers of every record that has none: one shared, immutable empty mapping
# (a dict per record would be a third of a poll's cost).
NO_HEADERS: Mapping[str, bytes] = types.MappingProxyType({})

# Per-delivery outcomes of an ack or a nack.
ACKED = "acked"  # (or "nacked") the delivery was current and is now settled
DONE = "done"  # the record was already acknowledged or dead-lettered: nothing to do
STALE = "stale"  # the record was handed out again since (ack timeout, nack, rewind):
#                 only its newer delivery can settle it
UNKNOWN = "unknown"  # this group never delivered that offset of that topic


@dataclasses.dataclass(slots=True)
class Delivery:
    """One record delivered to a member of a group. Treat it as read-only.

    ``attempt`` is 1 on the first delivery of the record to the group and counts up on
    each redelivery (after an ack timeout, a nack or a member's expiry). ``lease``
    identifies this delivery among redeliveries of the same record.
    """

    topic: str
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]
    timestamp_micros: int
    version: int | None
    attempt: int
    lease: int

    @property
    def timestamp(self) -> datetime.datetime:
        return _EPOCH + datetime.timedelta(microseconds=self.timestamp_micros)


class DeliveryRef(Protocol):
    """Anything that names a delivery: a :class:`Delivery` or a tuple-like record."""

    @property
    def topic(self) -> str: ...

    @property
    def offset(self) -> int: ...

    @property
    def lease(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class DeliveryBatch:
    """The records of one topic delivered by one poll, as Arrow columns:
    offset, timestamp, key, value, headers, version, attempt."""

    topic: str
    lease: int
    records: pa.RecordBatch

    def deliveries(self) -> list[Delivery]:
        return to_deliveries(self)


def to_deliveries(batch: DeliveryBatch) -> list[Delivery]:
    """Per-record Delivery objects of a batch: columns become lists in C, and
    ``map`` builds the objects without a Python-level loop body."""
    records = batch.records
    count = records.num_rows
    if count == 0:
        return []
    headers_column = records.column("headers")
    headers: Iterable[Mapping[str, bytes]]
    if headers_column.null_count == count:
        headers = itertools.repeat(NO_HEADERS, count)
    else:
        headers = [dict(pairs) if pairs else NO_HEADERS for pairs in headers_column.to_pylist()]
    return list(
        map(
            Delivery,
            itertools.repeat(batch.topic, count),
            records.column("offset").to_numpy().tolist(),
            records.column("key").to_pylist(),
            records.column("value").to_pylist(),
            headers,
            records.column("timestamp").view(pa.int64()).to_numpy().tolist(),
            records.column("version").to_pylist(),
            records.column("attempt").to_numpy().tolist(),
            itertools.repeat(batch.lease, count),
        )
    )


def decodable_deliveries(
    batches: Iterable[DeliveryBatch], nack: Callable[[DeliveryBatch], object]
) -> list[Delivery]:
    """The Delivery objects of polled batches. Records that cannot be Delivery objects
    are given to ``nack`` (one batch per topic) and left out, so one such record fails
    neither the poll nor the other records."""
    deliveries: list[Delivery] = []
    for batch in batches:
        bad = undecodable_rows(batch.records)
        if len(bad):
            keep = np.ones(batch.records.num_rows, dtype=bool)
            keep[bad] = False
            undecodable = DeliveryBatch(batch.topic, batch.lease, batch.records.take(pa.array(bad)))
            log.warning(
                "%d record(s) of %s cannot be decoded (a header name that is not UTF-8 or a "
                "timestamp outside the years 1-9999), offsets %s: nacked",
                len(bad),
                batch.topic,
                undecodable.records.column("offset").to_pylist()[:10],
            )
            nack(undecodable)
            batch = DeliveryBatch(batch.topic, batch.lease, batch.records.filter(pa.array(keep)))
        deliveries.extend(to_deliveries(batch))
    return deliveries


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A delivery an ack or nack did not settle, and why (``DONE``, ``STALE`` or
    ``UNKNOWN``, see the module's constants)."""

    topic: str
    offset: int
    lease: int
    status: str


@dataclasses.dataclass(frozen=True)
class AckResult:
    """The answer to an ack or a nack: how many deliveries it settled, and every
    delivery it did not settle with the reason. Rejections are not errors: a late ack
    after a redelivery is a normal event of at-least-once delivery."""

    settled: int
    rejected: list[Rejection] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_json(self) -> dict[str, Any]:
        return {"settled": self.settled, "rejected": [dataclasses.asdict(r) for r in self.rejected]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AckResult:
        return cls(int(data["settled"]), [Rejection(**r) for r in data.get("rejected", [])])


I64 = npt.NDArray[np.int64]

# What ack and nack take: one delivery, a poll's batch, or any number of deliveries.
Settleable = Delivery | DeliveryBatch | Iterable[DeliveryRef]


def group_refs(refs: Settleable) -> Iterator[tuple[str, I64, I64]]:
    """Split delivery references into (topic, offsets, leases) arrays, one per topic,
    in the order the topics first appear (so an ack's rejections come grouped by
    topic). Raises InvalidRequest for malformed ones."""
    if isinstance(refs, DeliveryBatch):  # the columnar form: no per-record work
        offsets = refs.records.column("offset").to_numpy().astype(np.int64)
        yield _checked(refs.topic, offsets, np.full(len(offsets), refs.lease, dtype=np.int64))
        return
    try:
        items: list[DeliveryRef] = [refs] if isinstance(refs, Delivery) else list(refs)
    except TypeError:
        raise InvalidRequest(
            f"ack and nack take a delivery, a poll's batch or a list of deliveries, got {type(refs).__name__}"
        ) from None
    if not items:
        return
    try:
        topics = list(map(_topic_of, items))
        offsets = np.fromiter(map(_offset_of, items), dtype=np.int64, count=len(items))
        leases = np.fromiter(map(_lease_of, items), dtype=np.int64, count=len(items))
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequest(
            "ack and nack take deliveries (or objects with topic, offset and lease) as "
            f"returned by poll: {exc}"
        ) from exc
    first = topics[0]
    if topics.count(first) == len(topics):
        yield _checked(first, offsets, leases)
        return
    names = np.array(topics, dtype=object)
    for topic in dict.fromkeys(topics):
        selected = names == topic
        yield _checked(topic, offsets[selected], leases[selected])


_topic_of = operator.attrgetter("topic")
_offset_of = operator.attrgetter("offset")
_lease_of = operator.attrgetter("lease")


def _checked(topic: object, offsets: I64, leases: I64) -> tuple[str, I64, I64]:
    if not isinstance(topic, str):
        raise InvalidRequest(f"a delivery's topic must be a string, got {type(topic).__name__}")
    if len(offsets) and (offsets.min() < 0 or leases.min() <= 0):
        raise InvalidRequest("a delivery has an offset >= 0 and a lease > 0, as poll returns them")
    return topic, offsets, leases
