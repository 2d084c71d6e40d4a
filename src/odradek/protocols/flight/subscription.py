"""A consumer-group member served over one DoExchange stream (group_messages.py).

The stream *is* the member: the handler joins the group when the stream opens (as a
:class:`~odradek.groups.membership.Membership`, which also joins again by itself after
the group dropped it for silence) and leaves when the stream ends, for whatever
reason, so a client that vanishes gives its deliveries back at once.

How it leaves decides whether those deliveries count as attempts (groups/group.py,
"Attempts"): cleanly (uncounted) only after the client's ``{"op": "leave"}`` or when
the server drains; failing (each counts) when the stream ends in any other way: the
client finished writing without ``leave`` (an old client, or a process whose
interpreter closed the stream as it died of an exception), was cancelled or killed,
or the stream broke (a write to it failed, an unexpected error here).

Rules
-----
* Requests are answered one at a time, in order; a refused request is answered with
  its error in-band and the member stays.
* A poll waits in slices of at most ``poll_slice_seconds`` and checks ``stop`` (the
  server drains, the client cancelled) between them, so neither holds a thread for
  the whole of a long timeout.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa
import pyarrow.flight as flight

from odradek.errors import ClosedError, NotOwner, OdradekError, Unavailable
from odradek.groups import AckResult, DeliveryBatch, GroupManager, GroupOptions
from odradek.groups.delivery import Settleable
from odradek.groups.membership import Membership
from odradek.groups.options import check_delay, check_poll
from odradek.protocols.flight import group_messages as wire
from odradek.security.revalidation import StreamGuard
from odradek.security.tenants import RAW, Namespace, local_error

# A poll's wait is cut into slices this long; between slices the handler notices a
# drain or a vanished client.
poll_slice_seconds = 1.0


class Member(Protocol):
    """What a subscription serves: a Membership, or a member over cells (cells_group.py)."""

    member_id: str
    options: GroupOptions

    def poll_batches(self, max_records: int, timeout: float) -> list[DeliveryBatch]: ...

    def ack(self, deliveries: Settleable) -> AckResult: ...

    def nack(self, deliveries: Settleable, delay: float) -> AckResult: ...

    def close(self, *, failed: bool = False) -> None: ...


def membership(groups: GroupManager, request: wire.Subscribe) -> Membership:
    """The member ``request`` asks for, joined to ``groups`` (the engine's names)."""
    options = GroupOptions.build(request.group, request.pattern, **request.options)
    return Membership(groups, request.pattern, request.group, options, request.member)


class Subscription:
    def __init__(
        self,
        member: Member,
        stop: Callable[[], bool],
        draining: Callable[[], bool] = lambda: False,
        namespace: Namespace = RAW,
        guard: StreamGuard | None = None,
        serving: Callable[[], None] = lambda: None,
    ) -> None:
        """``member``: joined already (in the engine's names), left when the stream
        ends; ``stop``: the call should end (the server drains, or the client cancelled);
        ``draining``: the server drains (a clean end for the member); ``namespace`` is
        the caller's (security/tenants.py): answers name topics as it says them;
        ``guard``: the principal checked again before each request and while a poll
        waits (security/revalidation.py); ``serving``: raises NotOwner once this agent
        may no longer serve the member's cells (a cluster agent whose lease's safe
        window closed: a paused owner that woke up), checked before each request and
        before a poll's deliveries go out, so that a replaced owner hands out nothing
        its successor may have settled since; the stream then ends with it."""
        self._guard = guard
        self._namespace = namespace
        self._member = member
        self._serving = serving
        self._stop = stop
        self._draining = draining

    def serve(
        self, reader: flight.MetadataRecordBatchReader, writer: flight.MetadataRecordBatchWriter
    ) -> None:
        """Answer requests until the client leaves or the stream ends; then leave the
        group, cleanly only after a ``leave`` request or a drain."""
        member = self._member
        clean = False
        try:
            writer.begin(wire.DELIVERY_SCHEMA)
            joined = wire.encode_joined(
                member.member_id, self._namespace.local_value(member.options.to_json())
            )
            writer.write_metadata(pa.py_buffer(joined))
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return  # without a leave request: the client may have died
                if self._guard is not None:
                    self._guard.check()  # Unauthenticated or Unauthorized: the stream ends
                if self._stop():
                    clean = self._draining()
                    if clean:
                        raise Unavailable("the server is shutting down; subscribe again to a running server")
                    return  # the client cancelled the call
                raw = wire.metadata_of(chunk)
                self._serving()  # NotOwner: the stream ends
                try:
                    request = wire.decode_request(raw)
                    if isinstance(request, wire.Leave):
                        clean = True
                        member.close()
                        writer.write_metadata(pa.py_buffer(wire.encode_left(member.member_id)))
                        return
                    self._answer(request, chunk.data, writer)
                except (Unavailable, ClosedError, NotOwner):
                    raise
                except OdradekError as exc:
                    if self._guard is not None and exc is self._guard.failure:
                        raise  # the principal no longer may: the stream ends
                    refusal = wire.encode_refused(local_error(self._namespace, exc))
                    writer.write_metadata(pa.py_buffer(refusal))
        finally:
            member.close(failed=not clean)

    def _answer(
        self,
        request: wire.Poll | wire.Settle,
        data: pa.RecordBatch | None,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        member = self._member
        namespace = self._namespace
        if isinstance(request, wire.Poll):
            batches = self._poll(request)
            self._serving()  # not handed out by an agent replaced while the poll waited
            for batch in batches:
                header = wire.encode_delivery_header(
                    dataclasses.replace(batch, topic=namespace.local(batch.topic))
                )
                writer.write_with_metadata(wire.delivery_records(batch), pa.py_buffer(header))
            writer.write_metadata(pa.py_buffer(wire.encode_polled(len(batches), member.member_id)))
            return
        if (
            data is not None
            and namespace.translates
            and data.num_columns
            and data.schema.equals(wire.REFS_SCHEMA)
        ):
            data = data.set_column(0, data.schema.field(0), namespace.engine_column(data.column(0)))
        refs = wire.decode_refs(data)
        if request.nack:
            result = member.nack(refs, check_delay(request.delay))
        else:
            result = member.ack(refs)
        writer.write_metadata(pa.py_buffer(namespace.local_json(wire.encode_settled(result))))

    def _poll(self, request: wire.Poll) -> list[DeliveryBatch]:
        max_records, timeout = check_poll(request.max_records, request.timeout)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            batches = self._member.poll_batches(max_records, max(0.0, min(remaining, poll_slice_seconds)))
            if batches or remaining <= poll_slice_seconds or self._stop():
                return batches
            if self._guard is not None:
                self._guard.check()
