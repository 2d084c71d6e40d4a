"""Resetting a consumer group's committed offsets (``odradek group reset-offsets``).

Kafka's ``kafka-consumer-groups --reset-offsets`` semantics, for both kinds of group
(decision 0008; the ``kafka`` kind's side is protocols/kafka/catalog.py):

* **Refused while the group has members**: a reset under a running consumer would be
  overwritten by its next commit (Kafka refuses it the same way). Stop the consumers,
  reset, start them again.
* **The plan first.** A reset is computed as a plan (:class:`~odradek.groups.info.OffsetReset`
  rows: topic, Kafka partition, old -> new) and, unless it is a dry run, applied whole
  or not at all: an ``odradek`` group's progress file is rewritten atomically (a
  snapshot, state.py) before anything changes in memory; a ``kafka`` group's offsets
  file is saved whole.
* **Targets** (:data:`odradek.api.Start`): ``"earliest"`` (the topic's first offset),
  ``"latest"`` (its end: nothing left to read), a ``datetime`` or ISO-8601 text (the
  first record at or after it) or an offset, moved into the topic's range as Kafka's
  tool does (below the first offset: the first; past the end: the end).
* **Which topics**: those matching the pattern given; for an ``odradek`` group only
  those its own pattern reads (not its dead-letter topic), since it keeps progress for
  no other. Without a pattern: every topic an ``odradek`` group reads, every topic a
  ``kafka`` group committed offsets in (Kafka's ``--all-topics``). A pattern that
  selects nothing is refused.
* A reset moves a topic's committed watermark to the new offset and forgets the
  settlements above it: from there on every record is delivered again (a rewind) or
  skipped (a move forward).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from odradek import limits
from odradek.errors import InvalidRequest, TopicNotFound
from odradek.groups.info import OffsetReset
from odradek.groups.settling import Settling
from odradek.groups.state import TopicProgress
from odradek.groups.subscription import compile_subscription
from odradek.names import compile_pattern

if TYPE_CHECKING:
    from odradek.api import Start
    from odradek.engine.engine import Engine

TARGET_RULES = (
    "a reset goes to 'earliest', 'latest', an offset (int >= 0), a datetime or an ISO-8601 "
    "timestamp (2026-12-05T19:00:00Z)"
)


def check_target(to: Any) -> Start:
    """``to`` if it is a target a reset can go to, else InvalidRequest (before anything
    is read or written)."""
    if isinstance(to, datetime.datetime):
        return to
    if to in ("earliest", "latest"):
        return str(to)
    if isinstance(to, int) and not isinstance(to, bool):
        if to < 0:
            raise InvalidRequest(f"{TARGET_RULES}; got the offset {to}")
        return to
    if isinstance(to, str):
        try:
            datetime.datetime.fromisoformat(to.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"{TARGET_RULES}; got {to!r}") from None
        return to.replace("Z", "+00:00")
    raise InvalidRequest(f"{TARGET_RULES}; got {to!r}")


def target_offset(engine: Engine, topic: str, to: Start) -> int:
    """Where a reset of ``topic`` to ``to`` (checked by :func:`check_target`) puts the
    committed offset: an offset is moved into the topic's range."""
    if isinstance(to, int):
        first, end = engine.resolve_start(topic, "earliest"), engine.resolve_start(topic, "latest")
        return min(max(to, first), end)
    return engine.resolve_start(topic, to)


def check_rows(group: str, count: int) -> None:
    if count > limits.group_reset_rows_max:
        raise InvalidRequest(
            f"resetting group {group!r} would change {count} offsets, more than "
            f"{limits.group_reset_rows_max} at once; give a narrower topic pattern"
        )


def members_refusal(group: str, members: int) -> InvalidRequest:
    return InvalidRequest(
        f"group {group!r} has {members} active member(s): offsets can only be reset while it has "
        "none (stop its consumers, reset, then start them again)"
    )


class Resetting(Settling):
    """The ``odradek`` group's side (a part of groups/group.py's Group)."""

    def reset_offsets(self, pattern: str | None, to: Start, *, dry_run: bool) -> list[OffsetReset]:
        matches = compile_pattern(pattern or ">")  # InvalidRequest for a bad pattern
        with self._lock:
            self._check_open()
            self._expire(self._clock())
            if self._members:
                raise members_refusal(self.name, len(self._members))
            if self.options is None or self.pattern is None:
                raise InvalidRequest(f"group {self.name!r} has no subscription yet: nothing to reset")
            if self._unapplied or self._dead_letter_jobs:
                raise InvalidRequest(
                    f"group {self.name!r} is still settling its last member's acknowledgements; retry"
                )
            own = compile_subscription(self.pattern)
            topics = [
                name
                for name in self._engine.list_topics(pattern or ">")
                if matches(name) and own(name) and name != self.options.dead_letters
            ]
            if not topics:
                raise InvalidRequest(
                    f"no topic matches {pattern or '>'!r} among those group {self.name!r} reads "
                    f"({self.pattern!r})"
                )
            check_rows(self.name, len(topics))
            plan: list[OffsetReset] = []
            progress: dict[str, TopicProgress] = {}
            empty = np.zeros(0, dtype=np.int64)
            for topic in topics:
                try:
                    incarnation = self._engine.describe_topic(topic).incarnation
                    new = target_offset(self._engine, topic, to)
                except TopicNotFound:
                    continue  # deleted meanwhile: nothing to reset
                plan.append(OffsetReset(topic, None, self._committed_of(topic, incarnation), new))
                progress[topic] = TopicProgress(incarnation, new, empty, empty)
            if dry_run or not progress:
                return plan
            self._rewrite(progress)  # atomically, before anything changes in memory
            for topic, reset in progress.items():
                self._cursors.pop(topic, None)
                self._saved_attempts.pop(topic, None)
                self._saved[topic] = reset
            self._changed()
            return plan

    def _committed_of(self, topic: str, incarnation: str) -> int | None:
        cursor = self._cursors.get(topic)
        if cursor is not None and cursor.incarnation == incarnation:
            return cursor.committed
        saved = self._saved.get(topic)
        if saved is not None and saved.incarnation == incarnation:
            return saved.committed
        return None
