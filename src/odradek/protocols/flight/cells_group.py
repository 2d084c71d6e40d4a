"""A consumer-group member over every cell of a cluster (decision 0038).

A group subscribing to a pattern over a cluster whose topics are spread over cells
reads topics of every cell, and a cell's topics are read by the groups of the engine
serving that cell. The agent a client subscribed through therefore makes the member
one member *in every cell*: a :class:`~odradek.groups.membership.Membership` of each
cell it serves, and for each other cell a :class:`PeerMember`, a DoExchange stream to
the agent serving that cell asking for that cell's part (the subscription naming the
cell) with the client's own credentials (decision 0035). Every part joins with the
same member id, so ``describe_group`` shows the member once.

Each cell's group is a whole group of its own: it keeps its own windows, leases,
attempts and dead letters for its topics, and a key lives in one topic, so the
per-key order and the key as the failure domain hold as on a single node.

:class:`CellsMember` is what the Flight door's subscription (subscription.py) drives:

* **poll**: groups/parts.py's, rotating which part is asked first.
* **ack / nack**: the deliveries are split by their topic's cell, each part settles
  its own, the results are added up.
* **close**: every part leaves, cleanly or failing as the member does.

A part that fails (its agent died, its cell changed hands, it did not answer within
``limits.cluster_request_timeout_seconds`` past the poll's wait) fails the member with
``Unavailable``: the stream ends, every part leaves (failing), the client subscribes
again. When other parts delivered records in the same poll, those are answered first
and the failure ends the member at its next poll: dropped, they would have counted a
failed attempt in their cell each time, and a member subscribing again and again while
a cell fails over would have seen them dead-lettered without ever getting them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from odradek import limits
from odradek.errors import OdradekError, Unavailable
from odradek.groups import AckResult, DeliveryBatch, GroupOptions
from odradek.groups.delivery import Rejection, Settleable
from odradek.groups.parts import poll_parts, together
from odradek.protocols.flight import group_messages as wire
from odradek.protocols.flight.peers import unavailable
from odradek.security.tenants import Namespace

T = TypeVar("T")

log = logging.getLogger("odradek.flight")


class Part(Protocol):
    """One cell's part of a member: what a Membership offers (engine names)."""

    member_id: str

    def poll_batches(self, max_records: int, timeout: float) -> list[DeliveryBatch]: ...

    def ack(self, deliveries: Settleable) -> AckResult: ...

    def nack(self, deliveries: Settleable, delay: float) -> AckResult: ...

    def close(self, *, failed: bool = False) -> None: ...


