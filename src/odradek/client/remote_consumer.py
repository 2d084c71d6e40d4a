"""A consumer-group member over Arrow Flight: what ``RemoteClient.subscribe`` returns.

The same API as the embedded :class:`~odradek.client.consumer.Consumer` (``poll``,
``poll_batches``, ``ack``, ``nack``, ``describe``, ``close``), carried by one
DoExchange stream (protocols/flight/group_messages.py). The stream is the membership:
the server joined the group when it opened and leaves when it ends, so a process that
dies gives its deliveries back at once instead of after ``ack_timeout``.

``close()`` (or a ``with`` block left normally) sends ``{"op": "leave"}`` before ending
the stream: the deliveries go back without counting an attempt. Any other end (a
``with`` block left by an exception, ``close(failed=True)``, a process that dies)
leaves without it, and each delivery counts, as with the embedded consumer.

Thread-safe: calls are sent one at a time over the stream (a lock), so an ``ack``
from another thread waits for a ``poll`` in progress to return. Use one consumer per
thread to ack while polling.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from odradek import defaults
from odradek.client.remote import RemoteClient, _errors
from odradek.errors import ClosedError, OdradekError
from odradek.groups import AckResult, Delivery, DeliveryBatch, GroupInfo, GroupOptions
from odradek.groups.delivery import Settleable, decodable_deliveries
from odradek.protocols.flight import group_messages as wire


class RemoteConsumer:
    """One member of ``group`` reading ``pattern`` through a server."""

    def __init__(self, client: RemoteClient, pattern: str, group: str, options: dict[str, Any]) -> None:
        self._client = client
        self.pattern = pattern
        self.group = group
        self.closed = False
        self._lock = threading.Lock()
        command = wire.encode_subscribe(group, pattern, options)
        with _errors(client.url):
            client._check_open()
            self._writer, self._reader = client._flight.do_exchange(
                flight.FlightDescriptor.for_command(command), client._stream_options
            )
            self._writer.begin(wire.REFS_SCHEMA)
        try:
            member, joined = wire.decode_joined(self._next_metadata())
        except BaseException:
            self._abandon()
            raise
        self.member_id = member
        self.options = GroupOptions.from_json(joined)

    # -- the consumer API -----------------------------------------------------------------

    def poll(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[Delivery]:
        """Up to ``max_records`` deliveries; waits up to ``timeout`` seconds for the first.
        A record that cannot be a Delivery is nacked and left out (as embedded)."""
        return decodable_deliveries(self.poll_batches(max_records, timeout), self.nack)

    def poll_batches(
        self, max_records: int = defaults.poll_records, timeout: float = defaults.poll_timeout_seconds
    ) -> list[DeliveryBatch]:
        """Like :meth:`poll`, as Arrow record batches (one per topic)."""
        with self._lock:
            self._check_open()
            self._send(wire.encode_poll(max_records, timeout))
            batches: list[DeliveryBatch] = []
            while True:
                chunk = self._next_chunk()
                metadata = wire.metadata_of(chunk)
                if chunk.data is not None:
                    try:
                        batches.append(wire.decode_delivery(metadata, chunk.data))
                    except OdradekError:
                        self._fail()  # the rest of the answer cannot be told apart: give up the stream
                        raise
                    continue
                reply = self._reply(metadata)
                member = reply.get("member")
                if isinstance(member, str):
                    self.member_id = member  # joined again after the group dropped it
                return batches

    def ack(self, deliveries: Settleable) -> AckResult:
        """Settle one delivery, a batch, or any number of them at once."""
        return self._settle(deliveries, wire.encode_settle(nack=False))

    def nack(self, deliveries: Settleable, delay: float = defaults.nack_delay_seconds) -> AckResult:
        """Give deliveries back: each is redelivered after ``delay`` seconds (before
        any later record of its key), or dead-lettered after ``max_deliveries``."""
        return self._settle(deliveries, wire.encode_settle(nack=True, delay=delay))

    def describe(self) -> GroupInfo:
        return self._client.describe_group(self.group)

    def close(self, *, failed: bool = False) -> None:
        """Leave the group: unsettled deliveries go back to it at once, each counting
        an attempt if ``failed`` (the consumer could not process them)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(OdradekError), _errors(self._client.url):
                if not failed:  # a clean leave; without it the server counts the attempts
                    self._writer.write_metadata(pa.py_buffer(wire.encode_leave()))
                self._writer.done_writing()
                while True:  # the server leaves the group, then ends the stream
                    try:
                        self._reader.read_chunk()
                    except StopIteration:
                        break
            self._abandon()

    def __enter__(self) -> RemoteConsumer:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self.close(failed=isinstance(error, Exception))

    def __repr__(self) -> str:
        return f"RemoteConsumer(group={self.group!r}, pattern={self.pattern!r}, member={self.member_id!r})"

    # -- the stream -----------------------------------------------------------------------

    def _settle(self, deliveries: Settleable, request: bytes) -> AckResult:
        refs = wire.encode_refs(deliveries)  # InvalidRequest before anything is sent
        with self._lock:
            self._check_open()
            with _errors(self._client.url):
                if refs is None:
                    self._writer.write_metadata(pa.py_buffer(request))
                else:
                    self._writer.write_with_metadata(refs, pa.py_buffer(request))
            return wire.decode_settled(self._reply(wire.metadata_of(self._next_chunk())))

    def _send(self, request: bytes) -> None:
        with _errors(self._client.url):
            self._writer.write_metadata(pa.py_buffer(request))

    def _next_chunk(self) -> flight.FlightStreamChunk:
        try:
            with _errors(self._client.url):
                return self._reader.read_chunk()
        except StopIteration:
            self._fail()
            raise ClosedError(f"{self._client.url} ended the subscription of group {self.group!r}") from None
        except OdradekError:
            self._fail()
            raise

    def _next_metadata(self) -> bytes:
        return wire.metadata_of(self._next_chunk())

    def _reply(self, metadata: bytes) -> dict[str, Any]:
        return wire.decode_reply(metadata)

    def _fail(self) -> None:
        """The stream ended: the server has left the group for us."""
        self.closed = True
        self._abandon()

    def _abandon(self) -> None:
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self._writer.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the consumer of group {self.group!r} is closed")
