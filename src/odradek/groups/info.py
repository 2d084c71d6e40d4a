"""What ``describe_group`` reports: members, per-topic progress and lag, counters.

Plain frozen dataclasses with a JSON form, so the doors (Flight actions, the CLI, a
metrics endpoint) can carry them unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class MemberInfo:
    member: str
    joined_at: float  # wall-clock seconds since the epoch
    idle_seconds: float  # since its last poll, ack or nack (0 while it waits in a poll)
    in_flight: int  # deliveries it holds that are not settled
    active: bool  # False for standby members of an ordering="topic" group


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


@dataclasses.dataclass(frozen=True)
class GroupInfo:
    group: str
    pattern: str | None
    options: dict[str, Any]
    members: list[MemberInfo]
    topics: list[TopicLag]
    counters: dict[str, int]

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
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupInfo:
        return cls(
            group=data["group"],
            pattern=data["pattern"],
            options=dict(data["options"]),
            members=[MemberInfo(**m) for m in data["members"]],
            topics=[TopicLag(**t) for t in data["topics"]],
            counters=dict(data["counters"]),
        )
