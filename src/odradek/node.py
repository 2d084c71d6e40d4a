"""A node: one engine and everything that serves it, put together in one place.

The engine (engine/) is the log: topics, appends, reads, schemas. It owns none of its
clients. What serves it is composed here, once per engine:

* ``groups``: the ``odradek`` consumer groups (groups/manager.py), woken by the
  engine's arrival hook (engine/arrivals.py) and closed when the engine closes;
* ``kafka_groups``: the Kafka door's consumer groups as every thread sees them
  (protocols/kafka/catalog.py), attached to the Kafka listener's coordinator while one
  runs; made on first use, so that a process that never touches a group never loads
  the Kafka door;
* ``directory``: every group of either kind, one namespace (groups/directory.py,
  decision 0008): what the doors call to list, describe and delete groups;
* ``views``: the materialized key views (views/manager.py), woken by the arrival hook
  and stopped (after a last checkpoint) when the engine closes; ``waits``: appends
  with ``wait_for`` (views/waits.py), woken by view applies and group acks
  (decision 0019). The embedded client appends through :meth:`Node.append`;
  the Flight door's ``check_waiters`` and ``wait_for`` actions use ``waits`` alike.

``odradek serve``, the embedded client (``odradek.open``), the tests and the bench
build a node (``Node.open(path)`` or ``Node(engine)``) and hand it to the doors
(``FlightService``, ``start_kafka_listener``, ``Metrics``). A door given a bare
engine, as before nodes existed, serves it through :meth:`Node.of`, the node of that
engine, made on first use: every door of one engine shares one node, and so one set
of consumer groups.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from odradek import api, defaults
from odradek.engine import Engine
from odradek.engine.arrivals import CLOSING, Arrival
from odradek.errors import InvalidRequest
from odradek.groups.directory import GroupDirectory, GroupNames
from odradek.groups.info import KIND_KAFKA
from odradek.groups.manager import GroupManager
from odradek.records import Records
from odradek.types import AppendResult
from odradek.views import ViewManager, Waits

if TYPE_CHECKING:
    from odradek.protocols.kafka.catalog import KafkaGroups

# The node of each engine that has one (an engine closing drops its entry).
_nodes: weakref.WeakKeyDictionary[Engine, Node] = weakref.WeakKeyDictionary()
_nodes_lock = threading.Lock()


class Node:
    """An engine with its consumer groups, and the directory of every group."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Serve ``engine`` (which the node closes with :meth:`close`). ``clock`` is
        the groups' monotonic clock (tests move it)."""
        self.engine = engine
        self.names = GroupNames()
        self.groups = GroupManager(engine, clock=clock, names=self.names)
        self.directory = GroupDirectory(self.groups)
        self._kafka_groups: KafkaGroups | None = None
        self._kafka_lock = threading.Lock()
        self.names.add_loader(KIND_KAFKA, self._kafka_group_names)
        self.directory.add_kind_later(lambda: self.kafka_groups)
        self.waits = Waits(self.groups)
        self.groups.on_progress = self.waits.notify
        with _nodes_lock:
            if engine in _nodes:
                raise InvalidRequest("this engine is served by a node already; use Node.of(engine)")
            _nodes[engine] = self
        try:
            self.views = ViewManager(engine, self.waits.notify)
        except BaseException:
            with _nodes_lock:
                _nodes.pop(engine, None)
            raise
        self.waits.views = self.views
        self._remove_listener = engine.on_arrival(self._arrived)

    @classmethod
    def open(cls, path: str | os.PathLike[str], **engine_options: Any) -> Node:
        """Open (creating if needed) the data directory ``path`` and serve it."""
        engine = Engine(path, **engine_options)
        try:
            return cls(engine)
        except BaseException:
            engine.close()
            raise

    @classmethod
    def of(cls, served: Engine | Node) -> Node:
        """The node of ``served`` (itself if it is one), made on first use."""
        if isinstance(served, Node):
            return served
        with _nodes_lock:
            node = _nodes.get(served)
        if node is not None:
            return node
        try:
            return cls(served)
        except InvalidRequest:  # another thread made it meanwhile
            with _nodes_lock:
                return _nodes[served]

    @property
    def kafka_groups(self) -> KafkaGroups:
        """The Kafka door's groups (made on first use; see the module docstring)."""
        with self._kafka_lock:
            if self._kafka_groups is None:
                from odradek.protocols.kafka.catalog import KafkaGroups

                self._kafka_groups = KafkaGroups(self.engine, self.names)
            return self._kafka_groups

    def _kafka_group_names(self) -> list[str]:
        return self.kafka_groups.stored_names()

    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        """``Client.append``: the engine's append, then, with ``wait_for``, the wait for
        its waiters, which are checked before anything is written (views/waits.py)."""
        if wait_for is None:
            return self.engine.append(
                topic, records, expect=expect, expect_offset=expect_offset, producer=producer
            )
        waiters, seconds = self.waits.check(topic, wait_for, timeout)
        result = self.engine.append(
            topic, records, expect=expect, expect_offset=expect_offset, producer=producer
        )
        return self.waits.wait(topic, waiters, result, seconds) if waiters else result

    def _arrived(self, arrival: Arrival) -> None:
        self.views.arrived(arrival)
        self.groups.arrived(arrival)
        if arrival.kind == CLOSING:
            self._remove_listener()
            with _nodes_lock:
                _nodes.pop(self.engine, None)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.engine.closed

    def close(self) -> None:
        """Close the groups, then the engine."""
        self.engine.close()  # its closing event closes the groups first

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
