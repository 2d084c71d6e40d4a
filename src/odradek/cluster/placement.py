"""Which cell holds each topic, as every agent sees it: ``PlacementView``.

The placements live in etcd (``catalog/cells/<topic>``, cluster/keys.py; written by
``EtcdCluster.place_topic`` and the like, cluster/etcd.py). Every agent keeps them all in
memory, fed on its asyncio loop by the watch (``follow``), and read by any thread (the
doors' request threads) without a request to etcd: ``cell_of`` is a dictionary lookup.

Consistency. The view lags etcd by the watch's delay: a placement another agent wrote
is seen here once its watch event arrives (usually within milliseconds, longer while a
member is lost or after a compaction, when the watch lists again). A placement this
agent writes through the view (``place``, ``move``, ``delete``) is applied here at once,
when etcd's answer returns, before the watch delivers it. Every change carries its etcd
revision, and the view never takes an older change of a topic over a newer one: the
watch delivering an older event after a local write leaves the local write in place. A
reader that must see a placement just written elsewhere waits for it (``wait_for``).

No engine or door is imported here: the view is plain data behind a lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from odradek.cluster.keys import PlacementEvent, PlacementRecord, cell_index, cell_names, validate_cell
from odradek.errors import InvalidRequest, OdradekError, TopicExists

if TYPE_CHECKING:
    from odradek.cluster.etcd import EtcdCluster

log = logging.getLogger(__name__)

_FOLLOW_RETRY_SECONDS = 1.0  # a broken watch (not a lost member: it resumes by itself) is retried after this


class PlacementView:
    """Topic to cell, and topics per cell, for ``cells`` configured cells (a count, or
    the cell names). Thread-safe: ``apply`` and ``reset`` on the agent's loop, the
    readers anywhere."""

    def __init__(self, cells: int | Sequence[str]) -> None:
        if isinstance(cells, int):
            names = cell_names(cells)
        else:
            names = tuple(validate_cell(cell) for cell in cells)
            if not names or len(set(names)) != len(names):
                raise InvalidRequest(f"a placement view needs distinct cells, got {list(names)!r}")
        self.cells: tuple[str, ...] = tuple(sorted(names, key=cell_index))
        self._changed = threading.Condition()
        self._cell_of: dict[str, str] = {}
        self._counts: dict[str, int] = dict.fromkeys(self.cells, 0)
        # The revision of the last change applied per topic; for a deleted topic, kept
        # only while the watch has not reached that revision (a local deletion).
        self._revisions: dict[str, int] = {}
        self._deleted: dict[str, int] = {}
        self._watched = 0  # the highest revision the watch or a listing delivered
        self._listed = threading.Event()

    # --- fed by the watch --------------------------------------------------------------

    def apply(self, event: PlacementEvent, *, local: bool = False) -> bool:
        """Apply one change (from the watch, or ``local``: this agent's own write as
        etcd answered it). Whether it changed the view: a change older than what the
        view holds for its topic is ignored."""
        if event.cell is not None:
            validate_cell(event.cell)
        with self._changed:
            if not local:
                self._advance(event.revision)
            if event.revision < self._revisions.get(event.topic, self._deleted.get(event.topic, 0)):
                return False
            if event.cell is None:
                self._remove(event.topic)
                if local and event.revision > self._watched:
                    self._deleted[event.topic] = event.revision
            else:
                self._deleted.pop(event.topic, None)
                self._put(event.topic, event.cell, event.revision)
            self._changed.notify_all()
            return True

    def reset(self, records: Iterable[PlacementRecord], revision: int = 0) -> None:
        """Replace everything with a listing (``EtcdCluster.placements()``) read at
        ``revision``; local writes newer than it are kept."""
        with self._changed:
            newer = {
                topic: (self._cell_of.get(topic), rev)
                for topic, rev in (*self._revisions.items(), *self._deleted.items())
                if rev > revision
            }
            self._cell_of.clear()
            self._revisions.clear()
            self._deleted.clear()
            self._counts = dict.fromkeys(self.cells, 0)
            for record in records:
                self._put(record.topic, record.cell, record.revision)
            for topic, (cell, rev) in newer.items():
                self._remove(topic)
                if cell is None:
                    self._deleted[topic] = rev
                else:
                    self._put(topic, cell, rev)
            self._watched = max(self._watched, revision)
            self._listed.set()
            self._changed.notify_all()

    def _listing_given(self, revision: int) -> None:
        with self._changed:
            self._advance(revision)
            self._listed.set()
            self._changed.notify_all()

    def _put(self, topic: str, cell: str, revision: int) -> None:
        self._remove(topic)
        self._cell_of[topic] = cell
        self._revisions[topic] = revision
        self._counts[cell] = self._counts.get(cell, 0) + 1

    def _remove(self, topic: str) -> None:
        cell = self._cell_of.pop(topic, None)
        self._revisions.pop(topic, None)
        if cell is not None:
            self._counts[cell] -= 1
            if self._counts[cell] == 0 and cell not in self.cells:
                del self._counts[cell]

    def _advance(self, revision: int) -> None:
        if revision <= self._watched:
            return
        self._watched = revision
        if self._deleted:  # local deletions the watch has reached need no memory
            for topic in [topic for topic, rev in self._deleted.items() if rev <= revision]:
                del self._deleted[topic]

    # --- read by anyone ----------------------------------------------------------------

    def cell_of(self, topic: str) -> str | None:
        """The cell holding ``topic`` as this view knows it, or None."""
        with self._changed:
            return self._cell_of.get(topic)

    def counts(self) -> dict[str, int]:
        """Topics per cell: every configured cell (zeros included), and any other cell a
        placement names (one beyond this agent's configuration)."""
        with self._changed:
            return dict(self._counts)

    def __len__(self) -> int:
        with self._changed:
            return len(self._cell_of)

    @property
    def revision(self) -> int:
        """The newest etcd revision the watch (or a listing) delivered."""
        with self._changed:
            return self._watched

    def least_loaded(self, cells: Iterable[str] | None = None) -> str:
        """The cell with the fewest topics among ``cells`` (default: the configured
        ones; e.g. those with a live owner), ties broken by cell order (``_cell``,
        ``_cell.1``, ...): the same answer on every agent with the same view."""
        candidates = self.cells if cells is None else tuple(validate_cell(cell) for cell in cells)
        if not candidates:
            raise InvalidRequest("no cell to choose from")
        with self._changed:
            return min(candidates, key=lambda cell: (self._counts.get(cell, 0), cell_index(cell)))

    def wait_for(self, topic: str, timeout: float) -> str | None:
        """Block until the view knows ``topic``'s cell (at most ``timeout`` seconds): the
        cell, or None. For threads: never call it on the event loop that feeds the view."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while (cell := self._cell_of.get(topic)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return cell

    @property
    def listed(self) -> bool:
        """Whether the view holds a whole listing (``follow`` read one, or ``reset``):
        before it, a topic's absence means nothing, and the counts are partial."""
        return self._listed.is_set()

    def wait_listed(self, timeout: float) -> bool:
        """Block until ``listed`` (at most ``timeout`` seconds): whether it is. For
        threads, as ``wait_for``."""
        return self._listed.wait(max(0.0, timeout))

    def topics(self) -> list[str]:
        """Every topic the view knows the cell of."""
        with self._changed:
            return list(self._cell_of)

    def records(self) -> list[PlacementRecord]:
        """Every placement the view holds, with the revision it had when applied."""
        with self._changed:
            return [
                PlacementRecord(topic, cell, self._revisions[topic]) for topic, cell in self._cell_of.items()
            ]

    # --- this agent's writes, applied at once --------------------------------------------

    async def place(self, cluster: EtcdCluster, topic: str, cells: Iterable[str] | None = None) -> str:
        """Place ``topic`` in the least loaded of ``cells`` unless it is placed already:
        the cell that holds it (another agent's placement wins a race). The choice is as
        good as the view: before it is ``listed``, its counts are partial."""
        record = await cluster.place_topic(topic, self.least_loaded(cells))
        self.apply(PlacementEvent.of(record), local=True)
        return record.cell

    async def move(self, cluster: EtcdCluster, topic: str, from_cell: str, to_cell: str) -> bool:
        """Move ``topic`` if it is still in ``from_cell``: whether it moved."""
        record = await cluster.move_placement(topic, from_cell, to_cell)
        if record is None:
            return False
        self.apply(PlacementEvent.of(record), local=True)
        return True

    async def delete(self, cluster: EtcdCluster, topic: str, cell: str) -> bool:
        """Delete ``topic``'s placement if it still names ``cell``: whether it did."""
        revision = await cluster.delete_placement(topic, cell)
        if revision:
            self.apply(PlacementEvent(topic, None, revision), local=True)
        return bool(revision)

    async def follow(self, cluster: EtcdCluster) -> None:
        """Feed the view from ``cluster``'s watch until cancelled. The watch resumes by
        itself on another member and lists again after a compaction; any other failure
        (a damaged value, etcd out of reach past its retries) is logged and the watch
        started again, from a listing, after a pause."""
        while True:
            try:
                # What the view holds is passed along, so that a topic deleted while no
                # watch ran is deleted here by the first listing.
                async for event in cluster.watch_placements(self.topics(), self._listing_given):
                    self.apply(event)
            except Exception as exc:  # noqa: BLE001 - as ClusterAgent._follow_agents: list and watch again
                log.warning("watching the placements failed (%r); watching again", exc)
                await asyncio.sleep(_FOLLOW_RETRY_SECONDS)


T = TypeVar("T")


def create_placed(
    topic: str, create: Callable[[], T], created: Callable[[], bool], forget: Callable[[], None]
) -> T:
    """``create()`` a topic placed already (by any door: Flight, Kafka, the registry);
    a creation the engine refuses (a bad schema or setting) drops the placement again
    (``forget()``) unless ``created()`` says the topic exists after all, so that nothing
    half-done is left: no placement of a topic that does not exist. TopicExists is
    raised as it is: the topic and its placement are there."""
    try:
        return create()
    except TopicExists:
        raise
    except OdradekError:
        if not created():
            try:
                forget()
            except OdradekError as exc:  # etcd out of reach: the next listing shows it
                log.warning("topic %s was not created, but its placement stays: %s", topic, exc)
        raise
