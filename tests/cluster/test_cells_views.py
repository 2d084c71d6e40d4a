"""Views over a cluster whose topics are spread over cells (decision 0041).

Goal: a view created through any agent lives in the home cell and folds the records
of every matching topic of every cell (each cell's topics read where they are, here or
through the agent serving them), including topics created and records appended
after it; ``describe_view`` gives every topic's offset and lag; an append to a topic
of another cell with ``wait_for=["view:..."]`` returns once the view applied it
(read-your-writes across cells); while a cell's agent is gone the view goes on with
the other cells and names the topics it cannot read, then catches up once the cell
is served again; an append waits for a group where the group's part reading its
topic is and for a view in the home cell.
Method: agents in the test process (agents.py) on a real etcd and moto's S3 server;
the built-in reducers; waits are on conditions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Cluster, wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server
from test_cells import _spread, running_cells

import odradek
from odradek.cluster.keys import HOME_CELL
from odradek.errors import InvalidRequest, WaitTimeout

TOPICS = [f"orders.{index}" for index in range(6)]


@pytest.fixture
def cluster(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[Cluster]:
    yield from running_cells(tmp_path, etcd_server, moto_s3)


def _count(client: odradek.RemoteClient, key: str) -> int:
    state = client.view_get("counts", key)
    return int(state) if state is not None else 0


def test_a_view_folds_every_cells_topics_and_an_append_waits_for_it_across_cells(cluster: Cluster) -> None:
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS:
        client.create_topic(topic)  # in turn, two in each cell
    cells = {topic: cluster.agents[0].agent.cell_of(topic) for topic in TOPICS}
    assert len(set(cells.values())) == 3, cells
    for topic in TOPICS:  # a key in every topic: the view's count is over all of them
        client.append(topic, [{"key": "shared", "value": topic}, {"key": topic, "value": "own"}])
    client.create_view("counts", "orders.*", "odradek.views.reducers:count")
    wait_for(lambda: _count(client, "shared") == len(TOPICS), "every cell's records folded")
    assert all(_count(client, topic) == 1 for topic in TOPICS)
    described = client.describe_view("counts")
    assert described["offsets"] == {topic: 2 for topic in TOPICS}
    assert described["lag"] == {topic: 0 for topic in TOPICS}
    # Read-your-writes through any agent, on a topic of a cell the home cell's agent may not serve.
    far = next(topic for topic in TOPICS if cells[topic] != HOME_CELL)
    with odradek.connect(",".join(a.url for a in reversed(cluster.agents))) as other:
        for number in range(5):
            record = {"key": "shared", "value": f"more {number}"}
            other.append(far, [record], wait_for=["view:counts"], timeout=30)
            assert _count(other, "shared") == len(TOPICS) + number + 1
    client.create_topic("orders.late")  # created after the view: folded from its first record
    client.append("orders.late", [{"key": "shared", "value": "late"}])
    wait_for(lambda: _count(client, "shared") == len(TOPICS) + 6, "a topic created after the view")
    assert client.list_views() == ["counts"]
    home = next(agent for agent in cluster.agents if agent.agent.settings.agent_id == owners[HOME_CELL])
    assert home.node is not None and home.node.views.list() == ["counts"]  # it lives in the home cell
    client.close()


def test_a_view_goes_on_while_a_cell_is_unserved_and_catches_up(cluster: Cluster) -> None:
    owners = _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS:
        client.create_topic(topic)
        client.append(topic, [{"key": "k", "value": "1"}])
    client.create_view("counts", "orders.*", "odradek.views.reducers:count")
    wait_for(lambda: _count(client, "k") == len(TOPICS), "every cell's records folded")
    victim_cell = next(cell for cell in owners if cell != HOME_CELL)
    gone = [topic for topic in TOPICS if cluster.agents[0].agent.cell_of(topic) == victim_cell]
    victim = next(agent for agent in cluster.agents if agent.agent.settings.agent_id == owners[victim_cell])
    victim.stop()  # its cell is taken over by a survivor after the lease
    kept = [topic for topic in TOPICS if topic not in gone]
    client.append(kept[0], [{"key": "k", "value": "2"}])
    wait_for(lambda: _count(client, "k") == len(TOPICS) + 1, "the other cells' records, meanwhile")
    for topic in gone:  # appended once a survivor serves the cell
        wait_for(lambda topic=topic: _try_append(client, topic), f"an append to {topic} after the failover")
    wait_for(lambda: _count(client, "k") == len(TOPICS) + 1 + len(gone), "the cell's records, caught up")
    wait_for(lambda: "unavailable" not in client.describe_view("counts"), "every topic read again")
    client.close()


def _try_append(client: odradek.RemoteClient, topic: str) -> bool:
    try:
        client.append(topic, [{"key": "k", "value": "3"}])
    except odradek.OdradekError:
        return False
    return True


def test_an_append_waits_for_a_group_in_its_topics_cell_and_a_view_in_the_home_cell(cluster: Cluster) -> None:
    """Each waiter is answered where it lives: a view in the home cell, a group in the
    cell of the topic it reads (with the group's consumer acking meanwhile); a waiter
    that does not finish is named in the WaitTimeout, and a group that does not read
    the topic is refused before anything is written."""
    _spread(cluster)
    client = odradek.connect(cluster.urls)
    for topic in TOPICS:
        client.create_topic(topic)
    far = next(topic for topic in TOPICS if cluster.agents[0].agent.cell_of(topic) != HOME_CELL)
    client.create_view("counts", "orders.*", "odradek.views.reducers:count")
    consumer = client.subscribe(far, group="billing")  # the group lives in far's cell
    stop = threading.Event()

    def ack() -> None:
        while not stop.is_set():
            consumer.ack(consumer.poll(10, timeout=0.2))

    acker = threading.Thread(target=ack)
    acker.start()
    try:
        with odradek.connect(",".join(a.url for a in reversed(cluster.agents))) as other:
            for number in range(3):
                record = {"key": "shared", "value": f"paid {number}"}
                result = other.append(far, [record], wait_for=["group:billing", "view:counts"], timeout=30)
                assert _count(other, "shared") == number + 1
                info = other.describe_group("billing")
                assert next(t.committed for t in info.topics if t.topic == far) >= result.next_offset
    finally:
        stop.set()
        acker.join()
    consumer.close()  # nobody acks any more: the group never finishes the next append
    with pytest.raises(WaitTimeout) as waited:
        client.append(
            far, [{"key": "shared", "value": "unpaid"}], wait_for=["group:billing", "view:counts"], timeout=1
        )
    assert waited.value.pending == ["group:billing"]
    near = next(topic for topic in TOPICS if cluster.agents[0].agent.cell_of(topic) == HOME_CELL)
    before = client.describe_topic(near).next_offset
    with pytest.raises(InvalidRequest, match="billing"):
        client.append(near, [{"key": "x", "value": "never"}], wait_for=["group:billing"])
    assert client.describe_topic(near).next_offset == before
    client.close()