class PeerMember:
    """A cell's part of a member served by another agent: one DoExchange stream to it.
    What goes out and comes back is in the caller's names (the agent asked applies the
    caller's namespace); this class speaks the engine's names, as a Membership does."""

    def __init__(
        self,
        url: str,
        open_stream: Callable[[], tuple[flight.FlightStreamWriter, flight.FlightStreamReader]],
        namespace: Namespace,
        group: str,
    ) -> None:
        self._url = url
        self._namespace = namespace
        self._group = group
        self._writer, self._reader = self._failing(open_stream)
        try:
            self._writer.begin(wire.REFS_SCHEMA)
            self.member_id, _ = wire.decode_joined(wire.metadata_of(self._next()))
        except BaseException:
            self.abort()
            raise
        self.closed = False

    def poll_batches(self, max_records: int, timeout: float) -> list[DeliveryBatch]:
        self._send(wire.encode_poll(max_records, timeout))
        batches: list[DeliveryBatch] = []
        while True:
            chunk = self._next()
            metadata = wire.metadata_of(chunk)
            if chunk.data is not None:
                batch = wire.decode_delivery(metadata, chunk.data)
                batches.append(dataclasses.replace(batch, topic=self._namespace.topic(batch.topic)))
                continue
            wire.decode_reply(metadata)  # the refusal the agent sent, raised
            return batches

    def ack(self, deliveries: Settleable) -> AckResult:
        return self._settle(deliveries, wire.encode_settle(nack=False))

    def nack(self, deliveries: Settleable, delay: float) -> AckResult:
        return self._settle(deliveries, wire.encode_settle(nack=True, delay=delay))

    def close(self, *, failed: bool = False) -> None:
        """Leave: with ``leave`` unless ``failed`` (the agent then counts the
        deliveries' attempts), and wait for the agent to end the stream."""
        if self.closed:
            return
        self.closed = True
        try:
            with contextlib.suppress(OdradekError):
                if not failed:
                    self._send(wire.encode_leave())
                self._failing(self._writer.done_writing)
                while True:
                    try:
                        self._failing(self._reader.read_chunk)
                    except StopIteration:
                        break
        finally:
            self.abort()

    def abort(self) -> None:
        """End the stream at once (a part that did not answer in time): the agent
        leaves the group for this member, failing."""
        self.closed = True
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self._reader.cancel()
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self._writer.close()

    def _settle(self, deliveries: Settleable, request: bytes) -> AckResult:
        local = self._namespace.local
        refs = wire.encode_refs(
            [wire.DeliveryRef(local(ref.topic), ref.offset, ref.lease) for ref in _refs(deliveries)]
        )
        if refs is None:
            self._send(request)
        else:
            self._failing(lambda: self._writer.write_with_metadata(refs, pa.py_buffer(request)))
        result = wire.decode_settled(wire.decode_reply(wire.metadata_of(self._next())))
        topic = self._namespace.topic
        return AckResult(
            result.settled,
            [dataclasses.replace(rejection, topic=topic(rejection.topic)) for rejection in result.rejected],
        )

    def _send(self, request: bytes) -> None:
        self._failing(lambda: self._writer.write_metadata(pa.py_buffer(request)))

    def _next(self) -> flight.FlightStreamChunk:
        try:
            return self._failing(self._reader.read_chunk)
        except StopIteration:
            raise Unavailable(
                f"the agent at {self._url} ended its cell's part of group {self._group!r}; subscribe again"
            ) from None

    def _failing(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except flight.FlightError as exc:
            raise unavailable(self._url, exc) from exc


def _refs(deliveries: Settleable) -> list[Any]:
    """What the Flight door hands a member to settle: a list of references."""
    if isinstance(deliveries, (list, tuple)):
        return list(deliveries)
    raise TypeError(f"a member over cells settles lists of delivery references, got {type(deliveries)}")


class CellsMember:
    """One member of a group in every cell (the module docstring); ``parts`` in cell
    order, ``cell_of`` the part index holding a topic (engine names)."""

    def __init__(
        self, group: str, parts: Sequence[Part], cell_of: Callable[[str], int], options: GroupOptions
    ) -> None:
        self._group = group
        self._parts = list(parts)
        self._cell_of = cell_of
        self.options = options
        self.member_id = self._parts[0].member_id
        self._turn = 0
        self._failure: Exception | None = None  # of a part, for the next poll
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(self._parts), thread_name_prefix="odradek-group-part"
        )
        self.closed = False

    @staticmethod
    def new_member_id() -> str:
        return uuid.uuid4().hex

    # -- the member API (subscription.py) -----------------------------------------------

    def poll_batches(self, max_records: int, timeout: float) -> list[DeliveryBatch]:
        failure, self._failure = self._failure, None
        if failure is not None:  # a part failed while others delivered: raised now
            raise failure
        first = self._turn
        self._turn = (self._turn + 1) % len(self._parts)
        return poll_parts(
            len(self._parts),
            first,
            max_records,
            timeout,
            lambda index, budget, wait: self._parts[index].poll_batches(budget, wait),
            lambda batch: batch.records.num_rows,
            self._together,
            self._keep,
        )

    def _keep(self, failure: Exception) -> bool:
        """A part failed while others delivered: their records are answered, the
        failure raised by the next poll (the member then subscribes again)."""
        self._failure = failure
        return True

    def ack(self, deliveries: Settleable) -> AckResult:
        return self._settle(deliveries, lambda part, refs: part.ack(refs))

    def nack(self, deliveries: Settleable, delay: float) -> AckResult:
        return self._settle(deliveries, lambda part, refs: part.nack(refs, delay))

    def close(self, *, failed: bool = False) -> None:
        """Every part leaves (at the same time), cleanly or failing."""
        if self.closed:
            return
        self.closed = True
        calls = [
            (index, functools.partial(part.close, failed=failed)) for index, part in enumerate(self._parts)
        ]
        try:
            self._together(calls, 0.0)
        except Exception as exc:  # noqa: BLE001 - a part that failed leaving has left
            log.info("a part of member %s of group %s failed leaving: %s", self.member_id, self._group, exc)
        finally:
            self._pool.shutdown(wait=False)

    # -- inside -----------------------------------------------------------------------

    def _settle(self, deliveries: Settleable, settle: Callable[[Part, list[Any]], AckResult]) -> AckResult:
        by_part: dict[int, list[Any]] = {}
        cells: dict[str, int] = {}
        for ref in _refs(deliveries):
            index = cells.get(ref.topic)
            if index is None:
                index = cells[ref.topic] = self._cell_of(ref.topic)
            by_part.setdefault(index, []).append(ref)
        calls = [
            (index, functools.partial(settle, self._parts[index], refs))
            for index, refs in sorted(by_part.items())
        ]
        settled = 0
        rejected: list[Rejection] = []
        for result in self._together(calls, 0.0):
            settled += result.settled
            rejected.extend(result.rejected)
        return AckResult(settled, rejected)

    def _together(self, calls: Sequence[tuple[int, Callable[[], T]]], wait: float) -> list[T]:
        """Each call's answer, in order: the calls made at the same time, each on its
        part (one call on a part of this agent: here). A part of another agent that does
        not answer within ``wait`` plus the cluster's request timeout is ended (its call
        fails with ``Unavailable``); the first failure is raised once every call ended."""
        if len(calls) == 1 and not isinstance(self._parts[calls[0][0]], PeerMember):
            return [calls[0][1]()]
        return together(
            self._pool,
            calls,
            timeout=wait + limits.cluster_request_timeout_seconds,
            late=lambda index: _abort(self._parts[index]),
        )


def _abort(part: Part) -> None:
    if isinstance(part, PeerMember):
        part.abort()
