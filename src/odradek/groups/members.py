"""Members, leases and the counters of a group (the group's lock guards them all)."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from odradek.groups.dispatcher import Cursor


@dataclasses.dataclass
class Member:
    id: str
    index: int
    joined_at: float
    last_seen: float
    polling: int = 0
    leases: set[int] = dataclasses.field(default_factory=set)
    share: bool = False  # joined for a Kafka share member (decision 0026)


@dataclasses.dataclass
class Lease:
    id: int
    member: str
    deadline: float
    parts: list[tuple[Cursor, npt.NDArray[np.int64]]]
    remaining: int


COUNTERS = (
    "delivered",  # deliveries made (redeliveries included)
    "redelivered",  # deliveries with attempt > 1
    "acked",  # deliveries settled by an ack
    "nacked",  # deliveries failed by a nack
    "timed_out",  # deliveries failed by their ack timeout or their member's expiry
    "abandoned",  # deliveries failed by their member's failure (an exception, a broken stream)
    "rewound",  # deliveries taken back because an earlier record of their unit failed
    "released",  # deliveries taken back because their member left
    "dead_lettered",  # records written to the dead-letter topic
    "rejected_acks",  # acks and nacks that settled nothing (done, stale or unknown)
    "members_joined",
    "members_left",
    "members_expired",
    "members_failed",  # members that left failing: their deliveries counted as attempts
)
