"""What ``describe_group`` and ``list_groups`` report: members, per-topic progress and
lag, counters, and the group's kind.

Plain frozen dataclasses with a JSON form, so the doors (Flight actions, the CLI, a
metrics endpoint) can carry them unchanged. Both kinds of group (directory.py) are
described alike: an ``odradek`` group fills every field; a ``kafka`` group (a classic
Kafka consumer group of the Kafka door) has no pattern, deliveries or counters, and
its topics carry their virtual partitions (``partitions``), its members their Kafka
client id and host. Fields that only one kind has are left out of the JSON form when
absent, so the JSON of an ``odradek`` group is what it always was.

A member's lag is the lag of what it holds, when it holds something of its own:

* a ``kafka`` member holds the partitions of its assignment (``assignment``, per
  topic): its lag is the sum of their lag (:class:`PartitionLag`), counting those with
  a committed offset (the others are listed as ``uncommitted``: no figure is known for
  them, Kafka's tools show ``-``). The members' lags add up to the group's when every
  committed partition is assigned; a committed partition nobody holds (a topic no
  longer subscribed, a rebalance under way) counts in the group's lag only.
* an ``odradek`` group assigns nothing (group.py): with ``ordering="key"`` or
  ``"none"`` any member takes any key's next record when it polls, so no record is a
  member's before it is delivered and ``lag`` is absent; what a member holds is its
  ``in_flight`` records. With ``ordering="topic"`` the active member is served every
  record of every topic: its lag is the group's, a standby member's 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

KIND_ODRADEK = "odradek"  # key-ordered groups of this package (decision 0004)
KIND_KAFKA = "kafka"  # classic Kafka consumer groups joined through the Kafka door
# An odradek group while Kafka share consumers (KIP-932) are among its members: the
# Kafka door's ListGroups gives it Kafka's group type "share" (decision 0026).
KIND_SHARE = "share"
KINDS = (KIND_ODRADEK, KIND_KAFKA)

# States, in Kafka's names so that both kinds read alike everywhere: a group with
# members is Stable (a Kafka group may also be rebalancing), one without is Empty.
STATE_STABLE = "Stable"
STATE_EMPTY = "Empty"


@dataclasses.dataclass(frozen=True)
class AssignedPartitions:
    """The virtual partitions of one topic that a member of a ``kafka`` group holds."""

    topic: str
    partitions: tuple[int, ...]  # sorted
    lag: int  # the sum of the lag of those of them with a committed offset
    uncommitted: tuple[int, ...] = ()  # those without one: their lag is not known

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partitions": list(self.partitions),
            "lag": self.lag,
            "uncommitted": list(self.uncommitted),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AssignedPartitions:
        fields = _known(cls, data)
        fields["partitions"] = tuple(fields["partitions"])
        fields["uncommitted"] = tuple(fields.get("uncommitted", ()))
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class MemberInfo:
    member: str
    joined_at: float  # wall-clock seconds since the epoch
    idle_seconds: float  # since its last poll, ack or nack (0 while it waits in a poll)
    in_flight: int  # deliveries it holds that are not settled
    active: bool  # False for standby members of an ordering="topic" group
    client_id: str | None = None  # kafka: the client.id the member joined with
    client_host: str | None = None  # kafka: the address it joined from
    lag: int | None = None  # the lag of what it holds; None: it holds nothing of its own
    assignment: tuple[AssignedPartitions, ...] | None = None  # kafka: its partitions, by topic

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.assignment is not None:
            data["assignment"] = [topic.to_json() for topic in self.assignment]
        return _without_absent(data, ("client_id", "client_host", "lag", "assignment"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberInfo:
        fields = _known(cls, data)
        assignment = fields.pop("assignment", None)
        if assignment is not None:
            fields["assignment"] = tuple(AssignedPartitions.from_json(topic) for topic in assignment)
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class PartitionLag:
    """A virtual partition of a topic, as a Kafka group committed it."""

    partition: int
    committed: int  # the offset the group's consumer of this partition reads next
    lag: int  # the partition's high watermark minus ``committed`` (Kafka's definition)
    metadata: str | None = None  # what the client committed with the offset


@dataclasses.dataclass(frozen=True)
class TopicLag:
    topic: str
    committed: int  # every offset below is settled (acknowledged or dead-lettered)
    read: int  # the group has read the log up to here
    next_offset: int  # the topic's end
    lag: int  # records at or above ``committed`` not yet settled
    in_flight: int  # delivered and not settled (including dead-lettering)
    waiting: int  # read, not delivered: behind their key, delayed, or to redeliver
    delivered: int  # deliveries since the group was loaded (redeliveries included)
    skipped: int  # records retention removed before the group read them
    partitions: tuple[PartitionLag, ...] | None = None  # kafka: per committed partition

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.partitions is None:
            del data["partitions"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicLag:
        fields = _known(cls, data)
        partitions = fields.pop("partitions", None)
        if partitions is not None:
            fields["partitions"] = tuple(PartitionLag(**_known(PartitionLag, p)) for p in partitions)
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class GroupInfo:
    group: str
    pattern: str | None
    options: dict[str, Any]
    members: list[MemberInfo]
    topics: list[TopicLag]
    counters: dict[str, int]
    kind: str = KIND_ODRADEK
    state: str = ""  # Stable or Empty (a kafka group: also PreparingRebalance, ...)

    @property
    def lag(self) -> int:
        return sum(topic.lag for topic in self.topics)

    @property
    def in_flight(self) -> int:
        return sum(topic.in_flight for topic in self.topics)

    @property
    def dead_lettered(self) -> int:
        return self.counters.get("dead_lettered", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "kind": self.kind,
            "state": self.state,
            "pattern": self.pattern,
            "options": self.options,
            "members": [member.to_json() for member in self.members],
            "topics": [topic.to_json() for topic in self.topics],
            "counters": self.counters,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupInfo:
        return cls(
            group=data["group"],
            pattern=data["pattern"],
            options=dict(data["options"]),
            members=[MemberInfo.from_json(m) for m in data["members"]],
            topics=[TopicLag.from_json(t) for t in data["topics"]],
            counters=dict(data["counters"]),
            kind=str(data.get("kind", KIND_ODRADEK)),
            state=str(data.get("state", "")),
        )


@dataclasses.dataclass(frozen=True)
class GroupListing:
    """One line of ``list_groups``: a group's name, kind, state and member count."""

    group: str
    kind: str
    state: str
    members: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OffsetReset:
    """One line of a ``reset_offsets`` plan: where a group's committed offset of a topic
    (of one virtual partition, for a ``kafka`` group) was, and where it goes."""

    topic: str
    partition: int | None  # kafka: the virtual partition; None for an odradek group
    old: int | None  # the committed offset before (None: the group had none there)
    new: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OffsetReset:
        return cls(**_known(cls, data))


