"""The cluster's etcd client across the loss of etcd members (a real 3-member cluster).

Goal: with one member killed the cluster keeps serving an agent whose client was talking
to that member (it moves to the next member, its lease and ownership survive); with the
leader killed, every operation resumes once the two survivors elected a new leader,
and a watch of agents carries on. Method: a fresh 3-member etcd per test (heartbeat
50 ms, election timeout 500 ms), the member to kill listed first in the client's
endpoints so that the client is surely talking to it; SIGKILL; waits on conditions with
generous deadlines (a leader election takes about a second; nothing asserts a duration).
"""

from __future__ import annotations

import asyncio

from cluster_testing import eventually, run
from etcd_servers import EtcdServers, Member

from odradek.cluster.etcd import AgentEvent, EtcdCluster, EtcdUnavailable, OwnedByAnother, Ownership

TTL_SECONDS = 5  # the lease must outlive the client's move to another member


def _endpoints_from(first: Member, cluster: EtcdServers) -> list[str]:
    return [first.endpoint] + [member.endpoint for member in cluster.members if member is not first]


async def _acquire(agent: EtcdCluster, topic: str) -> Ownership | None:
    try:
        return await agent.acquire(topic)
    except (EtcdUnavailable, OwnedByAnother):
        return None


def test_a_killed_follower_does_not_interrupt_an_agent(etcd_cluster3: EtcdServers) -> None:
    leader = etcd_cluster3.leader()
    follower = next(member for member in etcd_cluster3.members if member is not leader)

    async def scenario() -> None:
        async with EtcdCluster(_endpoints_from(follower, etcd_cluster3), "c") as agent:
            await agent.join("a", "127.0.0.1:1", ttl=TTL_SECONDS)
            before = await agent.acquire("before")
            assert await agent.commit_allowed("before", before.epoch)
            follower.kill()
            after = await agent.acquire("after")  # retried on the next member
            assert after.epoch > before.epoch
            assert await agent.commit_allowed("before", before.epoch)
            assert agent.holds("before") and not agent.lease_lost.is_set()
            assert [record.agent_id for record in await agent.agents()] == ["a"]
            assert sorted(await agent.owners()) == ["after", "before"]

    run(scenario())


def test_operations_resume_after_the_leader_is_killed(etcd_cluster3: EtcdServers) -> None:
    leader = etcd_cluster3.leader()
    endpoints = _endpoints_from(leader, etcd_cluster3)

    async def scenario() -> None:
        async with EtcdCluster(endpoints, "c") as a, EtcdCluster(endpoints, "c") as watcher:
            await a.join("a", "127.0.0.1:1", ttl=TTL_SECONDS)
            first = await a.acquire("t1")
            events: asyncio.Queue[AgentEvent] = asyncio.Queue()

            async def follow() -> None:
                async for event in watcher.watch_agents():
                    await events.put(event)

            task = asyncio.create_task(follow())
            assert (await events.get()).agent_id == "a"
            leader.kill()
            new_leader = etcd_cluster3.leader()  # waits for the survivors to agree
            assert new_leader is not leader
            taken = await eventually(lambda: _acquire(a, "t2"), "an acquire after the election")
            assert taken.epoch > first.epoch
            async with EtcdCluster(endpoints, "c") as b:
                await b.join("b", "127.0.0.1:2", ttl=TTL_SECONDS)
                event = await events.get()  # the watch carried on past the leader's death
                assert (event.kind, event.agent_id) == ("joined", "b")
                assert sorted(record.agent_id for record in await b.agents()) == ["a", "b"]
                owner = await b.owner("t2")
                assert owner is not None and owner.agent_id == "a" and owner.epoch == taken.epoch
            task.cancel()

    run(scenario())
