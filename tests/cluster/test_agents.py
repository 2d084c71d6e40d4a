"""Cluster agents elect one owner in etcd, redirect, hand over and fail over.

Goal: the behaviour decision record 0013 promises, against a real etcd and a real S3
server (moto): exactly one agent serves; standbys answer NotOwner naming it; a client
given every agent follows the owner through a graceful handover, a lost lease (the
agent stops renewing, as in a partition) and the owner's death; nothing acknowledged is
lost or doubled, and idempotent retries are written once across the move.
Method: agents in the test process (agents.py), each with its own cache directory, on
one store prefix; the data checked by reading everything back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from agents import Cluster, wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, free_ports, unique_prefix

import odradek
from odradek import limits
from odradek.cli.cluster import render
from odradek.cluster.status import cluster_status
from odradek.errors import NotOwner, Unavailable
from odradek.storage.agent import StoreSettings

SETTINGS = StoreSettings(flush_seconds=0.002)


@pytest.fixture
def cluster(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[Cluster]:
    made = Cluster(tmp_path, etcd_server.url, moto_s3.open(unique_prefix()), store_settings=SETTINGS)
    try:
        yield made
    finally:
        made.stop()


def test_one_agent_owns_and_the_standbys_name_it(cluster: Cluster) -> None:
    owner = cluster.owner()
    standbys = cluster.standbys()
    assert len(standbys) == 2
    for standby in standbys:
        status = standby.status()
        assert status["role"] == "standby"
        assert status["owner"] == owner.agent.settings.agent_id
        assert status["owner_url"] == owner.url
        assert {a["agent"] for a in status["agents"]} == {"a0", "a1", "a2"}
        with odradek.connect(standby.url) as direct, pytest.raises(NotOwner) as refused:
            direct._action("list_topics", {})  # one call, no redirect followed
        assert refused.value.owner == owner.url
        assert refused.value.agent == owner.agent.settings.agent_id
    assert owner.status()["role"] == "owner"


def test_a_client_of_one_standby_follows_the_redirect(cluster: Cluster) -> None:
    owner = cluster.owner()
    standby = cluster.standbys()[0]
    with odradek.connect(standby.url) as client:
        client.create_topic("orders")
        result = client.append("orders", [{"key": "k", "value": "v"}])
        assert result.base_offset == 0
        assert client.url == owner.url
        assert client.list_topics() == ["orders"]


def _append_all(client: odradek.RemoteClient, values: range, acked: list[str], producer: str) -> None:
    for number in values:
        value = f"v{number}"
        client.append("t", [{"key": f"k{number % 7}", "value": value}], producer=(producer, number))
        acked.append(value)


def _values(client: odradek.RemoteClient) -> list[str]:
    table = pa.Table.from_batches(list(client.read("t", wait=0)))
    return [value.decode() for value in table.column("value").to_pylist()]


@pytest.mark.parametrize("how", ["handover", "lease_lost", "killed"])
def test_appends_go_on_across_a_change_of_owner_and_nothing_is_lost(cluster: Cluster, how: str) -> None:
    client = odradek.connect(cluster.urls)
    client.create_topic("t")
    acked: list[str] = []
    _append_all(client, range(0, 50), acked, "p")
    client.append("t", [{"key": "q", "value": "q0"}], producer=("q", 0))
    acked.append("q0")
    owner = cluster.owner()
    if how == "handover":  # SIGTERM: hand over, then leave
        stopper = threading.Thread(target=owner.stop)
        stopper.start()
    elif how == "lease_lost":  # a partition from etcd: no renewal gets through
        loop = owner.agent._loop
        assert loop is not None and owner.agent._cluster is not None
        loop.call_soon_threadsafe(owner.agent._cluster.stop_keepalive)
    else:  # the process dies: its lease expires after the TTL; its node stays as it was
        loop = owner.agent._loop
        assert loop is not None and owner.agent._cluster is not None
        owner.flight.unserve()  # it answers nothing more, as a dead process
        loop.call_soon_threadsafe(owner.agent._cluster.stop_keepalive)
    number, moved_at = 50, None
    while moved_at is None or number < moved_at + 20:  # until 20 appends after the move
        _append_all(client, range(number, number + 1), acked, "p")
        number += 1
        if moved_at is None and not owner.is_owner():
            moved_at = number
        assert number < 100_000, "the owner never changed"
    if how == "handover":
        stopper.join()
    new_owner = cluster.owner()
    assert new_owner is not owner
    values = _values(client)
    assert values == acked  # every acknowledged append once, in order, nothing else
    # An idempotent retry of an append the old owner acknowledged is written once.
    again = client.append("t", [{"key": "q", "value": "q0"}], producer=("q", 0))
    assert again.duplicate
    assert _values(client) == acked
    if how == "lease_lost":  # the old owner stands by again, on a new lease
        # (it says "standby" as soon as it steps down, before it has joined again)
        wait_for(
            lambda: owner.agent.counters.joins == 2 and owner.status()["role"] == "standby",
            "the old owner joined again and standing by",
        )
        assert owner.agent.counters.losses == 1
    client.close()


def test_an_agent_with_an_empty_cache_takes_over(cluster: Cluster, tmp_path: Path) -> None:
    client = odradek.connect(cluster.urls)
    client.create_topic("t")
    acked: list[str] = []
    _append_all(client, range(0, 20), acked, "p")
    for standby in cluster.standbys():
        standby.stop()
    fresh = cluster.add("fresh", "fresh-cache")
    assert not fresh.is_owner()
    cluster.owner().stop()
    wait_for(fresh.is_owner, "the fresh agent owning the data")
    client.close()
    with odradek.connect(cluster.urls) as client:  # every agent, the fresh one among them
        assert _values(client) == acked


def test_a_plain_append_in_flight_when_the_owner_dies_is_unavailable_not_lost(cluster: Cluster) -> None:
    """An append without a producer is not retried after an unknown outcome: it raises
    Unavailable (or succeeds); what the client saw acknowledged is in the log."""
    client = odradek.connect(cluster.urls)
    client.create_topic("t")
    acked: list[str] = []
    owner = cluster.owner()
    loop = owner.agent._loop
    assert loop is not None and owner.agent._cluster is not None
    loop.call_soon_threadsafe(owner.agent._cluster.stop_keepalive)
    outcomes = {"ok": 0, "unavailable": 0}
    for number in range(200):
        try:
            client.append("t", [{"key": "k", "value": f"v{number}"}])
        except Unavailable:
            outcomes["unavailable"] += 1
            continue
        acked.append(f"v{number}")
        outcomes["ok"] += 1
        if number > 20 and cluster.owner(deadline=60) is not owner:
            break
    values = _values(client)
    assert [value for value in values if value in set(acked)] == acked
    assert set(values) - set(acked) <= {f"v{n}" for n in range(200)}
    client.close()


def test_after_a_plain_append_meets_an_agent_out_of_reach_the_next_call_goes_elsewhere(
    cluster: Cluster,
) -> None:
    """A plain append to an agent out of reach raises Unavailable (its outcome unknown,
    it is not sent again), and the client's next call starts at the next agent, which
    leads it to the owner, instead of meeting the dead agent again until the owner
    watch notices (a second later)."""
    cluster.owner()
    (dead,) = free_ports(1)  # nothing listens there: an agent that died
    client = odradek.connect(f"grpc://127.0.0.1:{dead},{cluster.urls}")
    with pytest.raises(Unavailable):
        client.append("t", [{"key": "k", "value": "lost?"}])
    client.create_topic("t")  # at once: the client left the dead agent
    assert client.append("t", [{"key": "k", "value": "v"}]).base_offset == 0
    client.close()


def test_every_joined_agent_is_ready_and_one_without_a_live_lease_is_not(cluster: Cluster) -> None:
    """/readyz of a cluster agent (ClusterAgent.readiness): the owner and the standbys
    take clients (a standby leads them to the owner); an agent whose lease is lost is
    not ready until it joined again."""
    owner = cluster.owner()
    wait_for(lambda: all(agent.agent.readiness()[0] for agent in cluster.agents), "every agent ready")
    ready, why = owner.agent.readiness()
    assert ready and "owner" in why
    standby = cluster.standbys()[0]
    assert "standby" in standby.agent.readiness()[1]
    loop = owner.agent._loop
    assert loop is not None and owner.agent._cluster is not None
    loop.call_soon_threadsafe(owner.agent._cluster.stop_keepalive)
    wait_for(lambda: not owner.agent.readiness()[0], "the agent without a lease not ready")
    wait_for(lambda: owner.agent.readiness()[0], "the agent ready again once it joined again")


def test_cluster_status_says_how_far_the_owners_checkpoints_and_compaction_lag(cluster: Cluster) -> None:
    """cluster_status on the owner carries "store": the latest manifest, its age and the
    journal landed since (what a takeover would replay), and "compaction": the dirty bytes
    of its compacted topics against their trigger, the rounds and how long one has been
    due; standbys have neither. `odradek cluster status` shows both; a round due for
    longer than its bound is a warning, and the dirty bytes fall once a round ran."""
    owner = cluster.owner()
    client = odradek.connect(cluster.urls)
    client.create_topic("t")
    for number in range(20):
        client.append("t", [{"key": "k", "value": f"v{number}"}])
    # min_compaction_lag holds the records back from the owner's own rounds until altered.
    client.create_topic("prices", cleanup="compact", segment_bytes="64KiB", min_compaction_lag="1d")
    for version in range(40):
        client.append("prices", [{"key": f"k{j}", "value": f"{version}-{j}".ljust(200)} for j in range(25)])
    status = owner.status()
    store = status["store"]
    assert store["manifest"].startswith("manifests/") and store["checkpoints"] >= 1
    assert store["journal_objects"] >= 0 and store["journal_bytes"] >= 0 and store["seconds"] >= 0
    assert store["failures"] == 0
    assert status["compaction"]["topics"] == 1  # "t" is not compacted
    # The web console's cluster page shows the same (serve passes it the door's view).
    console = owner.flight.cluster_status()
    assert console["role"] == "owner" and console["compaction"]["topics"] == 1 and "store" in console
    for standby in cluster.standbys():
        assert "store" not in standby.status() and "compaction" not in standby.status()
        assert "compaction" not in standby.flight.cluster_status()
    # odradek cluster status asks the owner for it: the lag of its checkpoints and compaction.
    report = asyncio.run(cluster_status(cluster.endpoints, cluster.name))
    assert report.store is not None and int(report.store["checkpoints"]) >= 1, report.warnings
    assert report.compaction is not None, report.warnings
    (before,) = report.compaction["worst"]
    assert before["topic"] == "prices" and before["dirty_bytes"] > 0 and before["dirty_ratio"] == 1.0
    assert report.compaction["dirty_bytes"] == before["dirty_bytes"]
    assert report.compaction["topics_over_trigger"] == 1 and report.compaction["topics_behind"] == 0
    assert not any("compaction" in warning for warning in report.warnings)
    assert report.to_json()["compaction"] == report.compaction
    text = render(report)
    assert "checkpoints: the latest began" in text
    assert "compaction: 1 compacted topic," in text and "\nprices " in text

    # A round found due long ago and not finished since: the owner counts the topic
    # behind, and the report warns (the topic's compaction lock held, so that the owner's
    # compaction thread cannot finish a round meanwhile).
    assert owner.node is not None
    topic = owner.node.engine._topic("prices")
    with topic._compaction_lock:
        topic.compactor.due_since = None
        assert topic.compactor.due(time.time() - 2 * limits.compaction_lag_warning_seconds)
        report = asyncio.run(cluster_status(cluster.endpoints, cluster.name))
    assert report.compaction is not None and report.compaction["topics_behind"] == 1
    assert report.compaction["behind_seconds_max"] >= 2 * limits.compaction_lag_warning_seconds
    assert any("compaction is behind on 1 compacted topic" in warning for warning in report.warnings)
    assert report.healthy  # a warning, not a problem

    client.alter_topic("prices", min_compaction_lag=0)
    owner.node.engine.compact(force=True)
    client.close()
    report = asyncio.run(cluster_status(cluster.endpoints, cluster.name))
    assert report.compaction is not None, report.warnings
    (after,) = report.compaction["worst"]
    assert after["dirty_bytes"] < before["dirty_bytes"] and after["sealed_bytes"] < before["sealed_bytes"]
    assert after["rounds"] >= 1 and after["last_round_at"] is not None and after["behind_seconds"] == 0
    assert report.compaction["topics_behind"] == 0
    assert not any("compaction" in warning for warning in report.warnings)


def test_each_agent_exports_its_role_in_its_metrics(cluster: Cluster) -> None:
    from prometheus_client import generate_latest

    from odradek.protocols.metrics import Metrics, cluster_collector

    owner = cluster.owner()
    for agent in cluster.agents:
        metrics = Metrics(None)
        metrics.add(cluster_collector(agent.agent))
        if agent.node is not None:
            metrics.attach(agent.node)
        text = generate_latest(metrics.registry).decode()
        agent_id = agent.agent.settings.agent_id
        expected = 1.0 if agent is owner else 0.0
        assert f'odradek_cluster_owner{{agent="{agent_id}"}} {expected}' in text
        assert "odradek_cluster_agents 3.0" in text
        assert f"odradek_cluster_takeovers_total {1.0 if agent is owner else 0.0}" in text
        assert ("odradek_topics_unavailable" in text) == (agent is owner)  # the data's metrics
        metrics.detach()
        assert "odradek_topics_unavailable" not in generate_latest(metrics.registry).decode()


def test_a_handover_moves_the_data_to_the_agent_named_and_appends_go_on(cluster: Cluster) -> None:
    client = odradek.connect(cluster.urls)
    client.create_topic("t")
    acked: list[str] = []
    _append_all(client, range(0, 10), acked, "p")
    owner = cluster.owner()
    target = cluster.standbys()[-1]
    target_id = target.agent.settings.agent_id
    assert client._hand_over(target_id) == {"from": owner.agent.settings.agent_id, "to": target_id}
    wait_for(target.is_owner, "the agent named owning the data")
    # The former owner names the new one from then on, steadily: a defect made it name
    # no owner every half second for the ten seconds the handover's key lives.
    wait_for(lambda: owner.agent.not_owner().agent == target_id, "the former owner naming the new one")
    named = set()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        named.add(owner.agent.not_owner().agent)
        time.sleep(0.05)
    assert named == {target_id}, named
    _append_all(client, range(10, 20), acked, "p")
    assert _values(client) == acked
    assert owner.agent.running and owner.status()["role"] == "standby"  # it stayed, standing by
    assert owner.agent.counters.handovers == 1
    with pytest.raises(NotOwner):  # only the owner hands over
        owner.agent.hand_over(None)
    with pytest.raises(odradek.InvalidRequest, match="not a live agent"):
        target.agent.hand_over("nobody")
    client.close()