def _without_absent(data: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    for name in optional:
        if data[name] is None:
            del data[name]
    return data


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``data`` that ``cls`` declares: a newer server may send more."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in data.items() if name in names}


# -- a group spread over cells (decision 0038) ------------------------------------------
# A group subscribing to a pattern over a cluster whose topics are spread over cells is
# one group in each cell, its members joined to every cell with one id; each cell reports
# its own topics. These make of the cells' reports the one report a single node gives.


def merged_state(states: list[str]) -> str:
    """The group's state: the first cell's that is not Empty, else Empty."""
    return next((state for state in states if state != STATE_EMPTY), states[0] if states else STATE_EMPTY)


def merge_listings(entries: list[GroupListing]) -> list[GroupListing]:
    """Every cell's ``list_groups`` lines, one per group, sorted by name: a group's
    members are those of the cell counting most (a member is in every cell of it)."""
    by_group: dict[str, list[GroupListing]] = {}
    for entry in entries:
        by_group.setdefault(entry.group, []).append(entry)
    return [
        GroupListing(
            group,
            lines[0].kind,
            merged_state([line.state for line in lines]),
            max(line.members for line in lines),
        )
        for group, lines in sorted(by_group.items())
    ]


def merge_infos(infos: list[GroupInfo]) -> GroupInfo:
    """The cells' ``describe_group`` of one group (in cell order) as one: every cell's
    topics, counters added up, each member once (its deliveries and lag added up over
    the cells, its idle time the shortest)."""
    if len(infos) == 1:
        return infos[0]
    members: dict[str, MemberInfo] = {}
    for info in infos:
        for member in info.members:
            seen = members.get(member.member)
            if seen is None:
                members[member.member] = member
                continue
            lags = [lag for lag in (seen.lag, member.lag) if lag is not None]
            members[member.member] = dataclasses.replace(
                seen,
                joined_at=min(seen.joined_at, member.joined_at),
                idle_seconds=min(seen.idle_seconds, member.idle_seconds),
                in_flight=seen.in_flight + member.in_flight,
                active=seen.active or member.active,
                lag=sum(lags) if lags else None,
            )
    counters: dict[str, int] = {}
    for info in infos:
        for name, value in info.counters.items():
            counters[name] = counters.get(name, 0) + value
    first = infos[0]
    return dataclasses.replace(
        first,
        members=list(members.values()),
        topics=sorted((topic for info in infos for topic in info.topics), key=lambda topic: topic.topic),
        counters=counters,
        state=merged_state([info.state for info in infos]),
    )
