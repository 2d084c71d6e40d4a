"""The consumer protocol's group state machine (KIP-848), without sockets.

Goal: a member joining with epoch 0 gets the whole target; a second member makes the
first revoke before the second gets anything (a partition is never owned twice), and
epochs move only once revocation is done; a lost answer (the previous epoch) is
accepted, a stale epoch is fenced and a fenced member rejoins with epoch 0; leaving
and a session expiry free partitions for the others; a member that does not revoke
within its rebalance timeout is removed; a static member that leaves with epoch -2
gets its partitions back under a new member id; new topics and more partitions move
the group's epoch; the uniform assignor is balanced and sticky, the range assignor
gives contiguous ranges; bad requests get clear errors. Offsets commits through the
coordinator check the member's epoch.

Method: consumer_groups.heartbeat is driven directly with a hand-made topic catalog
and a clock value, and the Coordinator with an injected clock, as the door would.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable

from odradek import limits
from odradek.protocols.kafka import consumer_groups as cg
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.consumer_groups import ConsumerGroup, Heartbeat
from odradek.protocols.kafka.groups import Coordinator
from odradek.protocols.kafka.store import DoorStore

T1 = uuid.uuid4()
T2 = uuid.uuid4()


def topics(**counts: int) -> dict[str, tuple[uuid.UUID, int]]:
    ids = {"orders": T1, "payments": T2}
    return {name: (ids.get(name, uuid.uuid5(uuid.NAMESPACE_DNS, name)), n) for name, n in counts.items()}


def parts(topic: str, *indexes: int) -> frozenset[tuple[str, int]]:
    return frozenset((topic, index) for index in indexes)


class Members:
    """Drives members of one group the way a client does."""

    def __init__(self, catalog: dict[str, tuple[uuid.UUID, int]]) -> None:
        self.group = ConsumerGroup()
        self.catalog = catalog
        self.now = 1000.0
        self.epochs: dict[str, int] = {}
        self.owned: dict[str, frozenset[tuple[str, int]]] = {}

    def beat(self, member: str, **fields: object) -> cg.HeartbeatAnswer:
        epoch = fields.pop("epoch", self.epochs.get(member, 0))
        assert isinstance(epoch, int)
        owned = fields.pop("owned", self.owned.get(member))
        request = Heartbeat(member_id=member, member_epoch=epoch, owned=owned, **fields)  # type: ignore[arg-type]
        answer = cg.heartbeat("g", self.group, request, self.catalog, self.now)
        if answer.error == ErrorCode.NONE:
            self.epochs[member] = answer.member_epoch
            if answer.assignment is not None:
                self.owned[member] = answer.assignment  # the client takes what it is given
        return answer

    def join(self, member: str, names: Iterable[str] = ("orders",), **fields: object) -> cg.HeartbeatAnswer:
        return self.beat(member, epoch=0, names=tuple(names), rebalance_timeout_ms=10_000, **fields)

    def owners(self) -> list[tuple[str, int]]:
        return sorted(
            part for member in self.group.members.values() for part in member.assigned | member.revoking
        )


def test_a_second_member_gets_partitions_only_after_the_first_revoked_them() -> None:
    members = Members(topics(orders=4))
    first = members.join("a")
    assert (first.error, first.member_id, first.assignment) == (
        ErrorCode.NONE,
        "a",
        parts("orders", 0, 1, 2, 3),
    )
    assert first.member_epoch == members.group.epoch == 1

    second = members.join("b")
    assert second.error == ErrorCode.NONE and second.member_epoch == 2
    assert second.assignment == frozenset()  # everything is still a's
    revoke = members.beat("a")
    assert revoke.assignment is not None and len(revoke.assignment) == 2
    assert revoke.member_epoch == 1  # a keeps its epoch until it has revoked
    assert members.group.state() == cg.RECONCILING
    assert members.beat("b").assignment is None  # nothing freed yet, nothing new to say
    done = members.beat("a", owned=revoke.assignment)  # the client gave the others up
    assert done.member_epoch == 2 and done.assignment == revoke.assignment
    taken = members.beat("b")
    assert taken.assignment == parts("orders", 0, 1, 2, 3) - revoke.assignment
    assert members.owners() == sorted(parts("orders", 0, 1, 2, 3))  # each owned once
    assert members.group.state() == cg.STABLE
    assert members.beat("a").assignment is None and members.beat("b").assignment is None


def test_epochs_lost_answers_fencing_and_rejoining() -> None:
    members = Members(topics(orders=2))
    members.join("a")
    members.join("b")
    stale = members.beat("b", epoch=7)
    assert stale.error == ErrorCode.FENCED_MEMBER_EPOCH and "rejoin with epoch 0" in (stale.message or "")
    assert members.beat("a").error == ErrorCode.NONE
    members.beat("a", owned=members.owned["a"])
    assert members.epochs["a"] == 2
    lost = members.beat("a", epoch=1, owned=members.owned["a"])  # its last answer never arrived
    assert lost.error == ErrorCode.NONE and lost.member_epoch == 2
    rejoined = members.join("b")
    assert rejoined.error == ErrorCode.NONE and rejoined.member_id == "b"
    unknown = members.beat("nobody", epoch=3)
    assert unknown.error == ErrorCode.UNKNOWN_MEMBER_ID and "nobody" in (unknown.message or "")


def test_leaving_and_expiry_free_partitions_for_the_others() -> None:
    members = Members(topics(orders=4))
    members.join("a")
    members.join("b")
    members.beat("a", owned=members.beat("a").assignment)
    members.beat("b")
    assert members.beat("b", epoch=-1).member_epoch == -1
    assert list(members.group.members) == ["a"]
    assert members.beat("a").assignment == parts("orders", 0, 1, 2, 3)
    members.join("c")
    members.now += limits.kafka_consumer_session_timeout_ms / 1000 - 1
    members.beat("c")
    members.now += 2  # a has been silent past the session timeout
    cg.expire("g", members.group, members.now)
    assert list(members.group.members) == ["c"]
    assert members.beat("c").assignment == parts("orders", 0, 1, 2, 3)


def test_a_member_that_does_not_revoke_in_time_is_removed() -> None:
    members = Members(topics(orders=2))
    members.join("a")
    members.join("b")
    assert members.beat("a").assignment is not None  # told to revoke one partition
    members.now += 5
    members.beat("b")
    members.beat("a", owned=parts("orders", 0, 1))  # alive, but holding what it must give up
    members.now += 6  # 11 s: past its 10 s rebalance timeout
    cg.expire("g", members.group, members.now)
    assert list(members.group.members) == ["b"]
    assert members.beat("b").assignment == parts("orders", 0, 1)


def test_a_static_member_that_comes_back_keeps_its_partitions() -> None:
    members = Members(topics(orders=4))
    members.join("a", instance_id="i-a")
    members.join("b", instance_id="i-b")
    members.beat("a", owned=members.beat("a").assignment)
    members.beat("b")
    held = members.owned["b"]
    epoch = members.group.epoch
    assert members.beat("b", epoch=-2).member_epoch == -2  # a restart: it keeps its place
    busy = members.join("b2", instance_id="i-a")
    assert busy.error == ErrorCode.UNRELEASED_INSTANCE_ID and "i-a" in (busy.message or "")
    back = members.join("b2", instance_id="i-b")
    assert back.error == ErrorCode.NONE and back.assignment == held
    assert members.group.epoch == epoch  # no new assignment was needed
    assert members.beat("b", epoch=epoch).error == ErrorCode.UNKNOWN_MEMBER_ID  # the old id is gone
    members.beat("b2", epoch=-2)
    members.now += limits.kafka_consumer_session_timeout_ms / 1000 + 1
    members.beat("a")
    cg.expire("g", members.group, members.now)
    assert list(members.group.members) == ["a"] and members.group.static == {"i-a": "a"}


def test_new_topics_and_partitions_move_the_epoch() -> None:
    members = Members(topics(orders=1))
    members.join("a", names=("orders", "payments"))
    assert members.owned["a"] == parts("orders", 0)
    members.catalog["payments"] = (T2, 2)  # created
    grown = members.beat("a")
    assert grown.member_epoch == 2 and grown.assignment == parts("orders", 0) | parts("payments", 0, 1)
    members.catalog["orders"] = (T1, 3)  # more partitions
    assert members.beat("a").assignment == parts("orders", 0, 1, 2) | parts("payments", 0, 1)
    del members.catalog["payments"]  # deleted
    gone = members.beat("a")
    assert gone.assignment == parts("orders", 0, 1, 2) and gone.member_epoch == 3  # nothing to revoke first


def test_a_regex_subscription_follows_the_topics() -> None:
    members = Members(topics(**{"orders.eu": 1, "orders.us": 1, "payments": 1}))
    answer = members.join("a", names=(), regex=r"orders\..*")
    assert answer.assignment == parts("orders.eu", 0) | parts("orders.us", 0)
    bad = members.join("b", names=(), regex="orders[")
    assert bad.error == ErrorCode.INVALID_REGULAR_EXPRESSION and "regex" in (bad.message or "")


def test_bad_requests_get_clear_errors() -> None:
    members = Members(topics(orders=1))
    no_subscription = members.beat("a", epoch=0)
    assert no_subscription.error == ErrorCode.INVALID_REQUEST and "subscription" in (
        no_subscription.message or ""
    )
    assignor = members.join("a", assignor="sticky-cooperative")
    assert assignor.error == ErrorCode.UNSUPPORTED_ASSIGNOR and "uniform" in (assignor.message or "")


def test_uniform_is_balanced_and_sticky_and_range_is_contiguous() -> None:
    subscribed = {member: {"orders"} for member in "abc"}
    first = cg.assign_uniform(subscribed, {"orders": 7}, {})
    assert sorted(len(p) for p in first.values()) == [2, 2, 3]
    assert set().union(*first.values()) == set(parts("orders", *range(7)))
    grown = {**subscribed, "d": {"orders"}}
    second = cg.assign_uniform(grown, {"orders": 7}, first)
    assert sorted(len(p) for p in second.values()) == [1, 2, 2, 2]
    moved = sum(len(first[m] - second[m]) for m in first)
    assert moved == 1  # only what the newcomer needs moves
    mixed = cg.assign_uniform(
        {"a": {"orders"}, "b": {"orders", "payments"}}, {"orders": 2, "payments": 2}, {}
    )
    assert mixed["b"] >= parts("payments", 0, 1) and len(mixed["a"]) >= 1
    ranges = cg.assign_range(subscribed, {"orders": 7}, {})
    assert ranges == {"a": parts("orders", 0, 1, 2), "b": parts("orders", 3, 4), "c": parts("orders", 5, 6)}


def test_the_coordinator_keeps_protocols_apart_and_checks_commit_epochs(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        catalog = topics(orders=2)
        joined = coordinator.consumer_heartbeat(
            "g", Heartbeat(member_id="m1", member_epoch=0, names=("orders",)), catalog
        )
        assert joined.error == ErrorCode.NONE
        group = coordinator.groups["g"]
        assert (group.state, group.protocol_type, group.protocol, group.generation) == (
            "Stable",
            "consumer",
            "uniform",
            1,
        )
        classic = await coordinator.join("g", "", None, "c", "h", 6000, 300, "consumer", [("range", b"")])
        assert classic.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert coordinator.check_commit("g", "m1", 1) == ErrorCode.NONE
        assert coordinator.check_commit("g", "m1", 0) == ErrorCode.STALE_MEMBER_EPOCH
        assert coordinator.check_commit("g", "ghost", 1) == ErrorCode.UNKNOWN_MEMBER_ID
        assert coordinator.check_commit("g", "", -1) == ErrorCode.UNKNOWN_MEMBER_ID  # it has members
        assert coordinator.check_fetch("g", "m1", 0) == ErrorCode.STALE_MEMBER_EPOCH
        assert coordinator.check_fetch("g", "m1", 1) == ErrorCode.NONE
        assert coordinator.listing() == [("g", "Stable", 1)]
        view = coordinator.view("g")
        assert view is not None and [m.member_id for m in view.members] == ["m1"]
        assert await coordinator.delete("g") == ErrorCode.NON_EMPTY_GROUP
        left = coordinator.consumer_heartbeat("g", Heartbeat(member_id="m1", member_epoch=-1), catalog)
        assert left.error == ErrorCode.NONE and coordinator.groups["g"].state == "Empty"
        again = await coordinator.join("g", "", None, "c", "h", 6000, 300, "consumer", [("range", b"")])
        assert again.error == ErrorCode.NONE  # an empty group takes the next protocol
        refused = coordinator.consumer_heartbeat(
            "g", Heartbeat(member_id="m2", member_epoch=0, names=("orders",)), catalog
        )
        assert refused.error == ErrorCode.GROUP_ID_NOT_FOUND and "classic" in (refused.message or "")
        coordinator.close()

    asyncio.run(scenario())
