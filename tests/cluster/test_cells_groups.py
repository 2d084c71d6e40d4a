"""A group subscribing to a pattern over a cluster of several cells (decision 0038).

Goal: a consumer subscribing to ``orders.*`` through any agent of a cluster whose
topics are spread over three cells gets every matching topic's records, of every cell,
each exactly once, acks them (the commit lands in each topic's cell), and sees a
single group in ``list_groups`` and ``describe_group`` (one member, every topic);
members subscribing through different agents share the records with each key held by
one member at a time; ``delete_group`` and ``reset_offsets`` act on every cell or on
none; a member whose part in another cell fails (that cell's agent stops) gets
``Unavailable`` and can subscribe again. Method: agents in the test process
(agents.py) on a real etcd and moto's S3 server; waits are on conditions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Cluster, wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server
from test_cells import _spread, running_cells

import odradek
from odradek.errors import InvalidRequest, NotOwner, Unavailable
from odradek.groups import Delivery

TOPICS = [f"orders.{index}" for index in range(6)]
KEYS = 5
PER_TOPIC = 10


@pytest.fixture
def cluster(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[Cluster]:
    yield from running_cells(tmp_path, etcd_server, moto_s3)


def _filled(cluster: Cluster) -> tuple[dict[str, str], odradek.RemoteClient]:
    """The cells spread, the topics created in turn (two in each cell) and filled with
    keyed records whose values say topic, key and rank."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS:
        client.create_topic(topic)
    for topic in TOPICS:
        client.append(
            topic,
            [{"key": f"k{n % KEYS}", "value": f"{topic}/k{n % KEYS}/{n}"} for n in range(PER_TOPIC)],
        )
    cells = {cluster.agents[0].agent.cell_of(topic) for topic in TOPICS}
    assert len(cells) == 3, f"the topics are in cells {cells}"
    return owners, client


