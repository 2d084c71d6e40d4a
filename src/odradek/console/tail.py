"""A pattern's tail as Server-Sent Events: every topic a pattern matches, as it grows.

Theory of operation: the HTTP API tails one topic (its ``events`` route, whose event
ids let a browser resume); the console's live tail follows a pattern (``orders.>``)
on one connection, since a browser holds at most six connections to a server and one
stream per topic would take them all. A :class:`PatternTail` keeps the next offset of
each matching topic and reads them in rounds, each topic with one fetch (at most
``console_tail_records_per_round_max`` records); topics existing when it starts are
followed from their end (``latest``), from their last ``console_tail_recent_records``
offsets (``recent``) or from their start (``earliest``), topics created later from
their first record. Between rounds it waits on the engine's arrival hook (an event it
sets), at most a second, so that a stop or a vanished client ends it within a second,
and sends a heartbeat comment when nothing came for ``heartbeat_seconds``. A topic
deleted while followed is dropped. With authorization, only the topics the principal
may read are followed (``readable``); the others are never read. Each record is an
event ``record`` whose data is the HTTP API's record JSON with its ``topic``; events
carry no id (a reconnecting browser starts again at the end, which is what a live view
wants).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

from odradek import limits
from odradek.engine import Engine
from odradek.engine.arrivals import CREATED, Arrival
from odradek.errors import InvalidRequest, OdradekError, TopicNotFound, to_wire
from odradek.names import compile_pattern
from odradek.protocols.http_api.events import EventStream
from odradek.protocols.http_api.records import output_records

# How long one wait between rounds lasts at most: a stop is noticed this soon.
ROUND_WAIT_SECONDS = 1.0


class PatternTail(EventStream):
    """The tail of every topic ``pattern`` matches (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        pattern: str,
        *,
        start: str,
        readable: Callable[[list[str]], list[str]] | None = None,
        heartbeat_seconds: float,
        stopping: Callable[[], bool],
        release: Callable[[], None],
        said: Callable[[str], str] = str,
    ) -> None:
        """``pattern`` and ``readable``'s names are the engine's; ``said`` gives a topic's
        name as the caller says it in the events (a tenant's, decision 0028)."""
        self._said = said
        super().__init__(
            engine,
            pattern,
            0,
            limit=None,
            json_values=False,
            base64_values=False,
            heartbeat_seconds=heartbeat_seconds,
            batch_records_max=limits.console_tail_records_per_round_max,
            stopping=stopping,
            release=release,
        )
        self._pattern = pattern
        self._matches = compile_pattern(pattern)
        self._positions: dict[str, int] = {}
        self._readable = readable
        self._refused: set[str] = set()  # matching topics the principal may not read
        self._arrived = threading.Event()
        # Set when a topic was created (and at the start): the next round lists the
        # topics again; other rounds read the ones followed, without listing.
        self._created = threading.Event()
        self._follow(start)  # refused before the stream starts: a clear HTTP error

    def _follow(self, start: str) -> None:
        """Follow the matching topics not followed yet: from ``start`` (latest, recent or
        earliest), or from their first record for topics created while tailing."""
        names = [name for name in self._engine.list_topics() if self._matches(name)]
        if self._readable is not None:
            new = [name for name in names if name not in self._positions and name not in self._refused]
            allowed = set(self._readable(new))
            self._refused.update(name for name in new if name not in allowed)
            names = [name for name in names if name not in self._refused]
        if len(names) > limits.console_tail_topics_max:
            raise InvalidRequest(
                f"{self._pattern!r} matches {len(names)} topics; a tail follows at most "
                f"{limits.console_tail_topics_max} (console_tail_topics_max): narrow the pattern"
            )
        for name in names:
            if name not in self._positions:
                try:
                    self._positions[name] = self._start(name, start)
                except TopicNotFound:
                    continue  # deleted since it was listed

    def _start(self, name: str, start: str) -> int:
        if start != "recent":
            return self._engine.resolve_start(name, start)
        first = self._engine.resolve_start(name, "earliest")
        return max(first, self._engine.resolve_start(name, "latest") - limits.console_tail_recent_records)

    def _wake(self, arrival: Arrival) -> None:
        if arrival.topic is None or self._matches(arrival.topic):
            if arrival.kind == CREATED:
                self._created.set()
            self._arrived.set()

    def __iter__(self) -> Iterator[bytes]:
        remove = self._engine.on_arrival(self._wake)
        self._created.set()  # a topic created since the start was listed is listed now
        try:
            yield b"retry: 1000\n\n"
            quiet_since = time.monotonic()
            while not self._stop():
                self._check()  # its principal's token revoked, user removed: an error event
                self._arrived.clear()  # before reading: what arrives after is not missed
                if self._created.is_set():
                    self._created.clear()  # before listing: a topic created after is listed next
                    self._follow("earliest")
                sent = False
                for topic in list(self._positions):
                    chunk = self._round(topic)
                    if chunk:
                        sent = True
                        yield chunk
                if sent:
                    quiet_since = time.monotonic()
                    continue
                if self._arrived.wait(ROUND_WAIT_SECONDS) or self._stop():
                    continue
                if time.monotonic() - quiet_since >= self._heartbeat_seconds:
                    quiet_since = time.monotonic()
                    yield b": heartbeat\n\n"
            self._check()  # ended by its guard: the error event says why
            if self._stopping():
                document = {"reason": "the server is shutting down; reconnect to resume"}
                yield f"event: end\ndata: {json.dumps(document)}\n\n".encode()
        except OdradekError as exc:
            yield f"event: error\ndata: {json.dumps(to_wire(exc))}\n\n".encode()
        finally:
            remove()
            self.close()

    def _round(self, topic: str) -> bytes:
        """The events of one fetch of ``topic`` from its position (b"" if none)."""
        try:
            json_values = self._engine.get_schema(topic) is not None
            batches = self._engine.fetch(
                topic, self._positions[topic], max_records=self._batch_records_max, value_format="json"
            )
        except TopicNotFound:
            del self._positions[topic]  # deleted: the pattern no longer matches it
            return b""
        parts = []
        for batch in batches:
            documents = output_records(batch, json_values=json_values, base64_values=False)
            if not documents:
                continue
            self._positions[topic] = int(documents[-1]["offset"]) + 1
            for document in documents:
                parts.append(
                    f"event: record\ndata: {json.dumps({'topic': self._said(topic), **document})}\n\n"
                )
        return "".join(parts).encode()
