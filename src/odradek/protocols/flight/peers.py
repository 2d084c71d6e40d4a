"""What one agent's Flight door asks of the other agents of its cluster (decision 0035).

With topics spread over cells, a wildcard read covers topics of every cell: the agent
the client called reads its own cells' topics and asks each agent serving another cell
for that cell's part (a read ticket naming the cell), with the client's credentials,
so that the agent asked authenticates, authorizes and meters the part as its own call.
:class:`Peers` keeps one Flight client per agent URL (at most as many as the cluster
has cells) and makes those calls; :func:`merge_streams` interleaves the parts as they
come, each read on a thread of its own into a bounded queue, so that a read that
follows (or waits) on one cell does not hold back another's records.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from odradek import limits
from odradek.errors import NotOwner, OdradekError, Unavailable

log = logging.getLogger("odradek.flight")

# How many batches one part of a merged read may hold before its reader waits.
_PART_QUEUE_BATCHES = 4
_POLL_SECONDS = 0.2


class Peers:
    """Flight clients to the other agents, made on first use and kept (``close()``
    closes them). ``tls`` (the server's, protocols/tls.py) gives the client the CAs to
    trust and, for doors that ask for client certificates, this agent's certificate."""

    def __init__(self, tls: Any = None) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._clients: dict[str, flight.FlightClient] = {}

    def _client(self, url: str) -> flight.FlightClient:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                if len(self._clients) >= limits.cluster_cells_max:  # agents that came and went
                    for old in self._clients.values():
                        old.close()
                    self._clients.clear()
                client = flight.FlightClient(url, **self._tls_arguments())
                self._clients[url] = client
            return client

    def _tls_arguments(self) -> dict[str, Any]:
        if self._tls is None:
            return {}
        current = self._tls.current
        arguments: dict[str, Any] = {}
        if current.ca_pem is not None:
            arguments["tls_root_certs"] = current.ca_pem
        if self._tls.mutual:
            arguments["cert_chain"] = current.cert_pem
            arguments["private_key"] = current.key_pem
        return arguments

    def read(
        self, url: str, ticket: bytes, header: str | None, stop: Callable[[], bool]
    ) -> Iterator[pa.RecordBatch]:
        """The batches agent ``url`` answers a read ``ticket`` with, asked with the
        credentials ``header``; ends early once ``stop()`` (the reader is cancelled)."""
        headers = [(b"authorization", header.encode())] if header is not None else []
        options = flight.FlightCallOptions(headers=headers)
        try:
            reader = self._client(url).do_get(flight.Ticket(ticket), options)
        except flight.FlightError as exc:
            raise unavailable(url, exc) from exc
        try:
            while not stop():
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return
                if chunk.data is not None:
                    yield chunk.data
        except flight.FlightError as exc:
            raise unavailable(url, exc) from exc
        finally:
            reader.cancel()

    def action(self, url: str, kind: str, body: bytes, header: str | None, wait: float = 0.0) -> bytes:
        """Agent ``url``'s answer to action ``kind`` with ``body``, asked with the
        credentials ``header``; an action that waits says how long (``wait``)."""
        headers = [(b"authorization", header.encode())] if header is not None else []
        timeout = wait + limits.cluster_request_timeout_seconds
        options = flight.FlightCallOptions(headers=headers, timeout=timeout)
        try:
            results = list(self._client(url).do_action(flight.Action(kind, body), options))
        except flight.FlightError as exc:
            raise unavailable(url, exc) from exc
        return results[0].body.to_pybytes() if results else b""

    def append(self, url: str, topic: str, batch: pa.RecordBatch, header: str | None) -> None:
        """Append ``batch`` to ``topic`` through agent ``url`` (a DoPut), asked with the
        credentials ``header``; returns once the agent acknowledged it."""
        headers = [(b"authorization", header.encode())] if header is not None else []
        options = flight.FlightCallOptions(headers=headers, timeout=limits.cluster_request_timeout_seconds)
        try:
            writer, reader = self._client(url).do_put(
                flight.FlightDescriptor.for_path(topic), batch.schema, options
            )
            try:
                writer.write_batch(batch)
                writer.done_writing()
                if reader.read() is None:
                    raise Unavailable(f"the agent at {url} ended the append to {topic} unanswered; retry")
            finally:
                writer.close()
        except flight.FlightError as exc:
            raise unavailable(url, exc) from exc

    def exchange(
        self, url: str, command: bytes, header: str | None
    ) -> tuple[flight.FlightStreamWriter, flight.FlightStreamReader]:
        """A DoExchange stream to agent ``url`` opened with ``command``, asked with the
        credentials ``header`` (a cell's part of a group member, cells_group.py)."""
        headers = [(b"authorization", header.encode())] if header is not None else []
        try:
            writer, reader = self._client(url).do_exchange(
                flight.FlightDescriptor.for_command(command), flight.FlightCallOptions(headers=headers)
            )
        except flight.FlightError as exc:
            raise unavailable(url, exc) from exc
        return writer, reader

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def unavailable(url: str, exc: flight.FlightError) -> OdradekError:
    """A part that failed: the client asks again (the cell may be changing hands)."""
    from odradek.protocols.flight.messages import decode_error

    detail = getattr(exc, "extra_info", None)
    decoded = decode_error(detail) if detail else None
    if decoded is not None and not isinstance(decoded, (Unavailable, NotOwner)):
        return decoded  # the agent's own refusal (unauthorized, invalid): passed on as it is
    return Unavailable(f"the agent at {url} did not answer its cell's part ({exc}); retry")


_END = object()


def merge_streams(
    parts: list[Callable[[Callable[[], bool]], Iterator[pa.RecordBatch]]], stop: Callable[[], bool]
) -> Iterator[pa.RecordBatch]:
    """The batches of every part as they come: each ``part(stopped)`` is read on a
    thread of its own into a bounded queue; the merged stream ends when every part
    ended, and the first part that fails fails it. ``stop()`` (the caller went away, the
    server drains) and closing the stream end every part."""
    if len(parts) == 1:
        yield from parts[0](stop)
        return
    ended = threading.Event()

    def stopped() -> bool:
        return ended.is_set() or stop()

    batches: queue.Queue[Any] = queue.Queue(maxsize=_PART_QUEUE_BATCHES * len(parts))

    def put(item: Any) -> bool:
        while not stopped():
            try:
                batches.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def run(part: Callable[[Callable[[], bool]], Iterator[pa.RecordBatch]]) -> None:
        try:
            for batch in part(stopped):
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            put(exc)

    threads = [
        threading.Thread(target=run, args=(part,), name="odradek-read-part", daemon=True) for part in parts
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            try:
                item = batches.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if stop():
                    return
                continue
            if item is _END:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        ended.set()