def _drain(consumer: object, want: int, *, ack: bool = True) -> list[Delivery]:
    """Poll (acking what comes) until ``want`` deliveries came."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 60
    while len(got) < want:
        assert time.monotonic() < deadline, f"{len(got)} of {want} deliveries came"
        batch = consumer.poll(7, timeout=1)  # type: ignore[attr-defined]
        assert len(batch) <= 7
        got.extend(batch)
        if ack and batch:
            assert consumer.ack(batch).ok  # type: ignore[attr-defined]
    return got


def test_a_pattern_subscription_through_one_agent_reads_and_commits_every_cell(cluster: Cluster) -> None:
    _filled(cluster)
    through = odradek.connect(cluster.agents[1].url)  # one agent: every other cell is its peers'
    consumer = through.subscribe("orders.*", group="g")
    delivered = _drain(consumer, len(TOPICS) * PER_TOPIC)
    counted = Counter(delivery.value for delivery in delivered)
    assert len(counted) == len(TOPICS) * PER_TOPIC and set(counted.values()) == {1}
    for topic in TOPICS:  # each key's records in order
        for key in range(KEYS):
            ranks = [
                int(d.value.decode().rsplit("/", 1)[1])
                for d in delivered
                if d.topic == topic and d.key == f"k{key}".encode()
            ]
            assert ranks == sorted(ranks)
    assert consumer.poll(10, timeout=0) == []
    assert through.list_groups() == ["g"]
    info = through.describe_group("g")
    assert [member.member for member in info.members] == [consumer.member_id]
    assert sorted(topic.topic for topic in info.topics) == TOPICS
    assert {topic.topic: topic.committed for topic in info.topics} == dict.fromkeys(TOPICS, PER_TOPIC)
    assert info.lag == 0 and info.counters["acked"] == len(TOPICS) * PER_TOPIC
    with pytest.raises(InvalidRequest, match="member"):
        through.delete_group("g")  # it has a member: no cell is changed
    assert through.describe_group("g").members
    consumer.close()
    through.close()


def test_members_through_different_agents_share_the_records(cluster: Cluster) -> None:
    _, client = _filled(cluster)
    first = odradek.connect(cluster.agents[0].url).subscribe("orders.*", group="shared")
    second = odradek.connect(cluster.agents[2].url).subscribe("orders.*", group="shared")
    held_first = first.poll(1_000, timeout=5)
    held_second = second.poll(1_000, timeout=5)
    # A key is held by one member at a time: the second gets no key the first holds.
    keys_first = {(d.topic, d.key) for d in held_first}
    assert held_first and not keys_first & {(d.topic, d.key) for d in held_second}
    info = client.describe_group("shared")
    assert sorted(member.member for member in info.members) == sorted([first.member_id, second.member_id])
    assert sum(member.in_flight for member in info.members) == len(held_first) + len(held_second)
    # The first leaves without acking: its records go to the second.
    first.close()
    rest = _drain(second, len(TOPICS) * PER_TOPIC - len(held_second), ack=True)
    assert second.ack(held_second).ok
    values = Counter(d.value for d in [*held_second, *rest])
    assert len(values) == len(TOPICS) * PER_TOPIC
    second.close()
    assert client.describe_group("shared").lag == 0


def test_a_nack_redelivers_in_its_cell_and_delete_and_reset_act_on_every_cell(cluster: Cluster) -> None:
    _, client = _filled(cluster)
    consumer = client.subscribe("orders.*", group="g", start="earliest")
    held = _drain(consumer, len(TOPICS) * KEYS, ack=False)  # each key's first record: all it may hold
    remote_topic = next(t for t in TOPICS if cluster.agents[0].agent.cell_of(t) != "_cell")
    nacked = [d for d in held if d.topic == remote_topic]
    assert consumer.nack(nacked, delay=0).settled == len(nacked) == KEYS
    assert consumer.ack([d for d in held if d.topic != remote_topic]).ok
    rest = _drain(consumer, len(TOPICS) * PER_TOPIC - len(held) + len(nacked))
    again = [d for d in rest if d.attempt == 2]
    assert sorted((d.topic, d.offset) for d in again) == sorted((d.topic, d.offset) for d in nacked)
    consumer.close()
    plan = client.reset_offsets("g", "earliest", dry_run=True)
    assert sorted(row.topic for row in plan) == TOPICS and {row.new for row in plan} == {0}
    client.reset_offsets("g", "earliest")
    assert {t.topic: t.committed for t in client.describe_group("g").topics} == dict.fromkeys(TOPICS, 0)
    client.delete_group("g")
    assert client.list_groups() == []
    for agent in cluster.agents:  # gone from every cell
        for node in agent.role.cells.values():
            assert not node.groups.exists("g")


def test_a_member_whose_part_in_another_cell_fails_gets_unavailable_and_subscribes_again(
    cluster: Cluster,
) -> None:
    owners, _ = _filled(cluster)
    called = cluster.agents[0]
    consumer = odradek.connect(called.url).subscribe("orders.*", group="g")
    assert consumer.poll(1, timeout=5)
    peer_id = next(agent for cell, agent in owners.items() if agent != called.agent.settings.agent_id)
    peer = next(agent for agent in cluster.agents if agent.agent.settings.agent_id == peer_id)
    peer.stop()  # its door drains: its part of the member ends
    with pytest.raises(Unavailable):
        for _ in range(30):
            consumer.poll(10, timeout=1)
    wait_for(
        lambda: all(any(cell in a.cells() for a in cluster.agents if a is not peer) for cell in owners),
        "the stopped agent's cell taken over",
    )
    again = odradek.connect(called.url).subscribe("orders.*", group="g")
    rest = _drain(again, 1)  # every cell serves the member again
    assert rest
    again.close()


def test_dead_letters_of_a_group_in_another_cell_are_read_through_any_agent(cluster: Cluster) -> None:
    """A defect found building pattern subscriptions: a group's dead letters were
    written to a topic its cell's engine created without placing it, so a group outside
    the home cell dead-lettered into a topic no agent listed or read."""
    _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS[:3]:
        client.create_topic(topic)
    topic = next(t for t in TOPICS[:3] if cluster.agents[0].agent.cell_of(t) != "_cell")
    client.append(topic, [{"key": "bad", "value": "poison"}])
    consumer = client.subscribe(topic, group="dl", max_deliveries=1)
    (delivery,) = consumer.poll(1, timeout=5)
    consumer.nack(delivery, delay=0)
    wait_for(lambda: client.describe_group("dl").dead_lettered == 1, "the record dead-lettered")
    assert "dlq.dl" in client.list_topics()
    letters = [row for batch in client.read("dlq.dl", wait=0) for row in batch.to_pylist()]
    assert [(row["key"], row["value"]) for row in letters] == [(b"bad", b"poison")]
    consumer.close()


def test_a_pattern_groups_dead_letters_of_every_cell_go_to_the_one_topic(cluster: Cluster) -> None:
    """Each cell's part of a group dead-letters into the one dead-letter topic, in
    whichever cell holds it: the others append through the agent serving it."""
    _, client = _filled(cluster)
    client.create_topic("dlq.pg")  # placed in some cell: most parts write through a peer
    consumer = client.subscribe("orders.*", group="pg", max_deliveries=1)
    held = _drain(consumer, len(TOPICS) * KEYS, ack=False)
    assert consumer.nack(held, delay=0).settled == len(held)
    wait_for(
        lambda: client.describe_group("pg").dead_lettered == len(held), "every cell's dead letters written"
    )
    letters = [row for batch in client.read("dlq.pg", wait=0) for row in batch.to_pylist()]
    assert sorted(row["value"] for row in letters) == sorted(d.value for d in held)
    assert "dlq.pg" in client.list_topics() and client.list_topics().count("dlq.pg") == 1
    consumer.close()


def test_append_many_through_an_agent_that_redirects_writes_every_batch_once(cluster: Cluster) -> None:
    """A defect found measuring pattern subscriptions: ``append_many`` given a
    generator, through an agent that did not serve the topic's cell, followed the
    redirect and called again with what was left of the generator: the batches sent to
    the first agent (refused there) were never written, and the call did not fail."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    client.create_topic("many")
    serving = owners[cluster.agents[0].agent.cell_of("many")]
    elsewhere = next(a for a in cluster.agents if a.agent.settings.agent_id != serving)
    other = odradek.connect(",".join([elsewhere.url, *(a.url for a in cluster.agents if a is not elsewhere)]))
    batches = ([{"key": f"k{n}", "value": f"{b}/{n}"} for n in range(100)] for b in range(5))
    results = other.append_many("many", batches, window=4)
    assert [result.count for result in results] == [100] * 5
    assert client.describe_topic("many").next_offset == 500
    values = [v.decode() for batch in client.read("many", wait=0) for v in batch.column("value").to_pylist()]
    assert values == [f"{b}/{n}" for b in range(5) for n in range(100)]


