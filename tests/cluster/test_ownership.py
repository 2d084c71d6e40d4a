"""Topic ownership in a real etcd (cluster/etcd.py: acquire, release, owner,
commit_allowed, the lease's safe window).

Goal: of agents racing to acquire one topic exactly one wins, and epochs strictly
increase across handovers; an agent whose renewals stop learns that it lost its topics
(``holds`` False, listeners called, ``commit_allowed`` False) before any other agent can
acquire them; a killed agent's topics become acquirable after its TTL, with a higher
epoch; ``commit_allowed`` is true exactly for the current owner's epoch.
Method: EtcdCluster clients against the session's single-member etcd (each test under a
cluster name of its own); a killed agent is a separate Python process killed with
SIGKILL; waits on conditions with generous deadlines, never on durations.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from cluster_testing import eventually, run
from etcd_servers import EtcdServers, unique_cluster_name

from odradek.cluster.etcd import EtcdCluster, OwnedByAnother, Ownership, OwnershipLost
from odradek.errors import InvalidRequest


def test_racing_agents_one_wins_and_epochs_grow_across_handovers(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        agents = [EtcdCluster(etcd_server.url, name) for _ in range(4)]
        try:
            for index, agent in enumerate(agents):
                await agent.join(f"agent-{index}", f"127.0.0.1:{8000 + index}", ttl=3)
            epochs: list[int] = []
            for _ in range(6):  # a handover each round: the winner releases
                results = await asyncio.gather(
                    *(agent.acquire("orders.eu") for agent in agents), return_exceptions=True
                )
                winners = [i for i, result in enumerate(results) if isinstance(result, Ownership)]
                assert len(winners) == 1, results
                losers = [result for result in results if not isinstance(result, Ownership)]
                assert all(isinstance(result, OwnedByAnother) for result in losers), losers
                (winner,) = winners
                won = results[winner]
                assert isinstance(won, Ownership)
                owner = await agents[0].owner("orders.eu")
                assert owner is not None and owner.agent_id == f"agent-{winner}"
                assert owner.epoch == won.epoch
                assert all(result.owner.agent_id == f"agent-{winner}" for result in losers)  # type: ignore[union-attr]
                assert agents[winner].holds("orders.eu", won.epoch)
                epochs.append(won.epoch)
                await agents[winner].release("orders.eu")
                assert not agents[winner].holds("orders.eu")
                assert await agents[0].owner("orders.eu") is None
            assert epochs == sorted(set(epochs)), epochs  # strictly increasing
            # and across topics too: an epoch is an etcd revision
            other = await agents[1].acquire("orders.us")
            assert other.epoch > epochs[-1]
        finally:
            for agent in agents:
                await agent.leave()
                await agent.close()

    run(scenario())


def test_commit_allowed_only_for_the_current_owners_epoch(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            await a.join("a", "127.0.0.1:1", ttl=3)
            await b.join("b", "127.0.0.1:2", ttl=3)
            first = await a.acquire("t")
            assert await a.commit_allowed("t", first.epoch)
            assert not await a.commit_allowed("t", first.epoch + 1)
            assert not await b.commit_allowed("t", first.epoch)  # b never held it
            await a.release("t")
            second = await b.acquire("t")
            assert second.epoch > first.epoch
            assert not await a.commit_allowed("t", first.epoch)
            assert await b.commit_allowed("t", second.epoch)
            # a second acquire by the owner is recognized as its own (a retry after a lost answer)
            again = await b.acquire("t")
            assert again.epoch == second.epoch

    run(scenario())


def test_a_lapsed_lease_is_known_lost_before_another_agent_acquires(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            await a.join("a", "127.0.0.1:1", ttl=2)
            await b.join("b", "127.0.0.1:2", ttl=3)
            owned = {topic: await a.acquire(topic) for topic in ("t1", "t2", "t3")}
            told: list[list[str]] = []
            a.on_lost(told.append)
            a.stop_keepalive()  # as a partition from etcd would
            # b acquires as soon as etcd lets it; at that moment a must already know
            acquired = await eventually(
                lambda: _try_acquire(b, "t2"), "b acquires t2 after a's lease expired"
            )
            assert told == [["t1", "t2", "t3"]]  # told once, every topic at once
            assert a.lease_lost.is_set()
            assert all(ownership.lost for ownership in owned.values())
            assert not any(a.holds(topic) for topic in owned)
            assert acquired.epoch > max(ownership.epoch for ownership in owned.values())
            assert not await a.commit_allowed("t2", owned["t2"].epoch)  # refused without asking etcd
            with pytest.raises(OwnershipLost):
                await a.acquire("t9")

    run(scenario())


async def _try_acquire(agent: EtcdCluster, topic: str) -> Ownership | None:
    try:
        return await agent.acquire(topic)
    except OwnedByAnother:
        return None


AGENT_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from odradek.cluster.etcd import EtcdCluster

    async def main():
        cluster = EtcdCluster(sys.argv[1], sys.argv[2])
        await cluster.join("doomed", "127.0.0.1:9000", ttl=2)
        for topic in ("t1", "t2"):
            owned = await cluster.acquire(topic)
            print(topic, owned.epoch, flush=True)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_a_killed_agents_topics_become_acquirable_after_its_ttl(etcd_server: EtcdServers) -> None:
    name = unique_cluster_name()
    command = [sys.executable, "-c", AGENT_PROCESS, etcd_server.url, name]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline().strip() for _ in range(3)]
            assert lines[-1] == "ready", lines
            epochs = {line.split()[0]: int(line.split()[1]) for line in lines[:2]}
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(30)

    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, name) as survivor:
            await survivor.join("survivor", "127.0.0.1:9001", ttl=3)
            owner = await survivor.owner("t1")
            assert owner is not None and owner.agent_id == "doomed"  # not before the TTL
            for topic in ("t1", "t2"):
                taken = await eventually(lambda t=topic: _try_acquire(survivor, t), f"{topic} acquirable")
                assert taken.epoch > epochs[topic]
            assert [agent.agent_id for agent in await survivor.agents()] == ["survivor"]

    run(scenario())


def test_ownership_needs_a_lease(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, unique_cluster_name()) as cluster:
            with pytest.raises(InvalidRequest):
                await cluster.acquire("t")
            assert not cluster.holds("t")
            await cluster.join("a", "127.0.0.1:1", ttl=2)
            with pytest.raises(InvalidRequest):
                await cluster.acquire("bad/topic")
            await cluster.leave()
            with pytest.raises(OwnershipLost):
                await cluster.acquire("t")

    run(scenario())
