"""The consumer group coordinator's state machine, without sockets.

Goal: generations, leader election, relay of the leader's assignments, heartbeats
that ask members to rejoin, removal on leave and on session expiry (which rebalances
the survivors), protocol agreement, commit checks, and committed offsets that
survive a restart of the coordinator (they are in the data dir).

Method: the Coordinator runs on a fresh event loop per test with an injected clock,
so session expiry is tested by moving the clock, not by sleeping.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from odradek import limits
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.groups import COMPLETING, EMPTY, PREPARING, STABLE, Coordinator
from odradek.protocols.kafka.store import DoorStore

PROTOCOLS = [("range", b"meta-range"), ("roundrobin", b"meta-rr")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def join(coordinator: Coordinator, member: str = "", protocols: list[tuple[str, bytes]] | None = None) -> Any:
    return coordinator.join(
        "g", member, None, "client", "host", 6000, 300, "consumer", protocols or PROTOCOLS
    )


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_members_join_one_generation_and_the_leader_assigns(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first, second = await asyncio.gather(join(coordinator), join(coordinator))
        assert first.error == second.error == ErrorCode.NONE
        assert first.generation == second.generation == 1 and first.protocol == "range"
        leader, follower = (first, second) if first.member_id == first.leader else (second, first)
        assert len(leader.members) == 2 and follower.members == ()
        assert coordinator.groups["g"].state == COMPLETING
        waiting = asyncio.ensure_future(coordinator.sync("g", follower.member_id, 1, []))
        await asyncio.sleep(0)
        assert not waiting.done()
        error, mine, _ = await coordinator.sync(
            "g", leader.member_id, 1, [(leader.member_id, b"A"), (follower.member_id, b"B")]
        )
        assert (error, mine) == (ErrorCode.NONE, b"A")
        assert (await waiting)[:2] == (ErrorCode.NONE, b"B")
        assert coordinator.groups["g"].state == STABLE
        assert coordinator.heartbeat("g", follower.member_id, 1) == ErrorCode.NONE
        assert coordinator.heartbeat("g", follower.member_id, 0) == ErrorCode.ILLEGAL_GENERATION
        assert coordinator.heartbeat("g", "nobody", 1) == ErrorCode.UNKNOWN_MEMBER_ID

    run(scenario())


def test_leave_and_session_expiry_rebalance_the_rest(tmp_path: os.PathLike[str]) -> None:
    clock = Clock()

    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)), clock=clock)
        results = await asyncio.gather(join(coordinator), join(coordinator), join(coordinator))
        ids = [r.member_id for r in results]
        leader = results[0].leader
        await coordinator.sync("g", leader, 1, [(i, i.encode()) for i in ids])
        gone = next(i for i in ids if i != leader)
        assert coordinator.leave("g", [gone]) == [ErrorCode.NONE]
        assert coordinator.groups["g"].state == PREPARING
        survivors = [i for i in ids if i != gone]
        assert coordinator.heartbeat("g", survivors[0], 1) == ErrorCode.REBALANCE_IN_PROGRESS
        rejoined = await asyncio.gather(*(join(coordinator, i) for i in survivors))
        assert {r.generation for r in rejoined} == {2} and len(coordinator.groups["g"].members) == 2
        leader = rejoined[0].leader
        await coordinator.sync("g", leader, 2, [(i, b"x") for i in survivors])
        silent = next(i for i in survivors if i != leader)
        clock.now += 5.0
        coordinator.heartbeat("g", leader, 2)
        clock.now += 2.0  # 7 s without a heartbeat from `silent`: past its 6 s session
        coordinator.expire()
        assert silent not in coordinator.groups["g"].members
        assert coordinator.heartbeat("g", leader, 2) == ErrorCode.REBALANCE_IN_PROGRESS
        alone = await join(coordinator, leader)
        assert alone.generation == 3 and alone.members and len(alone.members) == 1
        assert coordinator.leave("g", [leader]) == [ErrorCode.NONE]
        assert coordinator.groups["g"].state == EMPTY

    run(scenario())


def test_members_must_share_a_protocol(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first = asyncio.ensure_future(join(coordinator, protocols=[("range", b"")]))
        await asyncio.sleep(0)
        refused = await join(coordinator, protocols=[("cooperative-sticky", b"")])
        assert refused.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert (await first).error == ErrorCode.NONE
        bad = await coordinator.join("", "", None, "c", "h", 6000, 300, "consumer", PROTOCOLS)
        assert bad.error == ErrorCode.INVALID_GROUP_ID
        short = await coordinator.join(
            "g2", "", None, "c", "h", limits.kafka_session_timeout_ms_min - 1, 300, "consumer", PROTOCOLS
        )
        assert short.error == ErrorCode.INVALID_SESSION_TIMEOUT

    run(scenario())


def test_commits_are_taken_while_a_rebalance_is_prepared_not_while_it_completes(
    tmp_path: os.PathLike[str],
) -> None:
    """As Kafka's coordinator: a member of the current generation may commit while a
    rebalance is being prepared (it learns of the rebalance from its heartbeat); between
    the JoinGroup answers and SyncGroup (CompletingRebalance) it gets
    REBALANCE_IN_PROGRESS, a transactional commit (TxnOffsetCommit) excepted. Quix
    Streams takes a refused commit as fatal: its app stopped when a second member
    joined."""

    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first = await join(coordinator)
        assert coordinator.groups["g"].state == COMPLETING
        assert coordinator.check_commit("g", first.member_id, 1) == ErrorCode.REBALANCE_IN_PROGRESS
        assert coordinator.check_commit("g", first.member_id, 1, transactional=True) == ErrorCode.NONE
        await coordinator.sync("g", first.member_id, 1, [(first.member_id, b"all")])
        assert coordinator.groups["g"].state == STABLE
        second = asyncio.ensure_future(join(coordinator))
        await asyncio.sleep(0)
        assert coordinator.groups["g"].state == PREPARING
        assert coordinator.check_commit("g", first.member_id, 1) == ErrorCode.NONE
        assert coordinator.check_commit("g", first.member_id, 0) == ErrorCode.ILLEGAL_GENERATION
        await join(coordinator, first.member_id)
        await second
        coordinator.close()

    run(scenario())


def test_commits_are_checked_and_survive_a_restart(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        assert coordinator.check_commit("g", "", -1) == ErrorCode.NONE  # standalone consumer
        assert coordinator.check_commit("g", "ghost", 3) == ErrorCode.UNKNOWN_MEMBER_ID
        member = await join(coordinator)
        await coordinator.sync("g", member.member_id, 1, [(member.member_id, b"all")])
        assert coordinator.check_commit("g", member.member_id, 7) == ErrorCode.ILLEGAL_GENERATION
        assert coordinator.check_commit("g", member.member_id, 1) == ErrorCode.NONE
        await coordinator.commit("g", {("orders.eu", 0): (42, 3, "meta"), ("orders.us", 1): (7, -1, None)})
        coordinator.close()
        again = Coordinator(DoorStore(os.fspath(tmp_path)))
        assert again.committed("g") == {("orders.eu", 0): (42, 3, "meta"), ("orders.us", 1): (7, -1, None)}
        assert again.groups["g"].state == EMPTY
        assert await again.delete("g") == ErrorCode.NONE
        assert Coordinator(DoorStore(os.fspath(tmp_path))).committed("g") == {}

    run(scenario())


def test_partition_counts_follow_the_topics_incarnation(tmp_path: Any) -> None:
    """A partition count set for one incarnation of a topic does not apply to the next;
    counts saved by earlier versions (keyed by creation time) still apply."""
    from odradek.engine.topicfiles import legacy_incarnation

    store = DoorStore(os.fspath(tmp_path))
    store.set_partitions("t", "a" * 32, 4)
    assert store.partitions("t", "a" * 32) == 4
    assert store.partitions("t", "b" * 32) == 1  # deleted and created again
    store._topics = {"old": {"created_at": 1700000000.5, "kafka_partitions": 3}}
    assert store.partitions("old", legacy_incarnation("old", 1700000000.5)) == 3
    assert store.partitions("old", "c" * 32) == 1
    reopened = DoorStore(os.fspath(tmp_path))
    assert reopened.partitions("t", "a" * 32) == 4