def test_an_agent_whose_lease_ran_out_hands_a_member_nothing_more(cluster: Cluster) -> None:
    """A defect the chaos run's consumer group found: an owner paused past its lease
    (a zombie) that woke up went on answering its members' polls from the cell it had
    lost, until it noticed, handing out records its successor had since delivered and
    settled. A member's polls are now answered only while the agent's lease is safe:
    the subscription ends with ``NotOwner`` and the member subscribes again. Method: the
    agent serving the topic's cell stops renewing its lease and is kept from closing
    the cell (as a woken zombie has not yet), so its door still holds the cell's node."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    client.create_topic("zombie")
    cell = cluster.agents[0].agent.cell_of("zombie")
    stale = next(a for a in cluster.agents if a.agent.settings.agent_id == owners[cell])
    client.append("zombie", [{"key": f"k{n}", "value": f"v{n}"} for n in range(4)])
    consumer = odradek.connect(stale.url).subscribe("zombie", group="z")
    first = consumer.poll(1, timeout=5)
    assert len(first) == 1 and consumer.ack(first).ok
    stop_owning = stale.role.stop_owning
    stale.role.stop_owning = lambda graceful, cell="_cell": None  # type: ignore[method-assign]
    try:
        loop, lease = stale.agent._loop, stale.agent._cluster
        assert loop is not None and lease is not None
        loop.call_soon_threadsafe(lease.stop_keepalive)
        wait_for(lambda: not stale.agent.is_owner(cell), "the agent's lease no longer safe")
        assert stale.flight.cell_node(cell) is not None  # the door still has the cell's node
        with pytest.raises(NotOwner):
            consumer.poll(10, timeout=1)
    finally:
        stale.role.stop_owning = stop_owning  # type: ignore[method-assign]
