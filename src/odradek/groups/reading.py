"""How a group reads the log into its windows (dispatcher.Cursor), one per topic.

Rules
-----
* The topics are those of the group's pattern (but its own dead-letter topic), looked
  for every ``_REFRESH_SECONDS`` while busy and at every idle wait: a new topic gets a
  window from its first record, or from the group's ``start`` if it existed when the
  group was created; a vanished one's progress is forgotten.
* A read is *planned* under the lock (the cursor is marked ``fetching``, so one reader
  reads a window at a time), done outside it (the engine's fetch and the key hashing
  of keys.prepare), and installed under it again.
* Retention that removed records before the group read them moves the window past
  them (counted as ``skipped``); a topic deleted or created anew drops its window.
"""

from __future__ import annotations

import logging

from odradek import limits
from odradek.errors import OdradekError, OffsetOutOfRange, TopicNotFound
from odradek.groups import dispatcher
from odradek.groups.core import GroupCore
from odradek.groups.dispatcher import Cursor
from odradek.groups.keys import prepare
from odradek.groups.subscription import compile_subscription

log = logging.getLogger(__name__)

I64 = dispatcher.I64

# How often a busy group looks for new topics matching its pattern (an idle poll looks
# every time it would wait).
_REFRESH_SECONDS = 0.5


class Reading(GroupCore):
    def _plan_fetches(self, wanted: int) -> list[tuple[Cursor, int, int, int]]:
        """Cursors to read more of: (cursor, from offset, records, wake count)."""
        plans = []
        for cursor in self._cursors.values():
            room = limits.group_window_records_max - cursor.backlog
            if cursor.fetching or not cursor.needs_records(wanted) or room <= 0:
                continue
            if cursor.idle_at == self._changes:
                continue  # read to the end, and nothing arrived since
            cursor.fetching = True
            plans.append((cursor, cursor.end, min(room, limits.group_fetch_records_max), self._changes))
        return plans

    def _fetch(self, plans: list[tuple[Cursor, int, int, int]]) -> bool:
        """Read the planned cursors outside the lock; True if any window changed."""
        assert self.options is not None
        changed = False
        for cursor, offset, count, changes in plans:
            prepared = None
            problem: OdradekError | None = None
            try:
                prepared = prepare(
                    # A schema'd topic's values are delivered as JSON text: a group's
                    # deliveries span topics and go over one stream with one schema.
                    self._engine.fetch(cursor.topic, offset, max_records=count, value_format="json"),
                    self.options.ordering,
                    offset,
                )
            except (OffsetOutOfRange, TopicNotFound) as exc:
                problem = exc
            except BaseException:
                with self._lock:
                    cursor.fetching = False
                raise
            with self._lock:
                cursor.fetching = False
                if problem is not None:
                    changed |= self._fetch_failed(cursor, problem)
                elif prepared is None:
                    cursor.idle_at = changes
                elif cursor.install(prepared):
                    cursor.compact_units()
                    self._changed()  # other members' polls may now find work
                    changed = True
        return changed

    def _fetch_failed(self, cursor: Cursor, problem: OdradekError) -> bool:
        if self._cursors.get(cursor.topic) is not cursor:
            return False
        if isinstance(problem, OffsetOutOfRange) and problem.requested < problem.first:
            if cursor.skip_to(problem.first):
                log.warning(
                    "group %s: retention removed offsets %d..%d of %s before the group read them",
                    self.name,
                    problem.requested,
                    problem.first - 1,
                    cursor.topic,
                )
                self._ticket = self._store.write_start(cursor.topic, cursor.incarnation, problem.first)
                return True
            return False
        # The topic was deleted, or deleted and created again (its offsets restarted).
        log.info(
            "group %s: topic %s is gone or was re-created; dropping its progress", self.name, cursor.topic
        )
        del self._cursors[cursor.topic]
        self._ticket = self._store.write_forget(cursor.topic)
        self._refresh_due = 0.0
        return True

    def _refresh_topics(self, now: float, *, resolve_errors: bool = False) -> None:
        """Open cursors for topics that match the pattern, close those that vanished."""
        assert self.options is not None and self.pattern is not None
        self._refresh_due = now + _REFRESH_SECONDS
        existing = self._engine.list_topics()
        matches = compile_subscription(self.pattern)
        names = [n for n in existing if matches(n) and n != self.options.dead_letters]
        for name in names:
            if name not in self._cursors:
                try:
                    self._open_cursor(name)
                except TopicNotFound:
                    continue
                except OdradekError:
                    if resolve_errors:
                        raise
                    log.exception("group %s: cannot start reading %s", self.name, name)
                self._changed()
        current = set(names)
        for name in [n for n in self._cursors if n not in current]:
            cursor = self._cursors.pop(name)
            if name in existing:  # still there: the pattern changed
                self._park(name, cursor)
            else:
                self._ticket = self._store.write_forget(name)

    def _open_cursor(self, name: str) -> None:
        assert self.options is not None
        info = self._engine.describe_topic(name)
        saved = self._saved.pop(name, None)
        if saved is not None and saved.incarnation == info.incarnation:
            cursor = Cursor(
                name,
                info.incarnation,
                saved.committed,
                self.options.ordering,
                self.options.in_flight_limit,
                saved.starts,
                saved.ends,
            )
            attempts = self._saved_attempts.pop(name, None)
            if attempts is not None:
                cursor.preset_attempts = attempts
        else:
            self._saved_attempts.pop(name, None)
            start = self.options.start if info.created_at <= self._since else "earliest"
            offset = self._engine.resolve_start(name, start)
            self._ticket = self._store.write_start(name, info.incarnation, offset)
            options = self.options
            cursor = Cursor(name, info.incarnation, offset, options.ordering, options.in_flight_limit)
        self._cursors[name] = cursor
