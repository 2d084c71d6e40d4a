"""Every consumer group of a node, whatever its kind: list, describe, delete.

This is the engine-side API every door calls for group administration (the Flight
actions ``list_groups``/``describe_group``/``delete_group``/``reset_offsets``, the CLI
through them, the embedded client, the metrics collector, and the Kafka door's ListGroups,
DescribeGroups, DeleteGroups and OffsetFetch for groups that are not its own). Two kinds
exist (decision 0008):

* ``odradek``: the key-ordered groups of this package (:class:`GroupManager`);
* ``kafka``: classic Kafka consumer groups joined through the Kafka door, whose state
  the door keeps (protocols/kafka/catalog.py); the node adds them as a
  :class:`GroupKind`.

Rules
-----
* **One namespace.** A group name belongs to one kind at a time (:class:`GroupNames`):
  creating a group of one kind under a name another kind holds is refused, through
  every door, until that group is deleted. Data written before this rule may hold a
  name twice; then the door's own kind answers for it (here, ``odradek``; in the Kafka
  door, ``kafka``), and the other stays reachable through its own door.
* **Delete is refused while a group has members**, whatever its kind and door.
* Lag is what each kind can say exactly (info.py): an ``odradek`` group counts the
  unsettled records above its committed watermark; a ``kafka`` group gives Kafka's own
  figure per virtual partition, the topic's end minus the committed offset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from odradek.errors import InvalidRequest
from odradek.groups.info import GroupInfo, GroupListing, OffsetReset
from odradek.groups.reset import check_target

if TYPE_CHECKING:
    from odradek.api import Start
    from odradek.groups.manager import GroupManager


class GroupKind(Protocol):
    """A kind of group other than ``odradek``'s, as the directory reaches it."""

    kind: str

    def list_groups(self) -> list[GroupListing]: ...

    def describe_group(self, name: str) -> GroupInfo | None:
        """The group, or None if this kind has no group of that name."""
        ...

    def delete_group(self, name: str) -> bool:
        """Forget the group; False if this kind has no group of that name. Raises
        InvalidRequest while it has members, StorageError if its files stay."""
        ...

    def reset_offsets(
        self, name: str, pattern: str | None, to: Start, *, dry_run: bool
    ) -> list[OffsetReset] | None:
        """Move the group's committed offsets (groups/reset.py); None if this kind has
        no group of that name. Raises InvalidRequest while it has members."""
        ...


class GroupNames:
    """Which kind holds each group name: one namespace for every kind of group.

    ``loaders`` give the names each kind holds on disk; they are read once, on first
    use, so that a process that never touches a group never reads them. The lock is
    held only around the table: nothing is called while it is held but the loaders.
    """

    def __init__(self, loaders: dict[str, Callable[[], list[str]]] | None = None) -> None:
        self._lock = threading.Lock()
        self._loaders = dict(loaders or {})
        self._kinds: dict[str, set[str]] | None = None

    def add_loader(self, kind: str, loader: Callable[[], list[str]]) -> None:
        with self._lock:
            self._loaders[kind] = loader
            if self._kinds is not None:  # already loaded: take this kind's names now
                for name in loader():
                    self._kinds.setdefault(name, set()).add(kind)

    def _table(self) -> dict[str, set[str]]:
        if self._kinds is None:
            kinds: dict[str, set[str]] = {}
            for kind, loader in self._loaders.items():
                for name in loader():
                    kinds.setdefault(name, set()).add(kind)
            self._kinds = kinds
        return self._kinds

    def claim(self, name: str, kind: str) -> str | None:
        """Take ``name`` for a group of ``kind``: None when it is now (or already was)
        ``kind``'s, else the kind that holds it (and nothing changes)."""
        with self._lock:
            table = self._table()
            holders = table.setdefault(name, set())
            others = sorted(holders - {kind})
            if others:
                return others[0]
            holders.add(kind)
            return None

    def release(self, name: str, kind: str) -> None:
        with self._lock:
            table = self._table()
            holders = table.get(name)
            if holders is not None:
                holders.discard(kind)
                if not holders:
                    del table[name]

    def kinds_of(self, name: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._table().get(name, ()))


def refusal(name: str, kind: str, holder: str) -> InvalidRequest:
    """The error for a group of ``kind`` that cannot be made: ``holder`` has the name."""
    return InvalidRequest(
        f"group {name!r} exists as a {holder} consumer group; a {kind} group needs another "
        f"name (or delete the {holder} group first: odradek group delete {name})"
    )


class GroupDirectory:
    """Every group of a node: the native ones and those of each added kind."""

    def __init__(self, native: GroupManager) -> None:
        self.native = native
        self._lock = threading.Lock()
        self._kinds: tuple[GroupKind, ...] = ()
        self._pending: list[Callable[[], GroupKind]] = []

    def add_kind(self, kind: GroupKind) -> None:
        with self._lock:
            self._kinds = (*self._kinds, kind)

    def add_kind_later(self, make: Callable[[], GroupKind]) -> None:
        """Add the kind ``make`` returns, made on first use (so that a process that
        never touches a group never loads that kind's code)."""
        with self._lock:
            self._pending.append(make)

    def kinds(self) -> tuple[GroupKind, ...]:
        with self._lock:
            while self._pending:
                self._kinds = (*self._kinds, self._pending.pop(0)())
            return self._kinds

    def listing(self) -> list[GroupListing]:
        """Every group, by name (a name held by two kinds, from older data: the
        ``odradek`` group)."""
        found = {listing.group: listing for listing in self.native.listing()}
        for kind in self.kinds():
            for listing in kind.list_groups():
                found.setdefault(listing.group, listing)
        return [found[name] for name in sorted(found)]

    def list_groups(self) -> list[str]:
        return [listing.group for listing in self.listing()]

    def describe_group(self, name: str) -> GroupInfo:
        _check_name(name)
        if self.native.exists(name):
            return self.native.describe_group(name)
        for kind in self.kinds():
            info = kind.describe_group(name)
            if info is not None:
                return info
        raise _missing(name)

    def delete_group(self, name: str) -> None:
        """Forget a group and its progress, whatever its kind. Refused (InvalidRequest)
        while it has members."""
        _check_name(name)
        if self.native.exists(name):
            self.native.delete_group(name)
            return
        for kind in self.kinds():
            if kind.delete_group(name):
                return
        raise _missing(name)

    def reset_offsets(
        self, name: str, pattern: str | None, to: Start | None, *, dry_run: bool = False
    ) -> list[OffsetReset]:
        """Move a group's committed offsets of the topics of ``pattern`` to ``to``,
        whatever its kind (groups/reset.py): the plan, applied unless ``dry_run``.
        Refused (InvalidRequest) while the group has members."""
        _check_name(name)
        to = check_target(to)
        if self.native.exists(name):
            return self.native.reset_offsets(name, pattern, to, dry_run=dry_run)
        for kind in self.kinds():
            plan = kind.reset_offsets(name, pattern, to, dry_run=dry_run)
            if plan is not None:
                return plan
        raise _missing(name)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"a group name is a non-empty string, got {name!r}")


def _missing(name: str) -> InvalidRequest:
    return InvalidRequest(f"group {name!r} does not exist (a member's join creates it)")
