"""Agents joining a cluster in a real etcd (cluster/etcd.py: join, agents, watch_agents,
leave).

Goal: an agent that joins is listed with its address under its cluster only; a watcher
sees the agents live when it starts, then every join and departure; an agent that
leaves disappears at once (its lease revoked), and one whose renewals stop disappears
after its TTL; a second agent with a live agent's id is refused; bad arguments are
refused before etcd is asked. Method: several EtcdCluster clients against the session's
single-member etcd, each test under a cluster name of its own; waits on conditions with
generous deadlines.
"""

from __future__ import annotations

import asyncio

import pytest
from cluster_testing import eventually, run
from etcd_servers import EtcdServers, unique_cluster_name

from odradek.cluster.etcd import AgentEvent, AgentIdInUse, EtcdCluster, parse_endpoints
from odradek.errors import InvalidRequest


def test_join_list_and_leave(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            async with EtcdCluster(etcd_server.url, unique_cluster_name()) as elsewhere:
                await elsewhere.join("a", "127.0.0.1:1", ttl=2)
                record = await a.join("a", "127.0.0.1:8815", ttl=2)
                await b.join("b", "[::1]:8816", ttl=2)
                agents = await a.agents()
                assert [(x.agent_id, x.address) for x in agents] == [
                    ("a", "127.0.0.1:8815"),
                    ("b", "[::1]:8816"),
                ]
                assert agents[0].lease == record.lease != 0
                await b.leave()
                assert [x.agent_id for x in await a.agents()] == ["a"]
                assert [x.agent_id for x in await elsewhere.agents()] == ["a"]

    run(scenario())


def test_watch_sees_the_live_then_every_join_and_departure(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            async with EtcdCluster(etcd_server.url, name) as c, EtcdCluster(etcd_server.url, name) as watcher:
                await a.join("a", "127.0.0.1:1", ttl=2)
                events: asyncio.Queue[AgentEvent] = asyncio.Queue()

                async def follow() -> None:
                    async for event in watcher.watch_agents():
                        await events.put(event)

                task = asyncio.create_task(follow())
                first = await events.get()
                assert (first.kind, first.agent_id) == ("joined", "a")
                await b.join("b", "127.0.0.1:2", ttl=2)
                event = await events.get()
                assert (event.kind, event.agent_id) == ("joined", "b")
                assert event.record is not None and event.record.address == "127.0.0.1:2"
                await b.leave()
                event = await events.get()
                assert (event.kind, event.agent_id, event.record) == ("left", "b", None)
                # an agent whose renewals stop leaves once etcd expires its lease
                await c.join("c", "127.0.0.1:3", ttl=2)
                assert (await events.get()).agent_id == "c"
                c.stop_keepalive()
                event = await events.get()
                assert (event.kind, event.agent_id) == ("left", "c")
                assert event.revision > first.revision
                task.cancel()

    run(scenario())


def test_an_agent_id_in_use_is_refused_until_its_lease_goes(etcd_server: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as first, EtcdCluster(etcd_server.url, name) as second:
            await first.join("a", "127.0.0.1:1", ttl=2)
            with pytest.raises(AgentIdInUse) as refused:
                await second.join("a", "127.0.0.1:2", ttl=2)
            assert refused.value.retryable
            first.stop_keepalive()

            async def join_again() -> object | None:
                try:
                    return await second.join("a", "127.0.0.1:2", ttl=2)
                except AgentIdInUse:
                    return None

            await eventually(join_again, "the id is free once the first lease expired")
            assert [x.address for x in await second.agents()] == ["127.0.0.1:2"]

    run(scenario())


@pytest.mark.parametrize(
    ("agent_id", "address", "ttl"),
    [("a/b", "127.0.0.1:1", 2), ("a", "nowhere", 2), ("a", "127.0.0.1:1", 0), ("a", "127.0.0.1:1", 61)],
)
def test_bad_joins_are_refused_before_etcd_is_asked(agent_id: str, address: str, ttl: int) -> None:
    async def scenario() -> None:
        # no etcd listens on port 9: a request would fail with EtcdUnavailable, not InvalidRequest
        async with EtcdCluster("http://127.0.0.1:9", "c", retry_seconds=0.1) as cluster:
            with pytest.raises(InvalidRequest):
                await cluster.join(agent_id, address, ttl=ttl)

    run(scenario())


@pytest.mark.parametrize(
    "endpoints",
    ["", "ftp://h:1", "http://h:1,https://h:2", "http://h:1/path", "http://h:x", ",".join(["h:1"] * 17)],
)
def test_bad_endpoints_are_refused(endpoints: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_endpoints(endpoints)


def test_endpoints_parse() -> None:
    assert parse_endpoints("http://h1:2379, h2:2380,h3") == [("h1", 2379), ("h2", 2380), ("h3", 2379)]


def test_leave_always_stops_the_renewals(etcd_server: EtcdServers) -> None:
    """Found while building: a renewal's timeout by asyncio.wait_for swallowed the
    cancellation that leave() sent when the renewal completed at the same moment (Python
    3.11), so the renewal task never stopped and leave() waited for it forever. Many
    join/leave cycles with renewals in flight make that moment likely."""

    async def scenario() -> None:
        name = unique_cluster_name()
        for cycle in range(40):
            async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
                await a.join("a", "127.0.0.1:1", ttl=1)
                await b.join("b", "127.0.0.1:2", ttl=1)
                await a.agents()
                await b.leave()
                await a.leave()
                assert a.lease_lost.is_set() and b.lease_lost.is_set(), cycle

    run(scenario())


def test_leaving_after_the_lease_expired_is_no_error(etcd_server: EtcdServers) -> None:
    """An owner whose lease expired (an etcd election longer than the TTL) leaves it
    before joining again: etcd answers that the lease is not found, which means it is
    gone already, not an error that ends the agent (a chaos run's agent exited on it)."""

    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(etcd_server.url, name) as lost, EtcdCluster(etcd_server.url, name) as other:
            await lost.join("a", "127.0.0.1:1", ttl=1)
            lost.stop_keepalive()

            async def gone() -> bool | None:
                return True if not await other.agents() else None

            await eventually(gone, "the lease expired in etcd")
            await lost.leave()  # no error: there is nothing left to revoke

    run(scenario())
