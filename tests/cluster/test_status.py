"""`odradek cluster status` (odradek.cluster.status and the CLI command) against real etcd.

Goal: the status shows what etcd holds — every live agent with its address, doors, lease
and the lease's time to live, the owner of the cell and its epoch, the catalog's topic
count — and each etcd endpoint's health (member, leader, raft term and index, database
size, version, alarms). With one member of three killed it still answers from the others
and names the dead one; with no endpoint answering, or one that never answers, it says
so within its bound; lists are capped with the owner kept. The command prints the whole
report with --json and exits 0 only when etcd is healthy and an agent owns the cell, 1
when etcd answers but something is wrong, 2 without --etcd, 3 when etcd cannot be
reached. Method: agents joined with ``EtcdCluster.join`` and the cell acquired with
``acquire`` on the session's single-member etcd (a cluster name per test), on a fresh
3-member etcd, or on a fresh member with a NOSPACE alarm raised; the CLI runs as a
subprocess while the agents' leases are kept alive on the test's event loop. Waits are
on conditions with generous deadlines; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import aetcd
import pytest
from cluster_testing import eventually, run
from etcd_servers import EtcdServers, etcd_cluster, free_ports, unique_cluster_name

from odradek.cluster.etcd import EtcdCluster
from odradek.cluster.keys import TopicRecord
from odradek.cluster.status import CELL, ClusterStatus, cluster_status
from odradek.errors import InvalidRequest

TTL_SECONDS = 10  # outlives a leader election in the 3-member tests
ODRADEK = [sys.executable, "-m", "odradek.cli.main"]


async def odradek(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop (the agents' leases are renewed on it)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("ODRADEK_ETCD", "ODRADEK_CLUSTER")}
    process = await asyncio.create_subprocess_exec(
        *ODRADEK,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environment, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_agents_owner_epoch_catalog_and_etcd_health(etcd_server: EtcdServers) -> None:
    name = unique_cluster_name()

    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            doors = {"kafka": "127.0.0.1:9092", "registry": "127.0.0.1:8081"}
            joined = await a.join("a", "127.0.0.1:8815", ttl=TTL_SECONDS, doors=doors)
            await b.join("b", "127.0.0.1:8816", ttl=TTL_SECONDS)
            cell = await a.acquire(CELL)
            for topic in ("orders", "payments"):
                await a.create_topic(TopicRecord(topic, {"retention": "7d"}))

            status = await cluster_status(etcd_server.url, name)

            assert status.problems == () and status.healthy and status.etcd_healthy
            assert [agent.record.agent_id for agent in status.agents] == ["a", "b"]
            assert status.agents_total == 2
            owner, standby = status.agents
            assert (owner.role, owner.owns, standby.role, standby.owns) == ("owner", (CELL,), "standby", ())
            assert owner.record.address == "127.0.0.1:8815" and owner.record.doors == doors
            assert owner.record.lease == joined.lease
            assert owner.lease_granted_seconds == TTL_SECONDS
            assert owner.lease_ttl_seconds is not None and 0 < owner.lease_ttl_seconds <= TTL_SECONDS
            assert status.owner is not None and status.owner.record.agent_id == "a"
            assert status.owner.record.epoch == cell.epoch and status.owners_total == 1
            assert status.catalog_topics == 2
            (endpoint,) = status.endpoints
            assert endpoint.endpoint == etcd_server.endpoints[0]
            assert endpoint.reachable and endpoint.healthy and endpoint.leader
            assert endpoint.member_id and endpoint.name == etcd_server.members[0].name
            assert endpoint.version is not None and endpoint.version.startswith("3.")
            assert endpoint.raft_term and endpoint.raft_index and endpoint.db_size_bytes
            assert endpoint.errors == () and endpoint.alarms == ()

            document = json.loads(json.dumps(status.to_json()))
            assert (document["owner"], document["epoch"], document["healthy"]) == ("a", cell.epoch, True)
            assert document["agents"][0]["lease"] == f"{joined.lease:x}"
            assert document["etcd"]["endpoints"][0]["member"] == f"{endpoint.member_id:x}"

    run(scenario())


def test_no_owner_is_a_problem_and_gone_agents_are_gone(etcd_server: EtcdServers) -> None:
    name = unique_cluster_name()

    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, name) as a:
            await a.join("a", "127.0.0.1:8815", ttl=TTL_SECONDS)
            status = await cluster_status(etcd_server.url, name)
            assert status.etcd_healthy and not status.healthy and status.owner is None
            assert [problem for problem in status.problems if "no agent owns the cell" in problem]
            assert len(status.problems) == 1 and status.to_json()["owner"] is None

            await a.acquire(CELL)
            assert (await cluster_status(etcd_server.url, name)).healthy
            await a.release(CELL)
            assert (await cluster_status(etcd_server.url, name)).owner is None

            await a.leave()
            status = await cluster_status(etcd_server.url, name)
            assert status.agents == () and status.agents_total == 0 and not status.healthy

    run(scenario())


def test_lists_are_capped_with_the_owner_kept(etcd_server: EtcdServers) -> None:
    name = unique_cluster_name()

    async def scenario() -> None:
        agents = [EtcdCluster(etcd_server.url, name) for _ in range(3)]
        try:
            for agent, agent_id in zip(agents, ("a", "b", "c"), strict=True):
                await agent.join(agent_id, "127.0.0.1:8815", ttl=TTL_SECONDS)
            await agents[2].acquire(CELL)  # "c": last by id
            await agents[2].acquire("orders")  # an owner key sorting before the cell's
            status = await cluster_status(etcd_server.url, name, agents_max=2, owners_max=1)
            assert [agent.record.agent_id for agent in status.agents] == ["c", "a"]
            assert [agent.role for agent in status.agents] == ["owner", "standby"]
            assert status.agents[0].owns == (CELL, "orders")
            assert status.agents_total == 3
            assert [owner.record.topic for owner in status.owners] == [CELL]
            assert status.owners_total == 2 and status.healthy
            assert any("3 agents" in warning for warning in status.warnings)
            assert any("2 owner keys" in warning for warning in status.warnings)
        finally:
            for agent in agents:
                await agent.close()

    run(scenario())


def test_a_killed_leader_is_shown_unreachable_and_the_others_answer(etcd_cluster3: EtcdServers) -> None:
    leader = etcd_cluster3.leader()
    endpoints = [leader.endpoint] + [m.endpoint for m in etcd_cluster3.members if m is not leader]
    url = ",".join(endpoints)

    async def settled() -> ClusterStatus | None:
        """A status once the survivors agree on a new leader and the agents were read."""
        status = await cluster_status(url, "c")
        leaders = {endpoint.leader_id for endpoint in status.endpoints if endpoint.reachable}
        return status if status.agents_total == 2 and len(leaders) == 1 and 0 not in leaders else None

    async def scenario() -> None:
        async with EtcdCluster(url, "c") as a, EtcdCluster(url, "c") as b:
            await a.join("a", "127.0.0.1:8815", ttl=TTL_SECONDS)
            await b.join("b", "127.0.0.1:8816", ttl=TTL_SECONDS)
            cell = await a.acquire(CELL)
            before = await cluster_status(url, "c")
            assert before.healthy and before.endpoints[0].leader
            dead_id = before.endpoints[0].member_id

            leader.kill()
            status = await eventually(settled, "a status after the survivors elected a leader")

            dead, *alive = status.endpoints
            assert (dead.endpoint, dead.reachable, dead.healthy) == (leader.endpoint, False, False)
            assert dead.member_id == dead_id and dead.name == leader.name  # named by the others
            assert dead.errors and all(endpoint.healthy for endpoint in alive)
            assert sum(endpoint.leader for endpoint in alive) == 1
            assert len(status.problems) == 1 and leader.endpoint in status.problems[0]
            assert not status.etcd_healthy and not status.healthy
            assert status.owner is not None and status.owner.record.epoch == cell.epoch
            assert [agent.record.agent_id for agent in status.agents] == ["a", "b"]

            code, out, err = await odradek("cluster", "status", "--etcd", url, "--cluster", "c", "--json")
            assert code == 1, err
            document = json.loads(out)
            assert [e["reachable"] for e in document["etcd"]["endpoints"]] == [False, True, True]
            assert document["owner"] == "a" and document["epoch"] == cell.epoch
            assert "1 problem" in err

    run(scenario())


def test_no_endpoint_answering(tmp_path: Path) -> None:
    closed = [f"http://127.0.0.1:{port}" for port in free_ports(2)]  # nothing listens there
    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    quiet = f"http://127.0.0.1:{silent.getsockname()[1]}"

    async def scenario() -> None:
        status = await cluster_status(",".join(closed), "c")
        assert not status.reachable and not status.healthy and status.owner is None
        assert [endpoint.reachable for endpoint in status.endpoints] == [False, False]
        assert all(endpoint.errors for endpoint in status.endpoints)
        assert status.agents_total is None and status.catalog_topics is None
        assert any("cannot be reached at any endpoint" in problem for problem in status.problems)

        status = await cluster_status(quiet, "c", timeout_seconds=0.5)  # bounded, not a hang
        assert not status.reachable and status.endpoints[0].errors

        code, out, err = await odradek("cluster", "status", "--etcd", ",".join(closed), "--json")
        assert code == 3 and "etcd cannot be reached" in err, err
        assert json.loads(out)["etcd"]["reachable"] is False

    try:
        run(scenario())
    finally:
        silent.close()


def test_an_alarm_is_a_problem(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path / "etcd", members=1) as etcd:

        async def scenario() -> None:
            status = await cluster_status(etcd.url, "c")
            member_id = status.endpoints[0].member_id
            assert status.etcd_healthy and member_id
            async with aetcd.Client(port=etcd.members[0].client_port) as client:
                await client.create_alarm(member_id)
            status = await cluster_status(etcd.url, "c")
            assert status.endpoints[0].alarms == ("NOSPACE",) and not status.endpoints[0].healthy
            assert status.alarms == ((member_id, "NOSPACE"),) and not status.etcd_healthy
            assert any("alarm NOSPACE" in problem for problem in status.problems)
            assert status.to_json()["etcd"]["alarms"] == [{"member": f"{member_id:x}", "alarm": "NOSPACE"}]

        run(scenario())


def test_bad_input_is_refused_before_any_request() -> None:
    for endpoints, cluster in (("ftp://127.0.0.1:2379", "c"), ("http://127.0.0.1:2379", "a/b"), ("", "c")):
        with pytest.raises(InvalidRequest):
            run(cluster_status(endpoints, cluster))


def test_the_command(etcd_server: EtcdServers) -> None:
    name = unique_cluster_name()
    where = ["--etcd", etcd_server.url, "--cluster", name]

    async def scenario() -> None:
        async with EtcdCluster(etcd_server.url, name) as a, EtcdCluster(etcd_server.url, name) as b:
            await a.join("a", "127.0.0.1:8815", ttl=TTL_SECONDS, doors={"kafka": "127.0.0.1:9092"})
            await b.join("b", "127.0.0.1:8816", ttl=TTL_SECONDS)

            code, out, err = await odradek("cluster", "status", *where)
            assert code == 1 and "no agent owns the cell" in out and "1 problem" in err, (out, err)

            cell = await a.acquire(CELL)
            code, out, err = await odradek("cluster", "status", *where, "--json")
            assert code == 0, err
            document = json.loads(out)
            assert (document["cluster"], document["owner"], document["epoch"]) == (name, "a", cell.epoch)
            assert [(agent["agent"], agent["role"]) for agent in document["agents"]] == [
                ("a", "owner"),
                ("b", "standby"),
            ]
            assert document["agents"][0]["doors"] == {"kafka": "127.0.0.1:9092"}
            assert document["etcd"]["healthy"] is True and document["problems"] == []

            code, out, err = await odradek(
                "cluster",
                "status",
                "--format",
                "text",
                env={"ODRADEK_ETCD": etcd_server.url, "ODRADEK_CLUSTER": name},
            )
            assert code == 0, err
            lines = out.splitlines()
            assert (
                lines[0]
                == f"cluster {name}: healthy, owner a (epoch {cell.epoch}), 2 agents, 0 topics in the catalog"
            )
            assert any(line.split()[:3] == ["a", "owner", "127.0.0.1:8815"] for line in lines)
            assert any(line.split()[:2] == ["b", "standby"] for line in lines)
            assert any(line.startswith(etcd_server.endpoints[0]) and " ok " in line for line in lines)

            code, _, err = await odradek("cluster", "status")
            assert code == 2 and "--etcd" in err
            code, _, err = await odradek("cluster", "status", "--etcd", etcd_server.url, "--cluster", "a/b")
            assert code == 1 and "invalid cluster name" in err

    run(scenario())
