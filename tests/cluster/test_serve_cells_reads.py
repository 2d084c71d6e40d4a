"""Wildcard reads over `odradek serve --etcd --cells 3 --auth` (decision 0035).

Goal: what a user of a cluster whose topics are spread over three agents sees when it
reads by pattern: the agent it calls answers with every cell's matching topics (its
own cells read there, each other cell's part asked of the agent serving it with the
caller's credentials); a following read picks up records appended to topics of every
cell and topics created in any cell while it reads; a tenant's read holds its own
topics only, named as it names them, whichever cell holds them; a read whose other
cell loses its agent (kill -9) fails with a retriable error, and a new read after the
failover has every record. A tenant's group subscribing to a pattern through one agent
reads every cell's topics (decision 0038) and, after a kill -9 of another cell's agent,
fails retriably and gets again what it had not acknowledged.
Method: three real `odradek serve --cells 3 --auth` processes on a real etcd and moto's
S3 server, users and a tenant made offline in etcd, the Python client; kill -9.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from prometheus_client.parser import text_string_to_metric_families
from serve_processes import ServeAgent, cluster_name, one_cell_each, running
from test_serve_agent_auth import add_user_in_etcd, odradek_cli

import odradek
from odradek.errors import Unavailable

CELLS = ["_cell", "_cell.1", "_cell.2"]
AUTH_CELLS = ["--cells", "3", "--auth", "--registry-listen", "off"]


class AuthAgent(ServeAgent):
    """An agent whose status and metrics are asked with the admin's credentials."""

    def status(self) -> dict[str, Any]:
        with odradek.connect(self.url, user="root", password="root-secret") as client:
            return dict(json.loads(client._action("cluster_status", {})))

    def records_out(self) -> dict[str, float]:
        """Records this agent sent to each principal (its metering, by principal); the
        agent is started with ``metrics=True``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        basic = base64.b64encode(b"root:root-secret").decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
        return {
            sample.labels["principal"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "odradek_principal_records_out"
            for sample in family.samples
        }


@pytest.fixture
def cluster(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> Iterator[tuple[list[AuthAgent], str]]:
    name, prefix = cluster_name("w"), unique_prefix()
    add_user_in_etcd(etcd_server.url, name, "root", "root-secret", "--admin")
    done = odradek_cli("tenant", "create", "acme", "--etcd", etcd_server.url, "--cluster", name)
    assert done.returncode == 0, done.stderr
    add_user_in_etcd(etcd_server.url, name, "bob", "bob-secret", "--tenant", "acme")
    with running(
        lambda agent_id: AuthAgent(
            tmp_path, agent_id, etcd_server.url, name, moto_s3, prefix, AUTH_CELLS, metrics=True
        )
    ) as started:
        yield started, name


def _connect(agents: list[AuthAgent], user: str, first: int = 0) -> odradek.RemoteClient:
    urls = ",".join(agent.url for agent in agents[first:] + agents[:first])
    return odradek.connect(urls, user=user, password=f"{user}-secret")


def _values(batches: Iterator[pa.RecordBatch]) -> dict[str, list[bytes]]:
    by_topic: dict[str, list[bytes]] = {}
    for batch in batches:
        for row in batch.to_pylist():
            by_topic.setdefault(row["topic"], []).append(row["value"])
    return by_topic


def test_a_wildcard_read_has_every_cells_topics(cluster: tuple[list[AuthAgent], str]) -> None:
    agents, _ = cluster
    owners = one_cell_each(agents, CELLS)
    with _connect(agents, "root") as admin:
        for index in range(6):
            admin.create_topic(f"orders.{index}")
            admin.append(f"orders.{index}", [{"value": f"first {index}".encode()}])
        admin.create_topic("other")
        admin.append("other", [{"value": b"not matched"}])
    placed = {agent.agent_id: agent.cells() for agent in agents}
    assert sorted(cell for cells in placed.values() for cell in cells) == CELLS
    # Through the agent serving the home cell, and through another: the same answer.
    for first in (0, 1, 2):
        with _connect(agents, "root", first) as admin:
            read = _values(admin.read("orders.>", wait=0))
        assert read == {f"orders.{index}": [f"first {index}".encode()] for index in range(6)}, first

    # A following read picks up appends and new topics in every cell.
    seen: dict[str, list[bytes]] = {}
    done = threading.Event()

    def follow() -> None:
        with _connect(agents, "root") as reader:
            for batch in reader.read("orders.>", start="latest", follow=True):
                for row in batch.to_pylist():
                    seen.setdefault(row["topic"], []).append(row["value"])
                if done.is_set():
                    return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(1.0)  # the read's parts started (it reads from the end: earlier records are not wanted)
    with _connect(agents, "root", 2) as admin:
        for index in range(6):
            admin.append(f"orders.{index}", [{"value": f"second {index}".encode()}])
        for index in range(6, 9):
            admin.create_topic(f"orders.{index}")  # placed in turn in every cell
            admin.append(f"orders.{index}", [{"value": f"new {index}".encode()}])
    expected = {
        **{f"orders.{index}": [f"second {index}".encode()] for index in range(6)},
        **{f"orders.{index}": [f"new {index}".encode()] for index in range(6, 9)},
    }
    wait_for(lambda: seen == expected, "the following read to see every cell's new records")
    done.set()
    with _connect(agents, "root", 1) as admin:
        admin.append("orders.0", [{"value": b"ends the read"}])
    thread.join(30)
    assert not thread.is_alive()

    # Kill -9 the agent serving a cell no read starts at: a read fails, retriably; after
    # the failover a new read has every record.
    everything = {
        **{f"orders.{index}": [f"first {index}".encode(), f"second {index}".encode()] for index in range(6)},
        **{f"orders.{index}": [f"new {index}".encode()] for index in range(6, 9)},
    }
    everything["orders.0"].append(b"ends the read")
    victim = owners["_cell.2"]
    entry = next(agent for agent in agents if agent is not victim)
    victim.signal(signal.SIGKILL)
    assert victim.process is not None
    victim.process.wait(30)
    with odradek.connect(entry.url, user="root", password="root-secret") as admin:
        outcomes: list[str] = []

        def whole() -> bool:
            try:
                read = _values(admin.read("orders.>", wait=0))
            except Unavailable:
                outcomes.append("unavailable")
                return False
            outcomes.append("read")
            return read == everything

        wait_for(whole, "a whole read after the failover")
        assert set(outcomes) <= {"unavailable", "read"}


def test_a_tenants_wildcard_read_has_its_own_topics_of_every_cell(
    cluster: tuple[list[AuthAgent], str],
) -> None:
    agents, _ = cluster
    one_cell_each(agents, CELLS)
    with _connect(agents, "bob") as bob, _connect(agents, "root") as admin:
        for index in range(3):
            bob.create_topic(f"orders.{index}")  # _t.acme.orders.N, one in each cell
            bob.append(f"orders.{index}", [{"value": f"acme {index}".encode()}])
            admin.create_topic(f"orders.{index}")  # the default namespace's, beside them
            admin.append(f"orders.{index}", [{"value": f"root {index}".encode()}])
        cells = {record for record in admin.list_topics()}
        assert {f"_t.acme.orders.{index}" for index in range(3)} <= cells
    for first in (0, 1, 2):
        with _connect(agents, "bob", first) as bob:
            assert _values(bob.read(">", wait=0)) == {
                f"orders.{index}": [f"acme {index}".encode()] for index in range(3)
            }
        with _connect(agents, "root", first) as admin:
            read = _values(admin.read("orders.*", wait=0))
            assert read == {f"orders.{index}": [f"root {index}".encode()] for index in range(3)}
    # Each record is metered to bob where it was read: the agent a read reached meters
    # its own cell's part (read on a thread of its own) and the others theirs.
    metered = [agent.records_out() for agent in agents]
    assert sum(counts.get("bob", 0) for counts in metered) == 9, metered
    assert all(counts.get("bob", 0) == 3 for counts in metered), metered
    assert all("anonymous" not in counts for counts in metered), metered


def test_groups_of_every_cell_are_listed_described_and_deleted_at_any_agent(
    cluster: tuple[list[AuthAgent], str],
) -> None:
    agents, _ = cluster
    one_cell_each(agents, CELLS)
    with _connect(agents, "root") as admin, _connect(agents, "bob") as bob:
        for index in range(3):
            admin.create_topic(f"jobs.{index}")  # one in each cell
            bob.create_topic(f"jobs.{index}")
        placements = {agent.agent_id: agent.cells() for agent in agents}
        assert len(placements) == 3
        consumers = [admin.subscribe(f"jobs.{index}", group=f"g{index}") for index in range(3)]
        consumers.append(bob.subscribe("jobs.1", group="mine"))
        for first in (0, 1, 2):
            with _connect(agents, "root", first) as each:
                assert each.list_groups() == ["_t.acme.mine", "g0", "g1", "g2"]
                for index in range(3):
                    info = each.describe_group(f"g{index}")
                    assert [member.member for member in info.members] == [consumers[index].member_id]
                with pytest.raises(odradek.InvalidRequest, match="does not exist"):
                    each.describe_group("nope")
            with _connect(agents, "bob", first) as each:
                assert each.list_groups() == ["mine"]  # its own, named as it names it
                assert each.describe_group("mine").group == "mine"
        for consumer in consumers:
            consumer.close()
        with _connect(agents, "root", 2) as each:
            each.delete_group("g0")
            each.delete_group("g1")
        with _connect(agents, "root", 1) as each:
            assert each.list_groups() == ["_t.acme.mine", "g2"]


def test_a_tenants_group_subscribing_to_a_pattern_reads_every_cell_through_a_kill(
    cluster: tuple[list[AuthAgent], str],
) -> None:
    """Decision 0038: a tenant's member subscribing to ``jobs.*`` through one agent is
    joined to every cell with the tenant's credentials; its deliveries name topics as
    the tenant names them; describe shows the group once; when another cell's agent is
    killed the subscription fails retriably, and one made after the failover gets what
    was not acknowledged."""
    agents, _ = cluster
    owners = one_cell_each(agents, CELLS)
    with _connect(agents, "bob") as bob, _connect(agents, "root") as admin:
        for index in range(3):
            bob.create_topic(f"jobs.{index}")  # one in each cell
            bob.append(f"jobs.{index}", [{"key": f"k{n}", "value": f"{index}/{n}"} for n in range(4)])
            admin.create_topic(f"jobs.{index}")  # the default namespace's: not the tenant's
            admin.append(f"jobs.{index}", [{"value": b"not bob's"}])
    entry = owners["_cell"]
    with odradek.connect(entry.url, user="bob", password="bob-secret") as bob:
        consumer = bob.subscribe("jobs.*", group="work")
        got: list[Any] = []
        wait_for(lambda: bool(got.extend(consumer.poll(100, timeout=1))) or len(got) >= 12, "12 deliveries")
        assert sorted(d.value for d in got) == sorted(f"{i}/{n}".encode() for i in range(3) for n in range(4))
        assert {d.topic for d in got} == {"jobs.0", "jobs.1", "jobs.2"}
        first = [d for d in got if d.value.endswith(b"/0")]
        assert consumer.ack(first).ok
        info = bob.describe_group("work")
        assert info.group == "work" and [m.member for m in info.members] == [consumer.member_id]
        assert sorted(t.topic for t in info.topics) == ["jobs.0", "jobs.1", "jobs.2"]
        victim = owners["_cell.2"]
        victim.signal(signal.SIGKILL)
        assert victim.process is not None
        victim.process.wait(30)
        with pytest.raises(Unavailable):
            for _ in range(60):
                consumer.poll(100, timeout=1)
        wanted = {f"{i}/{n}".encode() for i in range(3) for n in range(1, 4)}
        acked: set[bytes] = set()

        def resubscribed() -> bool:  # what was not acknowledged comes again, once acked stays so
            try:
                with bob.subscribe("jobs.*", group="work") as again:
                    deadline = time.monotonic() + 10
                    while acked != wanted and time.monotonic() < deadline:
                        batch = again.poll(100, timeout=1)
                        assert {d.value for d in batch} <= wanted - acked
                        if batch:
                            assert again.ack(batch).ok
                            acked.update(d.value for d in batch)
            except Unavailable:
                return False
            return acked == wanted

        wait_for(resubscribed, "every record not acknowledged, after the failover")


def test_a_tenants_dead_letters_of_every_cell_reach_the_one_topic_with_the_agents_credentials(
    cluster: tuple[list[AuthAgent], str],
) -> None:
    """Decision 0040: each cell's part of a tenant's group subscribing to a pattern
    dead-letters into the one dead-letter topic in whichever cell holds it; the parts
    of the other cells append through the agent serving it with their agent's own
    credentials (before, with authentication on, they waited, retried forever)."""
    agents, _ = cluster
    one_cell_each(agents, CELLS)
    with _connect(agents, "bob") as bob:
        for index in range(3):
            bob.create_topic(f"tasks.{index}")  # one in each cell
            bob.append(f"tasks.{index}", [{"key": f"k{index}", "value": f"poison {index}"}])
        bob.create_topic("dlq.crew")  # in one of the cells: two parts write through a peer
        with bob.subscribe("tasks.*", group="crew", max_deliveries=1) as consumer:
            held: list[Any] = []
            wait_for(lambda: bool(held.extend(consumer.poll(10, timeout=1))) or len(held) >= 3, "3 polled")
            assert consumer.nack(held, delay=0).settled == 3
            wait_for(lambda: bob.describe_group("crew").dead_lettered == 3, "every cell's dead letter")
        letters = [row for batch in bob.read("dlq.crew", wait=0) for row in batch.to_pylist()]
        assert sorted(row["value"] for row in letters) == [b"poison 0", b"poison 1", b"poison 2"]
        assert bob.list_topics().count("dlq.crew") == 1


def test_a_view_folds_every_cells_topics_and_an_append_waits_for_it_through_any_agent(
    cluster: tuple[list[AuthAgent], str],
) -> None:
    """Decision 0041 with authentication on: the view lives in the home cell, whose
    agent reads the other cells' topics with its own credentials (decision 0040); an
    append to a topic of another cell through an agent that does not serve the home
    cell waits for the view there, its waiters forwarded with the caller's credentials."""
    agents, _ = cluster
    owners = one_cell_each(agents, CELLS)
    with _connect(agents, "root") as root:
        for index in range(3):
            root.create_topic(f"jobs.{index}")  # one in each cell
            root.append(f"jobs.{index}", [{"key": "all", "value": f"job {index}"}])
        root.create_view("jobs_count", "jobs.*", "odradek.views.reducers:count")
        wait_for(lambda: root.view_get("jobs_count", "all") == b"3", "every cell's records folded")
    far = next(agent for cell, agent in owners.items() if cell != "_cell")
    with odradek.connect(far.url, user="root", password="root-secret") as through:
        for number in range(3):  # jobs.1 and jobs.2 are in the cells the far agents serve
            through.append(
                "jobs.2", [{"key": "all", "value": f"more {number}"}], wait_for=["view:jobs_count"]
            )
            assert through.view_get("jobs_count", "all") == str(4 + number).encode()
        described = through.describe_view("jobs_count")
        assert described["offsets"] == {"jobs.0": 1, "jobs.1": 1, "jobs.2": 4}
