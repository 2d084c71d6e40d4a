"""What the engine tells whoever serves it: new durable data, topics created or deleted.

The engine owns no client. Whatever waits for the log to change (consumer groups, the
Kafka door's long-polling fetches) registers a listener with
:meth:`Engine.on_arrival <odradek.engine.engine.Engine.on_arrival>` instead of polling.

Rules
-----
* A listener is called after the engine released every lock the change took, in the
  thread that made the change: the appender whose fsync made records durable (one call
  per fsync, for every append it acknowledged), or the caller that created, deleted or
  changed a topic. It must be quick and must never wait for the engine: it sets a flag,
  notifies a condition, or hands the news to an event loop.
* Listeners are called in the order they were added. One that raises is logged; the
  others are still called, and the change it was told about stands.
* ``closing`` is the last event of an engine (sent before its topics close); only an
  fsync that was already under way may still report, and listeners ignore it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

DURABLE = "durable"  # records of ``topic`` are durable up to ``offset`` (exclusive)
CREATED = "created"  # ``topic`` was created
DELETED = "deleted"  # ``topic`` was deleted
CHANGED = "changed"  # ``topic``'s schema changed, or an operator accepted lost offsets
CLOSING = "closing"  # the engine is closing; nothing of it may be used any more


@dataclasses.dataclass(frozen=True)
class Arrival:
    kind: str
    topic: str | None = None
    offset: int = 0


ArrivalListener = Callable[[Arrival], None]


class ArrivalListeners:
    """The listeners of one engine; adding and removing never blocks a notification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[ArrivalListener, ...] = ()

    def add(self, listener: ArrivalListener) -> Callable[[], None]:
        """Add ``listener``; returns the function that removes it again."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._lock:
                kept = list(self._listeners)
                if listener in kept:
                    kept.remove(listener)
                self._listeners = tuple(kept)

        return remove

    def fire(self, arrival: Arrival) -> None:
        for listener in self._listeners:  # a snapshot: the tuple is replaced, never changed
            try:
                listener(arrival)
            except Exception:  # a listener's bug must not fail the append that told it
                log.exception("an arrival listener failed on %s", arrival)
