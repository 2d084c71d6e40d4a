"""Fetches answered from the store by agents that do not serve the topic's cell
(engine/replica.py, decision 0042).

Goal: what a reader of a cluster sees when it fetches a topic at an agent that does not
serve the topic's cell: the history (the sealed segments the cell's owner checkpointed)
comes from the store through that agent, the owner's tail from the owner (the client
follows the refusal), every record once and in order; and while the cell's agent is
dead and its lease not yet expired, the history is still read, from the store, with no
owner to ask.
A one-cell cluster's standby answers the same way.
Method: two real `odradek serve --cells 2` processes (and two of a one-cell cluster) on
a real etcd and moto's S3 server, the Python client, kill -9; each agent's
`cluster_status` says what it read from the store.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from serve_processes import RegistryCellAgent, ServeAgent, cluster_name, one_cell_each, running

import odradek

CELLS = ["_cell", "_cell.1"]
RECORDS = 3000  # 200-byte values in 64 KiB segments: about ten sealed segments
TYPED = pa.schema([("id", pa.int64()), ("item", pa.string())])


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[ServeAgent]]:
    name, prefix = cluster_name("s"), unique_prefix()
    # A long lease: a killed agent's cell stays its own long enough to read without it.
    extra = ["--cells", "2", "--registry-listen", "off", "--lease-ttl", "30"]
    with running(
        lambda agent_id: ServeAgent(tmp_path, agent_id, etcd_server.url, name, moto_s3, prefix, extra), 2
    ) as started:
        yield started


def _fill(agents: list[ServeAgent]) -> tuple[ServeAgent, ServeAgent, str]:
    """A topic of RECORDS records; (its cell's agent, the other agent, its cell)."""
    owners = one_cell_each(agents, CELLS)
    with odradek.connect(",".join(agent.url for agent in agents)) as client:
        client.create_topic("history", segment_bytes="64KiB")
        for start in range(0, RECORDS, 100):
            client.append(
                "history",
                [
                    {"key": b"k%d" % (n % 7), "value": b"%06d" % n + bytes(194)}
                    for n in range(start, start + 100)
                ],
            )
        owner_url = client._routes.get("history", client.url)  # where the appends went
    cell, owner = next((cell, agent) for cell, agent in owners.items() if agent.url == owner_url)
    other = next(agent for agent in agents if agent is not owner)
    return owner, other, cell


def _read_all(url: str) -> list[int]:
    """Every record's number, fetched from offset 0 through the agent at ``url``."""
    numbers: list[int] = []
    with odradek.connect(url) as client:
        while len(numbers) < RECORDS:
            batches = client.fetch("history", len(numbers), max_records=500)
            numbers.extend(int(value[:6]) for batch in batches for value in batch.column("value").to_pylist())
    return numbers


def _served_from_store(agent: ServeAgent, cell: str) -> int:
    """Records ``agent`` answered from ``cell``'s store so far."""
    return int(agent.status().get("replicas", {}).get(cell, {}).get("records", 0))


def test_a_fetch_at_another_cells_agent_reads_the_history_from_the_store(agents: list[ServeAgent]) -> None:
    owner, other, cell = _fill(agents)
    # The owner checkpoints every second: wait until the other agent reads some history.
    wait_for(lambda: _answers_from_store(other, cell), "the other agent to answer from the store")
    before = _served_from_store(other, cell)
    assert _read_all(other.url) == list(range(RECORDS))
    answered = _served_from_store(other, cell) - before
    # Most of the topic is history in sealed segments; the rest, the owner's tail, came
    # from the owner after the other agent declined it.
    assert RECORDS // 2 <= answered < RECORDS, answered
    assert _served_from_store(owner, cell) == 0  # the owner reads its own cell


def test_a_read_at_another_cells_agent_streams_the_history_then_the_owners_tail(
    agents: list[ServeAgent],
) -> None:
    owner, other, cell = _fill(agents)
    wait_for(lambda: _answers_from_store(other, cell), "the other agent to answer from the store")
    before = _served_from_store(other, cell)
    with odradek.connect(other.url) as client:
        numbers = [
            int(value[:6])
            for batch in client.read("history", start="earliest", wait=0, max_records=400)
            for value in batch.column("value").to_pylist()
        ]
        assert numbers == list(range(RECORDS))  # one stream: the store's part, then the owner's
        assert RECORDS // 2 <= _served_from_store(other, cell) - before < RECORDS
        # From an offset in the history, following: new records come through the owner.
        seen: list[int] = []
        stream = client.read("history", start=100, follow=True)
        with odradek.connect(owner.url) as writer:
            writer.append("history", [{"value": b"%06d" % RECORDS + bytes(194)}])
        for batch in stream:
            seen.extend(int(value[:6]) for value in batch.column("value").to_pylist())
            if len(seen) >= RECORDS + 1 - 100:
                break
        assert seen == list(range(100, RECORDS + 1))
    # Where the store holds nothing to start from, the owner answers the whole read.
    with odradek.connect(other.url) as client:
        latest = client.read("history", start="latest", wait=0)
        assert [batch.num_rows for batch in latest] == []


def test_the_history_is_read_from_the_store_while_the_cells_agent_is_dead(agents: list[ServeAgent]) -> None:
    owner, other, cell = _fill(agents)
    wait_for(lambda: _answers_from_store(other, cell), "the other agent to answer from the store")
    owner.signal(signal.SIGKILL)
    assert owner.process is not None
    owner.process.wait(30)
    before = _served_from_store(other, cell)
    with odradek.connect(other.url) as client:
        batches = client.fetch("history", 0, max_records=1000)
    numbers = [int(value[:6]) for batch in batches for value in batch.column("value").to_pylist()]
    assert numbers == list(range(len(numbers))) and numbers, numbers[:5]
    assert _served_from_store(other, cell) - before == len(numbers)
    assert cell not in other.cells()  # the dead agent's lease still holds the cell


def _answers_from_store(agent: ServeAgent, cell: str) -> bool:
    """Whether ``agent`` answers a fetch of the history from the store at three
    quarters of it (else it leaves it to the owner: the checkpoint it read does not
    hold the sealed segments up to there yet, the appends being recent)."""
    before = _served_from_store(agent, cell)
    with odradek.connect(agent.url) as client:
        client.fetch("history", RECORDS * 3 // 4, max_records=10)
    return _served_from_store(agent, cell) > before


def test_a_wildcard_read_at_any_agent_reads_other_cells_history_from_the_store(
    agents: list[ServeAgent],
) -> None:
    """Each agent reads its own cell's topics itself; the other cell's from the store,
    then the rest from that cell's agent, which goes on where the store's part ended:
    every record of every matching topic once and in order, through either agent, every
    time (while checkpoints come, and once they hold most of the history)."""
    owners = one_cell_each(agents, CELLS)
    topics = [f"orders.{index}" for index in range(4)]
    per_topic = RECORDS // 2
    with odradek.connect(",".join(agent.url for agent in agents)) as client:
        for topic in [*topics, "other"]:
            client.create_topic(topic, segment_bytes="64KiB")
        for start in range(0, per_topic, 100):
            for topic in [*topics, "other"]:
                client.append(topic, [{"value": b"%06d" % n + bytes(194)} for n in range(start, start + 100)])
        client.append("orders.0", [{"value": b"%06d" % per_topic}])  # a tail past the last checkpoint
    expected = {topic: list(range(per_topic)) for topic in topics}
    expected["orders.0"].append(per_topic)

    def read_through(agent: ServeAgent, cell: str) -> int:
        """Records a whole wildcard read at ``agent`` took from ``cell``'s store, after
        checking it read every record once and in order."""
        before = _served_from_store(agent, cell)
        numbers: dict[str, list[int]] = {}
        with odradek.connect(agent.url) as reader:
            for batch in reader.read("orders.*", start="earliest", wait=0, max_records=300):
                for row in batch.select(["topic", "value"]).to_pylist():
                    numbers.setdefault(row["topic"], []).append(int(row["value"][:6]))
        assert numbers == expected, {topic: len(values) for topic, values in numbers.items()}
        return _served_from_store(agent, cell) - before

    for agent in agents:
        other_cell = next(cell for cell, owner in owners.items() if owner is not agent)
        # Two of the four topics are in the other cell: once its checkpoints hold them,
        # most of their records come from the store.
        wait_for(
            lambda agent=agent, cell=other_cell: read_through(agent, cell) >= per_topic,
            "a wildcard read to take the other cell's history from the store",
        )
        own_cell = next(cell for cell in CELLS if cell != other_cell)
        assert _served_from_store(agent, own_cell) == 0


def test_a_standby_of_a_one_cell_cluster_reads_the_history_from_the_store(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> None:
    name, prefix = cluster_name("o"), unique_prefix()
    extra = ["--registry-listen", "off"]
    with running(
        lambda agent_id: ServeAgent(tmp_path, agent_id, etcd_server.url, name, moto_s3, prefix, extra), 2
    ) as agents:
        wait_for(
            lambda: sorted(str(agent.status().get("role")) for agent in agents) == ["owner", "standby"],
            "an owner and a standby",
        )
        owner, standby = sorted(agents, key=lambda agent: agent.status().get("role") != "owner")
        with odradek.connect(owner.url) as client:
            client.create_topic("history", segment_bytes="64KiB")
            for start in range(0, RECORDS, 100):
                client.append(
                    "history", [{"value": b"%06d" % n + bytes(194)} for n in range(start, start + 100)]
                )
        wait_for(lambda: _answers_from_store(standby, "_cell"), "the standby to answer from the store")
        assert _read_all(standby.url) == list(range(RECORDS))
        with odradek.connect(standby.url) as client:
            numbers = [
                int(value[:6])
                for batch in client.read("history", start="earliest", wait=0)
                for value in batch.column("value").to_pylist()
            ]
        assert numbers == list(range(RECORDS))
        # A wildcard read there: the store's part, then the owner's from where it ended.
        before = _served_from_store(standby, "_cell")
        with odradek.connect(standby.url) as client:
            rows = [row for batch in client.read(">", start="earliest", wait=0) for row in batch.to_pylist()]
        assert {row["topic"] for row in rows} == {"history"}
        assert [int(row["value"][:6]) for row in rows] == list(range(RECORDS))
        assert _served_from_store(standby, "_cell") - before >= RECORDS // 2
        assert _served_from_store(owner, "_cell") == 0


def test_the_http_apis_reads_of_another_cells_history_come_from_the_store(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server
) -> None:
    """``GET /v1/topics/{topic}/records?offset=N`` at the HTTP API of an agent that does
    not serve the topic's cell: a page of the history is answered there from the store,
    the same page the owner's API gives (schema'd values as JSON too); a page at the
    tail, or from a time, is forwarded to the owner."""
    name, prefix = cluster_name("p"), unique_prefix()
    with running(
        lambda agent_id: RegistryCellAgent(
            tmp_path, agent_id, etcd_server.url, name, moto_s3, prefix, cells=2
        ),
        2,
    ) as agents:
        one_cell_each(agents, CELLS)
        with odradek.connect(",".join(agent.url for agent in agents)) as client:
            client.create_topic("typed", segment_bytes="64KiB", schema=TYPED)
            for start in range(0, RECORDS, 100):
                client.append(
                    "typed", [{"value": {"id": n, "item": "x" * 180}} for n in range(start, start + 100)]
                )
            owner_url = client._routes.get("typed", client.url)
        owner = next(agent for agent in agents if agent.url == owner_url)
        other = next(agent for agent in agents if agent is not owner)
        cell = next(c for c in CELLS if owner.cells() == [c])

        def page(agent: RegistryCellAgent, query: str) -> dict[str, Any]:
            url = f"{agent.registry_url}/v1/topics/typed/records?{query}"
            with urllib.request.urlopen(url, timeout=60) as answer:
                document: dict[str, Any] = json.loads(answer.read())
            return document

        def from_store() -> bool:
            before = _served_from_store(other, cell)
            page(other, f"offset={RECORDS * 3 // 4}&limit=10")
            return _served_from_store(other, cell) > before

        wait_for(from_store, "the other agent's HTTP API to answer from the store")
        before = _served_from_store(other, cell)
        for offset in (0, 1, 777):
            assert page(other, f"offset={offset}&limit=300") == page(owner, f"offset={offset}&limit=300")
        assert _served_from_store(other, cell) - before == 900
        assert page(other, "offset=5&limit=1")["records"][0]["value"] == {"id": 5, "item": "x" * 180}
        # Page by page through the other agent: every record, the tail's from the owner.
        ids: list[int] = []
        offset = 0
        while offset < RECORDS:
            answered = page(other, f"offset={offset}&limit=500")
            ids.extend(record["value"]["id"] for record in answered["records"])
            offset = answered["next_offset"]
        assert ids == list(range(RECORDS))
        assert _served_from_store(owner, cell) == 0
        before = _served_from_store(other, cell)
        assert len(page(other, "start=earliest&limit=10")["records"]) == 10  # not by offset: forwarded
        assert _served_from_store(other, cell) == before
