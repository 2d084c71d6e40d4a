"""``Node.groups``: the ``odradek`` consumer groups of a data directory.

The engine-side API the doors call for members (the embedded consumer and Flight's
DoExchange, both through membership.py)::

    member = node.groups.join(group, pattern, GroupOptions(...))
    batches = node.groups.poll_batches(group, member, max_records, timeout)   # Arrow
    deliveries = node.groups.poll(group, member, max_records, timeout)        # objects
    node.groups.ack(group, member, deliveries)           # -> AckResult
    node.groups.nack(group, member, deliveries, delay)   # -> AckResult
    node.groups.release(group, member, deliveries)       # back to the group, uncounted
    node.groups.leave(group, member)
    node.groups.describe_group(group)                    # -> GroupInfo
    node.groups.list_groups(); node.groups.delete_group(group)
    node.groups.reset_offsets(group, pattern, to, dry_run=True)  # -> [OffsetReset]

Administration across both kinds of group (these and the Kafka door's) goes through
the node's directory (directory.py). The manager is not the engine's: the node (node.py)
makes it and wires it to the engine's arrival hook (:meth:`arrived`), which wakes
waiting polls when records become durable or topics come and go, and closes the
groups when the engine closes.

Groups live in ``groups/<name>.state`` (state.py) and are loaded on first use. A new
group's name must not be another kind's (directory.GroupNames). Acks and nacks never
raise for deliveries that cannot be settled: the result lists them with a reason
(done, stale, unknown). They raise InvalidRequest for malformed input (not a delivery,
negative offset) and for a group that does not exist.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek import defaults
from odradek.engine.arrivals import CLOSING, Arrival
from odradek.errors import ClosedError, InvalidRequest, StorageError
from odradek.groups.delivery import AckResult, Delivery, DeliveryBatch, Settleable, decodable_deliveries
from odradek.groups.directory import GroupNames, refusal
from odradek.groups.group import Group
from odradek.groups.info import (
    KIND_ODRADEK,
    STATE_EMPTY,
    STATE_STABLE,
    GroupInfo,
    GroupListing,
    OffsetReset,
)
from odradek.groups.options import (
    GroupOptions,
    check_delay,
    check_poll,
    validate_group_name,
    validate_member_id,
)
from odradek.groups.reset import check_target
from odradek.groups.state import ProgressStore
from odradek.groups.subscription import subscription

if TYPE_CHECKING:
    from odradek.api import Start
    from odradek.engine.engine import Engine

_SUFFIX = ".state"


class GroupManager:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.monotonic,
        names: GroupNames | None = None,
    ) -> None:
        """``names``: the node's table of group names of every kind (a private one
        when None, which knows only this manager's groups)."""
        self._engine = engine
        self.directory = os.path.join(engine.path, "groups")
        try:
            engine.disk.makedirs(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot use {self.directory}: {exc}") from exc
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}
        self.clock = clock  # monotonic seconds; tests replace it to move time
        self.closed = False
        self.names = names if names is not None else GroupNames()
        self.names.add_loader(KIND_ODRADEK, self._stored_names)
        # Called after any group's ack moved what is settled (node.py: synchronous commit).
        self.on_progress: Callable[[], None] | None = None
        # Where the groups' dead letters go: None, to the topic in this engine (created
        # if missing); a cluster of several cells writes them to the topic's cell
        # (protocols/flight/server.py, decision 0038). Raises OdradekError: retried.
        self.dead_letters: Callable[[str, pa.RecordBatch], None] | None = None

    def _now(self) -> float:
        return self.clock()

    def _write_dead_letters(
        self, here: Callable[[str, pa.RecordBatch], None], topic: str, batch: pa.RecordBatch
    ) -> None:
        (self.dead_letters or here)(topic, batch)

    def _group(self, name: str, *, create: bool = False) -> Group:
        validate_group_name(name)
        with self._lock:
            if self.closed:
                raise ClosedError("the engine is closed")
            group = self._groups.get(name)
            if group is not None:
                return group
            store = ProgressStore(
                os.path.join(self.directory, name + _SUFFIX),
                fsync=self._engine.fsync,
                disk=self._engine.disk,
                handles=self._engine.handles,
            )
            state = store.load()
            if state is None:
                if not create:
                    raise InvalidRequest(f"group {name!r} does not exist (a member's join creates it)")
                holder = self.names.claim(name, KIND_ODRADEK)
                if holder is not None:
                    raise refusal(name, KIND_ODRADEK, holder)
                try:
                    store.create()
                except BaseException:
                    self.names.release(name, KIND_ODRADEK)
                    raise
            group = Group(name, self._engine, store, state, self._now)
            group.write_dead_letters = functools.partial(self._write_dead_letters, group.write_dead_letters)
            group.on_progress = self._progressed
            self._groups[name] = group
            return group

    # -- members ----------------------------------------------------------------------

    def join(
        self,
        group: str,
        pattern: str | Sequence[str],
        options: GroupOptions | None = None,
        *,
        share: bool = False,
        member_id: str | None = None,
        **raw: Any,
    ) -> str:
        """Add a member to ``group`` (created if new) subscribed to ``pattern`` (a
        pattern, or a sequence of them: subscription.py); return its id. Options come as
        a GroupOptions or as keyword arguments. ``share``: the member serves a Kafka
        share member (the group's kind is ``share`` while it is in it). ``member_id``: the
        id to join as (an agent's part of a subscription over cells gives the member one
        id in every cell); InvalidRequest if a member has it already."""
        pattern = subscription(pattern)
        if options is None:
            options = GroupOptions.build(group, pattern, **raw)
        elif raw:
            raise InvalidRequest("pass the options either as GroupOptions or as keywords, not both")
        else:
            fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
            options = GroupOptions.build(group, pattern, **fields)
        if member_id is not None:
            validate_member_id(member_id)
        return self._group(group, create=True).join(pattern, options, share=share, member_id=member_id)

    def leave(self, group: str, member: str, *, failed: bool = False) -> bool:
        """Remove a member; its unsettled deliveries go back to the group at once,
        without counting as attempts, or each counting one if the member ``failed``
        (its consumer raised, its stream broke). False if it was not a member."""
        return self._group(group).leave(validate_member_id(member), failed=failed)

    # -- delivering -------------------------------------------------------------------

    def poll_batches(
        self,
        group: str,
        member: str,
        max_records: int = defaults.poll_records,
        timeout: float = defaults.poll_timeout_seconds,
    ) -> list[DeliveryBatch]:
        """Up to ``max_records`` deliveries as Arrow batches (one per topic), waiting
        up to ``timeout`` seconds for the first. Raises UnknownMember if the member
        left or expired."""
        max_records, timeout = check_poll(max_records, timeout)
        return self._group(group).poll(validate_member_id(member), max_records, timeout)

    def poll(
        self,
        group: str,
        member: str,
        max_records: int = defaults.poll_records,
        timeout: float = defaults.poll_timeout_seconds,
    ) -> list[Delivery]:
        """Like poll_batches, as Delivery objects; a record that cannot be one is
        nacked instead (see ``delivery.decodable_deliveries``)."""
        return decodable_deliveries(
            self.poll_batches(group, member, max_records, timeout),
            lambda undecodable: self.nack(group, member, undecodable),
        )

    def ack(self, group: str, member: str, deliveries: Settleable) -> AckResult:
        """Settle deliveries (any number, from any polls of this group)."""
        return self._group(group).ack(member, deliveries)

    def nack(
        self, group: str, member: str, deliveries: Settleable, delay: float = defaults.nack_delay_seconds
    ) -> AckResult:
        """Fail deliveries: each is redelivered (not before ``delay`` seconds, and
        before any later record of its key) or dead-lettered after max_deliveries."""
        delay = check_delay(delay)
        return self._group(group).nack(member, deliveries, delay)

    def release(self, group: str, member: str, deliveries: Settleable) -> AckResult:
        """Give deliveries back unprocessed (a member that took more than it could pass
        on): each may be delivered again at once, and this delivery does not count as
        an attempt."""
        return self._group(group).release(member, deliveries)

    # -- information ------------------------------------------------------------------

    def describe_group(self, group: str) -> GroupInfo:
        found = self._group(group)
        info = found.describe()
        kind = found.kind
        return info if kind == info.kind else dataclasses.replace(info, kind=kind)

    def list_groups(self) -> list[str]:
        names = set(self._stored_names())
        with self._lock:
            names.update(self._groups)
        return sorted(names)

    def listing(self) -> list[GroupListing]:
        """Every group with its member count, without loading the idle ones."""
        stored = self._stored_names()
        with self._lock:
            members = {name: (group.member_count, group.kind) for name, group in self._groups.items()}
        listing = []
        for name in sorted(set(stored) | members.keys()):
            count, kind = members.get(name, (0, KIND_ODRADEK))
            listing.append(GroupListing(name, kind, STATE_STABLE if count else STATE_EMPTY, count))
        return listing

    def exists(self, group: str) -> bool:
        """Whether ``group`` is a group here (False for a name no group may have)."""
        try:
            validate_group_name(group)
        except InvalidRequest:
            return False
        with self._lock:
            if group in self._groups:
                return True
        try:
            return self._engine.disk.exists(os.path.join(self.directory, group + _SUFFIX))
        except OSError as exc:
            raise StorageError(f"cannot read {self.directory}: {exc}") from exc

    def _stored_names(self) -> list[str]:
        try:
            entries = self._engine.disk.listdir(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot list {self.directory}: {exc}") from exc
        return [entry[: -len(_SUFFIX)] for entry in entries if entry.endswith(_SUFFIX)]

    def delete_group(self, group: str) -> None:
        """Forget a group and its progress. Refused while it has members."""
        target = self._group(group)
        with self._lock:
            if target.member_count:
                raise InvalidRequest(
                    f"group {group!r} has {target.member_count} member(s); they must leave first"
                )
            del self._groups[group]
        target.delete()
        self.names.release(group, KIND_ODRADEK)

    def reset_offsets(
        self, group: str, pattern: str | None, to: Start, *, dry_run: bool = False
    ) -> list[OffsetReset]:
        """Move the group's committed offsets of the topics of ``pattern`` to ``to``
        (reset.py); refused while it has members. Returns the plan, applied unless
        ``dry_run``."""
        return self._group(group).reset_offsets(pattern, check_target(to), dry_run=dry_run)

    def committed(self, group: str, topic: str) -> tuple[str | None, int | None]:
        """(the group's pattern, the offset below which it settled all of ``topic``);
        either None while unknown. Raises InvalidRequest for a group that does not exist."""
        target = self._group(group)
        return target.pattern, target.committed_offset(topic)

    # -- plumbing ---------------------------------------------------------------------

    def _progressed(self) -> None:
        listener = self.on_progress
        if listener is not None:
            listener()

    def arrived(self, arrival: Arrival) -> None:
        """The engine's arrival hook (node.py): new records or topics wake the polls
        waiting for them; the engine closing closes every group first."""
        if arrival.kind == CLOSING:
            self.close()
        else:
            self.wake()

    def wake(self) -> None:
        """Whenever a topic's durable offset moves or a topic is created or deleted:
        polls waiting for data look again."""
        with self._lock:
            groups = list(self._groups.values())
        for group in groups:
            if group.member_count:  # nobody can be waiting in a group without members
                group.wake()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            groups = list(self._groups.values())
            self._groups.clear()
        for group in groups:
            group.close()
