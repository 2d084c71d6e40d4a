"""The console's tail of a pattern over every cell of a cluster (decision 0039), one
Server-Sent Events stream of every cell's tails interleaved, without sockets.

Over a cluster whose topics are spread over cells (decision 0032) a pattern matches
topics of every cell, and each cell's tail (tail.py's :class:`PatternTail`) follows
the topics of its own engine. The agent a browser's tail reached opens the tail of
every cell: the cells it serves here, each other one from the agent serving it (the
request forwarded with the client's credentials and the cell named, decision 0036),
and hands :class:`CellsTail` those parts, each an iterator of the SSE bytes a cell
sends.

A thread per part reads it and cuts it into events (blocks ending with an empty
line); its heartbeats and its ``retry`` line are dropped, its ``record`` events go
into one bounded queue (``limits.console_tail_cells_events_max``: a slow browser
holds the parts back, never an unbounded backlog), which the stream writes out as
they come. Records of one topic keep their order (a topic is in one cell, read by
one part); topics of different cells interleave as they arrive, as one node's
topics do. The stream sends a ``retry`` line first and a heartbeat when nothing came
for ``heartbeat_seconds``.

The stream ends, as one node's does, when the server drains (event ``end``), when
the browser goes away or its principal's checks fail (``guard``, event ``error``);
and when one part ends or fails: a part's ``end`` or ``error`` event is passed on,
and a part that stops without one (its agent gave the cell up, died) ends the stream
with an ``unavailable`` error event: the browser reconnects, a second later, to a
tail of every cell again. Events carry no ids, as one node's tail's do not.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from odradek import limits
from odradek.errors import OdradekError, Unavailable, to_wire
from odradek.security.principal import Principal
from odradek.security.revalidation import StreamGuard

# What one part puts in the queue: an event to pass on, or the part's last word.
_EVENT, _LAST = "event", "last"

# How long the stream waits on the queue at once: a stop is noticed this soon.
_WAIT_SECONDS = 1.0


class TailPart:
    """One cell's tail: ``chunks`` its SSE bytes as they come, ``local`` whether this
    agent serves the cell (its bytes are metered here; another agent meters its own),
    ``close`` ends it (unblocking a read in progress)."""

    def __init__(self, cell: str, chunks: Iterable[bytes], close: Callable[[], None], *, local: bool) -> None:
        self.cell = cell
        self.chunks = chunks
        self.close = close
        self.local = local


class CellsTail:
    """Every cell's tail of one pattern as one stream (the module's docstring). Its
    shell sets ``peer_gone`` and ``guard`` as on an :class:`EventStream`."""

    def __init__(
        self,
        parts: Sequence[TailPart],
        *,
        heartbeat_seconds: float,
        stopping: Callable[[], bool],
    ) -> None:
        self._parts = list(parts)
        self._heartbeat_seconds = heartbeat_seconds
        self._stopping = stopping
        self._queue: queue.Queue[tuple[str, bytes, bool]] = queue.Queue(limits.console_tail_cells_events_max)
        self._ended = threading.Event()
        self._local_bytes = 0  # of the chunk last yielded, to meter here
        self.closed = False
        self.peer_gone: Callable[[], bool] = lambda: False
        self.authorize: Callable[[Principal], None] | None = None
        self.guard: StreamGuard | None = None

    def metered(self, chunk: bytes) -> int:
        """How many bytes of ``chunk`` (the one last yielded) this agent meters: those of
        its own cells' tails and its own lines."""
        return min(len(chunk), self._local_bytes)

    def part_stopped(self) -> bool:
        """For a part served here: whether it must stop (this stream ended)."""
        return self._ended.is_set()

    def _stop(self) -> bool:
        return self._stopping() or self.peer_gone() or (self.guard is not None and self.guard.ended())

    def __iter__(self) -> Iterator[bytes]:
        threads = [
            threading.Thread(target=self._pump, args=(part,), name=f"odradek-tail-{part.cell}", daemon=True)
            for part in self._parts
        ]
        try:
            for thread in threads:
                thread.start()
            self._local_bytes = len(first := b"retry: 1000\n\n")
            yield first
            quiet_since = time.monotonic()
            while not self._stop():
                if self.guard is not None:
                    self.guard.check()
                try:
                    kind, data, local = self._queue.get(timeout=_WAIT_SECONDS)
                except queue.Empty:
                    if time.monotonic() - quiet_since >= self._heartbeat_seconds:
                        quiet_since = time.monotonic()
                        self._local_bytes = len(beat := b": heartbeat\n\n")
                        yield beat
                    continue
                self._local_bytes = len(data) if local else 0
                yield data
                if kind == _LAST:
                    return
                quiet_since = time.monotonic()
            if self.guard is not None:
                self.guard.check()  # ended by its guard: the error event says why
            if self._stopping():
                document = {"reason": "the server is shutting down; reconnect to resume"}
                self._local_bytes = len(end := _event("end", document))
                yield end
        except OdradekError as exc:
            self._local_bytes = len(error := _event("error", to_wire(exc)))
            yield error
        finally:
            self.close()

    def _pump(self, part: TailPart) -> None:
        """Read one part into the queue, event by event, until it or the stream ends."""
        pending = b""
        last: bytes | None = None
        try:
            for chunk in part.chunks:
                pending += chunk
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    if not event or event.startswith((b":", b"retry:")):
                        continue  # a heartbeat, the reconnection delay: the stream sends its own
                    if event.startswith((b"event: end", b"event: error")):
                        last = event + b"\n\n"
                        return
                    if not self._put(_EVENT, event + b"\n\n", part.local):
                        return
                if len(pending) > limits.console_tail_event_bytes_max:
                    raise ValueError(f"an event longer than {limits.console_tail_event_bytes_max} bytes")
        except Exception as exc:  # noqa: BLE001 - a part that failed ends the stream, saying why
            last = _event("error", to_wire(_part_failed(part, str(exc))))
        finally:
            if last is None:
                last = _event("error", to_wire(_part_failed(part, "its stream ended")))
            self._put(_LAST, last, True)

    def _put(self, kind: str, data: bytes, local: bool) -> bool:
        """Queue one item unless the stream ended first; whether it was queued."""
        while not self._ended.is_set():
            try:
                self._queue.put((kind, data, local), timeout=_WAIT_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """End every part (once); each holds its slot (http_sse_streams_max) where it
        is served."""
        if self.closed:
            return
        self.closed = True
        self._ended.set()
        for part in self._parts:
            try:
                part.close()
            except Exception:  # noqa: BLE001 - a part already gone is closed
                pass


def _part_failed(part: TailPart, why: str) -> Unavailable:
    return Unavailable(f"the tail of cell {part.cell} stopped ({why}); reconnect to tail every cell again")


def _event(name: str, document: Mapping[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(document)}\n\n".encode()
