"""Server-Sent Events: a topic's tail as a ``text/event-stream``, without sockets.

Theory of operation: an :class:`EventStream` is an iterator of byte chunks that the
HTTP shell writes and flushes one by one. Each record is one event whose ``id`` is its
offset, so a client that reconnects with ``Last-Event-ID: n`` resumes at ``n + 1``
(browsers' ``EventSource`` does it by itself). The stream reads the log with the
engine's long-polling ``read`` in rounds of at most ``heartbeat_seconds``: a round that
ends with nothing new sends a comment line (a heartbeat), which keeps proxies from
closing the connection and lets the shell notice a vanished client (its write fails).
The stream ends:

* after ``limit`` records, if the client asked for a limit (event ``end``);
* when the server drains (event ``end`` with the reason), within a second;
* when the client goes away (the shell's ``peer_gone``), within a second;
* on an error, such as the topic being deleted (event ``error``, the API's error JSON);
* when its principal no longer authenticates (its token revoked, its user removed) or
  may no longer read the topic (event ``error``, code ``unauthenticated`` or
  ``unauthorized``): ``guard`` checks it again as the credentials or bindings change,
  and at least every ``limits.security_stream_recheck_seconds`` (security/revalidation.py).

Each open stream holds a slot of :class:`StreamSlots` (per server, and per principal or,
without authentication, per peer address) from its start to its end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from odradek.engine import Engine
from odradek.errors import OdradekError, Unavailable, to_wire
from odradek.protocols.http_api.records import combined, events
from odradek.security.principal import Principal
from odradek.security.revalidation import StreamGuard

CONTENT_TYPE = "text/event-stream"


class StreamSlots:
    """Open streams, in total and per owner (a principal or a peer); thread-safe."""

    def __init__(self, streams_max: int, per_owner_max: int) -> None:
        self.streams_max = streams_max
        self.per_owner_max = per_owner_max
        self._lock = threading.Condition()
        self._open: dict[str, int] = {}

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._open.values())

    def acquire(self, owner: str) -> None:
        """Take a slot for ``owner``; Unavailable (503, retry later) over a cap."""
        with self._lock:
            held = self._open.get(owner, 0)
            total = sum(self._open.values())
            if total >= self.streams_max:
                raise Unavailable(
                    f"{total} event streams are open, the server's cap (http_sse_streams_max="
                    f"{self.streams_max}); retry later"
                )
            if held >= self.per_owner_max:
                raise Unavailable(
                    f"{owner} has {held} event streams open, the cap per principal "
                    f"(http_sse_streams_per_principal_max={self.per_owner_max}); close one first"
                )
            self._open[owner] = held + 1

    def release(self, owner: str) -> None:
        with self._lock:
            held = self._open.get(owner, 0) - 1
            if held > 0:
                self._open[owner] = held
            else:
                self._open.pop(owner, None)
            self._lock.notify_all()

    def wait_empty(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every stream to end; whether they all did."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._open, timeout=seconds)


class EventStream:
    """One topic's tail as SSE chunks (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        topic: str,
        start: int,
        *,
        limit: int | None,
        json_values: bool,
        base64_values: bool,
        heartbeat_seconds: float,
        batch_records_max: int,
        stopping: Callable[[], bool],
        release: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._topic = topic
        self._position = start
        self._left = limit
        self._json_values = json_values
        self._base64_values = base64_values
        self._heartbeat_seconds = heartbeat_seconds
        self._batch_records_max = batch_records_max
        self._stopping = stopping
        self._release: Callable[[], None] | None = release
        self.closed = False
        # Whether the client went away: the shell that writes the stream sets it, so a
        # closed connection ends the stream within a second, not at its next write.
        self.peer_gone: Callable[[], bool] = lambda: False
        # The route's authorization, asked again of the principal (set by the routes), and
        # the checks of the principal (set by the shell, which knows its credentials).
        self.authorize: Callable[[Principal], None] | None = None
        self.guard: StreamGuard | None = None

    def metered(self, chunk: bytes) -> int:
        """How many bytes of ``chunk`` (the one last yielded) the shell meters: all."""
        return len(chunk)

    def _stop(self) -> bool:
        return self._stopping() or self.peer_gone() or (self.guard is not None and self.guard.ended())

    def _check(self) -> None:
        if self.guard is not None:
            self.guard.check()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield b"retry: 1000\n\n"  # an EventSource reconnects after a second
            while not self._stop():
                self._check()
                size = (
                    self._batch_records_max
                    if self._left is None
                    else min(self._left, self._batch_records_max)
                )
                batches = self._engine.fetch(
                    self._topic, self._position, max_records=size, value_format="json"
                )
                if batches:
                    for batch in combined(batches):
                        yield self._records(batch)
                    if self._left is not None and self._left <= 0:
                        yield _event("end", {"reason": "limit reached", "next_offset": self._position})
                        return
                    continue
                if not self._wait() and not self._stop():
                    yield b": heartbeat\n\n"
            self._check()  # ended by its guard: the error event says why
            if self._stopping():
                yield _event("end", {"reason": "the server is shutting down; reconnect to resume"})
        except OdradekError as exc:
            yield _event("error", to_wire(exc))
        finally:
            self.close()

    def _wait(self) -> bool:
        """Wait up to a heartbeat's time for a record past the position; whether one came."""
        reader = self._engine.read(
            self._topic,
            start=self._position,
            wait=self._heartbeat_seconds,
            max_records=1,
            stop=self._stop,
        )
        try:
            for _ in reader:
                return True
            return False
        finally:
            reader.close()

    def _records(self, batch: pa.RecordBatch) -> bytes:
        if self._left is not None and batch.num_rows > self._left:
            batch = batch.slice(0, self._left)
        chunk = events(batch, json_values=self._json_values, base64_values=self._base64_values)
        self._position = int(batch.column("offset")[-1].as_py()) + 1
        if self._left is not None:
            self._left -= batch.num_rows
        return chunk.encode()

    def close(self) -> None:
        """Give the stream's slot back (once)."""
        self.closed = True
        release, self._release = self._release, None
        if release is not None:
            release()


def _event(name: str, document: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(document)}\n\n".encode()
