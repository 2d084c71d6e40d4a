"""A cluster of several cells: topics spread over agents (decision 0032).

Goal: with ``cells=3`` each of three agents comes to own one cell; topics created
through any agent are placed in the least loaded cell and served by the agent owning
it, which opens the cell's engine on its own prefix of the store; a client given every
agent reaches each topic by following redirects; when an agent dies, its cell is taken
over whole by another agent, and when one joins, a cell is handed over to it; nothing
acknowledged is lost or doubled through either, and idempotent retries are written
once; a wildcard read through any agent has every cell's topics. Method: agents in the
test process (agents.py) on a real etcd and moto's S3 server, each with its own cache
directory; the data checked by reading every topic back; waits are on conditions,
nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from agents import Agent, Cluster, wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix

import odradek
from odradek.cli.cluster import render
from odradek.cluster.etcd import EtcdUnavailable
from odradek.cluster.keys import cell_names
from odradek.cluster.status import cluster_status
from odradek.errors import InvalidRequest, InvalidSchema, NotOwner
from odradek.storage.agent import StoreSettings

SETTINGS = StoreSettings(flush_seconds=0.002)
CELLS = cell_names(3)
TOPICS = [f"t{index}" for index in range(6)]


def running_cells(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[Cluster]:
    """Agents in the test process with three cells (the tests of cells' fixture)."""
    made = Cluster(tmp_path, etcd_server.url, moto_s3.open(unique_prefix()), store_settings=SETTINGS, cells=3)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def cluster(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[Cluster]:
    yield from running_cells(tmp_path, etcd_server, moto_s3)


def _spread(cluster: Cluster, agents: list[Agent] | None = None) -> dict[str, str]:
    """Wait until every cell has exactly one owner among ``agents`` (default: the running
    ones) and none owns two more than another; the owner of each cell."""
    owners: dict[str, str] = {}

    def settled() -> bool:
        running = agents if agents is not None else [agent for agent in cluster.agents if agent.agent.running]
        owned = {agent.agent.settings.agent_id: agent.cells() for agent in running}
        counted = Counter(cell for cells in owned.values() for cell in cells)
        if sorted(counted) != sorted(CELLS) or max(counted.values()) != 1:
            return False
        sizes = [len(cells) for cells in owned.values()]
        if max(sizes) - min(sizes) > 1:
            return False
        owners.clear()
        owners.update({cell: agent for agent, cells in owned.items() for cell in cells})
        return True

    wait_for(settled, "every cell owned once, spread over the agents")
    return owners


def _append(client: odradek.RemoteClient, topic: str, number: int, acked: dict[str, list[str]]) -> None:
    value = f"{topic}-v{number}"
    client.append(topic, [{"key": f"k{number % 5}", "value": value}], producer=(f"p-{topic}", number))
    acked[topic].append(value)


def _values(client: odradek.RemoteClient, topic: str) -> list[str]:
    table = pa.Table.from_batches(list(client.read(topic, wait=0)))
    return [value.decode() for value in table.column("value").to_pylist()]


def _started(
    cluster: Cluster, topics: list[str], rounds: int = 0
) -> tuple[dict[str, str], odradek.RemoteClient, dict[str, list[str]]]:
    """The cells spread, a client given every agent, ``topics`` created in turn (so
    placed round-robin over the cells) and ``rounds`` appends to each."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in topics:
        client.create_topic(topic)
    acked: dict[str, list[str]] = {topic: [] for topic in topics}
    for number in range(rounds):
        for topic in topics:
            _append(client, topic, number, acked)
    return owners, client, acked


def _kill(agent: Agent) -> None:
    """The process dies: it answers nothing more, its lease expires after the TTL, and
    it never joins again."""
    loop = agent.agent._loop
    assert loop is not None and agent.agent._cluster is not None

    async def dead(cluster: object) -> None:
        raise EtcdUnavailable("this agent was killed")

    agent.agent._join = dead  # type: ignore[method-assign]
    for cell in agent.cells():
        agent.flight.unserve(cell)
    agent.flight.unserve()
    loop.call_soon_threadsafe(agent.agent._cluster.stop_keepalive)


def test_topics_spread_over_the_cells_and_each_agent_serves_its_own(cluster: Cluster) -> None:
    owners, client, acked = _started(cluster, TOPICS, rounds=10)
    assert len(set(owners.values())) == 3  # one cell each
    # Placed in the least loaded cell in turn: two topics per cell.
    placed = {topic: cluster.agents[0].agent.cell_of(topic) for topic in TOPICS}
    assert Counter(placed.values()) == dict.fromkeys(CELLS, 2)
    for agent in cluster.agents:  # every agent's view agrees, and each serves its cell's topics only
        wait_for(lambda agent=agent: {t: agent.agent.cell_of(t) for t in TOPICS} == placed, "views agree")
        for cell in agent.cells():
            node = agent.node if cell == "_cell" else agent.role.cells[cell]
            assert node is not None
            assert node.engine.list_topics() == sorted(t for t in TOPICS if placed[t] == cell)
    by_agent = {agent.agent.settings.agent_id: agent for agent in cluster.agents}
    for topic in TOPICS:  # one call to an agent not serving the topic names the one that does
        owner = by_agent[owners[placed[topic]]]
        other = next(agent for agent in cluster.agents if agent is not owner)
        with odradek.connect(other.url) as direct, pytest.raises(NotOwner) as refused:
            direct._action("describe_topic", {"name": topic})
        assert refused.value.owner == owner.url
        assert _values(client, topic) == acked[topic]
    # Any agent lists every topic of the cluster, and a wildcard read through any agent
    # has every cell's (decision 0035).
    for agent in cluster.agents:
        with odradek.connect(agent.url) as direct:
            assert direct.list_topics() == TOPICS
            read = pa.Table.from_batches(list(direct.read("*", wait=0)))
            by_topic = {topic: [] for topic in TOPICS}
            for topic, value in zip(read.column("topic").to_pylist(), read.column("value").to_pylist()):
                by_topic[topic].append(value.decode())
            assert by_topic == {topic: acked[topic] for topic in TOPICS}
    # A deleted topic is gone from its cell and from the placements; created again, it
    # is placed anew.
    client.delete_topic("t0")
    wait_for(lambda: all(agent.agent.cell_of("t0") == "_cell" for agent in cluster.agents), "t0 unplaced")
    assert "t0" not in client.list_topics()
    client.create_topic("t0")
    assert client.describe_topic("t0").next_offset == 0
    # A creation its cell refuses (a bad schema) leaves no placement behind: the topic
    # is not listed and no agent places it anywhere.
    with pytest.raises(InvalidSchema):
        client.create_topic("refused", schema="{not json")
    assert "refused" not in client.list_topics()
    for agent in cluster.agents:
        wait_for(lambda agent=agent: agent.agent.placement_of("refused") is None, "no placement of refused")
    client.create_topic("refused")  # then created as usual
    assert "refused" in client.list_topics()
    client.close()


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_dead_agents_cell_is_taken_over_and_a_new_agent_gets_one(cluster: Cluster, how: str) -> None:
    owners, client, acked = _started(cluster, TOPICS, rounds=5)
    moving = next(topic for topic in TOPICS if cluster.agents[0].agent.cell_of(topic) == "_cell.1")
    client.append(moving, [{"key": "q", "value": "q0"}], producer=("q", 0))
    acked[moving].append("q0")
    # The agent owning cell 1 goes: its cell is taken over whole by one of the others.
    victim = next(agent for agent in cluster.agents if agent.agent.settings.agent_id == owners["_cell.1"])
    if how == "killed":
        _kill(victim)
    else:
        victim.stop()  # SIGTERM's path: its cell handed over before it leaves
    survivors = [agent for agent in cluster.agents if agent is not victim]
    number = 5
    while True:  # appends go on meanwhile, to every topic; the client follows the moves
        for topic in TOPICS:
            _append(client, topic, number, acked)
        number += 1
        if any("_cell.1" in agent.cells() for agent in survivors):
            break
        assert number < 10_000, "cell _cell.1 was never taken over"
    _spread(cluster, survivors)
    # An idempotent retry of an append acknowledged before the move is written once.
    assert client.append(moving, [{"key": "q", "value": "q0"}], producer=("q", 0)).duplicate
    # A new agent joins: a cell is handed over to it (2, 1, 0 becomes 1, 1, 1).
    fresh = cluster.add("fresh")
    owners = _spread(cluster, [*survivors, fresh])
    assert len(fresh.cells()) == 1
    for _ in range(3):
        for topic in TOPICS:
            _append(client, topic, number, acked)
        number += 1
    for topic in TOPICS:
        assert _values(client, topic) == acked[topic]
    client.close()


def test_a_group_consumes_a_topic_of_another_cell(cluster: Cluster) -> None:
    """A group lives in the cell of the topic it subscribes to: a consumer reaching any
    agent is led to the agent serving that cell, and its deliveries and acks are that
    cell's (a group subscribing to a pattern: test_cells_groups.py)."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS[:3]:
        client.create_topic(topic)
    topic = next(topic for topic in TOPICS[:3] if cluster.agents[0].agent.cell_of(topic) != "_cell")
    client.append(topic, [{"key": f"k{number}", "value": f"v{number}"} for number in range(4)])
    consumer = client.subscribe(topic, group="g")
    delivered = consumer.poll(10, timeout=5)
    assert [delivery.value for delivery in delivered] == [b"v0", b"v1", b"v2", b"v3"]
    assert consumer.ack(delivered).ok
    assert consumer.poll(10, timeout=0) == []
    consumer.close()
    serving = next(
        a
        for a in cluster.agents
        if a.agent.settings.agent_id == owners[cluster.agents[0].agent.cell_of(topic)]
    )
    node = serving.role.cells[cluster.agents[0].agent.cell_of(topic)]
    assert node.directory.describe_group("g").topics[0].committed == 4
    client.close()


def test_a_topic_moves_to_another_agents_cell_and_keeps_everything(cluster: Cluster) -> None:
    """``odradek topic move``'s path: the agent serving the topic's cell releases it to
    the store, the agent serving the target cell adopts it by reference and places it
    there; records, key versions and producer sequences go with it, and a client goes
    on appending through the move."""
    owners, client, acked = _started(cluster, TOPICS[:3])
    for number in range(20):
        _append(client, "t0", number, acked)
    view = cluster.agents[0].agent
    assert view.cell_of("t0") == "_cell"
    target = owners["_cell.1"]
    moved = client._move_topic("t0", to=target)
    assert (moved["from_cell"], moved["to_cell"], moved["to_agent"]) == ("_cell", "_cell.1", target)
    wait_for(lambda: all(a.agent.cell_of("t0") == "_cell.1" for a in cluster.agents), "t0 placed in _cell.1")
    by_id = {agent.agent.settings.agent_id: agent for agent in cluster.agents}
    home = by_id[owners["_cell"]].node
    assert home is not None and "t0" not in home.engine.list_topics()
    assert "t0" in by_id[target].role.cells["_cell.1"].engine.list_topics()
    for number in range(20, 30):
        _append(client, "t0", number, acked)
    assert _values(client, "t0") == acked["t0"]
    assert client.key_version("t0", b"k0") == 6  # numbers 0, 5, ..., 25: versions went on
    again = client.append("t0", [{"key": "k4", "value": "t0-v29"}], producer=("p-t0", 29))
    assert again.duplicate  # the producer's sequences moved with the topic
    # By cell, and back; refusals say why and change nothing.
    assert client._move_topic("t0", cell="_cell")["to_cell"] == "_cell"
    with pytest.raises(InvalidRequest, match="already"):
        client._move_topic("t0", cell="_cell")
    with pytest.raises(InvalidRequest, match="serves no cell"):
        client._move_topic("t0", to="nobody")
    assert _values(client, "t0") == acked["t0"]
    client.close()


def test_a_move_cut_short_after_the_release_is_taken_back_when_the_cell_opens_again(
    cluster: Cluster,
) -> None:
    """A client gone between the release and the adoption leaves the topic released,
    still placed in its cell: the agent that opens that cell next (here after a
    handover) adopts it back, and it is served with everything it had."""
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    client.create_topic("t0")
    acked: dict[str, list[str]] = {"t0": []}
    for number in range(10):
        _append(client, "t0", number, acked)
    client._follow_action("release_topic", {"topic": "t0", "cell": "_cell.2"})  # and nothing more
    by_id = {agent.agent.settings.agent_id: agent for agent in cluster.agents}
    home = by_id[owners["_cell"]]
    assert home.node is not None and "t0" in home.node.engine.released_topics()
    home.agent.hand_over(cell="_cell")
    wait_for(lambda: any(a is not home and "_cell" in a.cells() for a in cluster.agents), "home handed over")
    for number in range(10, 15):
        _append(client, "t0", number, acked)
    assert _values(client, "t0") == acked["t0"]
    assert all(agent.agent.cell_of("t0") == "_cell" for agent in cluster.agents)
    client.close()


def test_an_agent_that_lost_its_lease_gives_its_cells_up_and_gets_one_back(cluster: Cluster) -> None:
    """A partition from etcd (no renewal gets through): the agent stops serving its
    cells before its lease can expire, the others take them over, and once it joined
    again on a new lease a cell is handed back to it. Appends go on throughout."""
    owners, client, acked = _started(cluster, TOPICS[:3])
    victim = next(agent for agent in cluster.agents if agent.agent.settings.agent_id == owners["_cell.2"])
    loop = victim.agent._loop
    assert loop is not None and victim.agent._cluster is not None
    loop.call_soon_threadsafe(victim.agent._cluster.stop_keepalive)
    number = 0
    while victim.agent.counters.joins < 2 or not victim.cells():
        for topic in TOPICS[:3]:
            _append(client, topic, number, acked)
        number += 1
        assert number < 20_000, "the agent never got a cell back"
    assert victim.agent.counters.losses >= 1
    _spread(cluster)
    for topic in TOPICS[:3]:
        _append(client, topic, number, acked)
        assert _values(client, topic) == acked[topic]
    client.close()


def test_cluster_status_shows_the_cells_and_an_agent_with_another_count_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    owners = _spread(cluster)
    report = asyncio.run(cluster_status(cluster.endpoints, cluster.name))
    assert report.healthy, report.problems
    assert report.cells == 3
    assert {owner.record.topic: owner.record.agent_id for owner in report.owners} == owners
    assert "3 cells" in render(report).splitlines()[0]
    with pytest.raises(InvalidRequest, match="same --cells"):
        Agent(
            tmp_path / "odd",
            cluster.endpoints,
            cluster.name,
            cluster.store,
            "odd",
            store_settings=SETTINGS,
            cells=2,
        )
    assert report.agents_total == 3


def test_one_client_remembers_which_agent_serves_each_topic(cluster: Cluster) -> None:
    """A client writing topics of every cell learns from the redirects which agent serves
    each topic and goes there first, keeping a connection to each agent; when a topic's
    cell moves, the next redirect corrects it."""
    owners, client, acked = _started(cluster, TOPICS, rounds=5)
    by_id = {agent.agent.settings.agent_id: agent for agent in cluster.agents}
    view = cluster.agents[0].agent
    expected = {topic: by_id[owners[view.cell_of(topic)]].url for topic in TOPICS}
    served = {topic: url for topic, url in client._routes.items() if topic in expected}
    assert served == {topic: expected[topic] for topic in served}
    # Every topic not served by the agent the client started with was redirected at least
    # once (others too, once the client had left that agent).
    assert set(served) >= {topic for topic in TOPICS if expected[topic] != cluster.agents[0].url}
    assert sorted([*client._pool, client.url]) == sorted(agent.url for agent in cluster.agents)
    # The home cell handed over: its topics' next calls are redirected to the new owner.
    home = by_id[owners["_cell"]]
    home.agent.hand_over(cell="_cell")
    wait_for(lambda: any(a is not home and "_cell" in a.cells() for a in cluster.agents), "home handed over")
    for topic in TOPICS:
        _append(client, topic, 5, acked)
        assert _values(client, topic) == acked[topic]
    new_home = next(a for a in cluster.agents if "_cell" in a.cells())
    moved = [topic for topic in TOPICS if view.cell_of(topic) == "_cell"]
    # (redirected there, or forgotten: an agent that just gave a cell up names no owner)
    assert {client._routes.get(topic, new_home.url) for topic in moved} == {new_home.url}
    client.close()
