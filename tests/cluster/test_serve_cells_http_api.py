"""The HTTP API of `odradek serve --etcd --cells 3` (decision 0036).

Goal: what an HTTP user of a cluster whose topics are spread over three agents sees:
any agent's door answers for every topic, whichever cell holds it (the request is
forwarded to the agent serving that cell); records produced through one door are read
back through another; a topic listing at any door lists every cell's topics; a tail
through a door that does not serve the topic receives the records appended after it
started; a topic of a killed agent's cell is refused with a retriable 503 until a
survivor takes the cell over, then answered again.
Method: real `odradek serve` processes with `--cells 3 --registry-listen`, a real etcd
and moto's S3 server; plain HTTP (urllib, http.client); kill -9.
"""

from __future__ import annotations

import http.client
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import wait_for
from etcd_servers import EtcdServers
from object_servers import S3Server, unique_prefix
from serve_processes import RegistryCellAgent, cluster_name, one_cell_each, running

import odradek

CELLS = ["_cell", "_cell.1", "_cell.2"]
TOPICS = [f"orders.{index}" for index in range(6)]


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[RegistryCellAgent]]:
    cluster, prefix = cluster_name("h"), unique_prefix()
    with running(
        lambda agent_id: RegistryCellAgent(tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix)
    ) as started:
        yield started


def _http(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _values(url: str, topic: str) -> list[Any]:
    status, page = _http(f"{url}/v1/topics/{topic}/records?offset=0")
    assert status == 200, (url, topic, page)
    return [record["value"] for record in page["records"]]


def _record_events(response: http.client.HTTPResponse, count: int) -> list[Any]:
    """The data of the next ``count`` record events of an event stream."""
    found: list[Any] = []
    event: dict[str, str] = {}
    while len(found) < count:
        line = response.readline()
        assert line, f"the stream ended after {len(found)} of {count} records"
        text = line.decode().rstrip("\n")
        if not text:
            if event.get("event") == "record":
                found.append(json.loads(event["data"]))
            event = {}
            continue
        name, _, value = text.partition(":")
        if name:
            event[name] = value.removeprefix(" ")
    return found


def test_any_door_answers_for_every_cell(agents: list[RegistryCellAgent]) -> None:
    owners = one_cell_each(agents, CELLS)
    urls = ",".join(agent.url for agent in agents)
    with odradek.connect(urls) as client:
        for topic in TOPICS:
            client.create_topic(topic)  # placed in turn in the least loaded cell
    # Where each topic is: the agent serving a cell answers for it when asked for that cell.
    cell_of: dict[str, str] = {}
    for topic in TOPICS:
        for cell, owner in owners.items():
            status, _ = _http(f"{owner.registry_url}/v1/topics/{topic}", headers={"X-Odradek-Cell": cell})
            if status == 200:
                cell_of[topic] = cell
    assert set(cell_of.values()) == set(CELLS), cell_of

    # Produced through one door, read back through another: every cell's topics.
    first, second, third = agents
    for topic in TOPICS:
        records = [{"key": "k", "value": f"{topic}:{index}"} for index in range(3)]
        status, produced = _http(
            f"{first.registry_url}/v1/topics/{topic}/records", "POST", {"records": records}
        )
        assert status == 200 and produced["count"] == 3, produced
    for topic in TOPICS:
        assert _values(second.registry_url, topic) == [f"{topic}:{index}" for index in range(3)]
    for agent in agents:
        status, listing = _http(f"{agent.registry_url}/v1/topics")
        assert status == 200 and listing["topics"] == sorted(TOPICS), (agent.agent_id, listing)

    # A creation through any door places the topic, and the other doors find it.
    status, created = _http(f"{third.registry_url}/v1/topics", "POST", {"name": "fresh"})
    assert status == 201, created
    status, refused = _http(f"{third.registry_url}/v1/topics", "POST", {"name": "broken", "cleanup": "never"})
    assert status == 400, refused
    status, listing = _http(f"{first.registry_url}/v1/topics")
    assert "fresh" in listing["topics"] and "broken" not in listing["topics"]

    # A tail through a door that does not serve the topic.
    topic = TOPICS[1]
    cell = cell_of[topic]
    door = next(agent for agent in agents if agent is not owners[cell])
    connection = http.client.HTTPConnection("127.0.0.1", door.registry_port, timeout=60)
    response: http.client.HTTPResponse | None = None
    try:
        connection.request("GET", f"/v1/topics/{topic}/events?start=latest")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        records = [{"key": "k", "value": f"live-{index}"} for index in range(2)]
        status, _ = _http(f"{third.registry_url}/v1/topics/{topic}/records", "POST", {"records": records})
        assert status == 200
        assert [event["value"] for event in _record_events(response, 2)] == ["live-0", "live-1"]
    finally:
        if response is not None:
            response.close()  # it holds the socket too
        connection.close()

    # Kill -9 the agent serving that cell: its topic is refused with a retriable 503 at
    # the other doors, then answered again once a survivor serves the cell.
    victim = owners[cell]
    survivor = next(agent for agent in agents if agent is not victim)
    victim.signal(signal.SIGKILL)
    assert victim.process is not None
    victim.process.wait(30)
    seen: list[int] = []

    def answered() -> bool:
        status, _ = _http(f"{survivor.registry_url}/v1/topics/{topic}/records?offset=0")
        seen.append(status)
        return status == 200

    wait_for(answered, "the killed agent's cell answered again")
    assert set(seen) <= {200, 503}, seen
    assert _values(survivor.registry_url, topic) == [
        *(f"{topic}:{index}" for index in range(3)),
        "live-0",
        "live-1",
    ]


def test_a_group_of_every_cell_is_described_and_deleted_once_through_any_door(
    agents: list[RegistryCellAgent],
) -> None:
    """Decision 0038: a group subscribing to a pattern through the Flight door is in
    every cell; the HTTP API describes it once (every cell's topics, the member once)
    and deletes it from every cell, or (while it has members) from none."""
    one_cell_each(agents, ["_cell", "_cell.1", "_cell.2"])
    with odradek.connect(",".join(agent.url for agent in agents)) as client:
        for index in range(3):
            client.create_topic(f"jobs.{index}")  # one in each cell
            client.append(f"jobs.{index}", [{"key": "k", "value": f"job {index}"}])
        consumer = client.subscribe("jobs.*", group="spread")
        got: list[Any] = []
        wait_for(lambda: bool(got.extend(consumer.poll(10, timeout=1))) or len(got) >= 3, "3 deliveries")
        assert consumer.ack(got).ok
        for agent in agents:
            status, info = _http(f"{agent.registry_url}/v1/groups/spread")
            assert status == 200, info
            assert sorted(topic["topic"] for topic in info["topics"]) == ["jobs.0", "jobs.1", "jobs.2"]
            assert [member["member"] for member in info["members"]] == [consumer.member_id]
            assert sum(topic["committed"] for topic in info["topics"]) == 3
        status, refused = _http(f"{agents[1].registry_url}/v1/groups/spread", "DELETE")
        assert status == 400 and "member" in refused["message"], refused
        consumer.close()
        status, deleted = _http(f"{agents[2].registry_url}/v1/groups/spread", "DELETE")
        assert (status, deleted) == (200, {"deleted": "spread"})
        assert client.list_groups() == []


def test_a_member_by_pattern_reads_every_cell_through_any_door(agents: list[RegistryCellAgent]) -> None:
    """Decision 0039: an HTTP member joining by pattern is a member of every cell's
    group; it is polled, acknowledged and made to leave through any agent's door, and
    a record appended while a poll waits reaches it. The console's tail of the pattern
    through one door streams every cell's topics, created after it started."""
    one_cell_each(agents, CELLS)
    first, second, third = agents
    console = http.client.HTTPConnection("127.0.0.1", third.registry_port, timeout=60)
    console.request("GET", "/v1/console/tail?pattern=jobs.*")  # every cell's, through one door
    tail = console.getresponse()
    assert tail.status == 200, tail.read()
    with odradek.connect(",".join(agent.url for agent in agents)) as client:
        for index in range(3):
            client.create_topic(f"jobs.{index}")  # one in each cell
            client.append(f"jobs.{index}", [{"key": f"k{index}", "value": f"job {index}"}])
    try:
        tailed = sorted(event["value"] for event in _record_events(tail, 3))
        assert tailed == ["job 0", "job 1", "job 2"]
    finally:
        tail.close()
        console.close()
    status, joined = _http(
        f"{first.registry_url}/v1/groups/crew/members", "POST", {"pattern": "jobs.*", "start": "earliest"}
    )
    assert status == 201, joined
    base = f"/v1/groups/crew/members/{joined['member']}"
    got: list[Any] = []

    def polled() -> bool:
        status, answer = _http(f"{second.registry_url}{base}/poll", "POST", {"max_records": 10, "timeout": 1})
        assert status == 200, answer
        got.extend(answer["deliveries"])
        return len(got) >= 3

    wait_for(polled, "every cell's record")
    assert sorted(delivery["value"] for delivery in got) == ["job 0", "job 1", "job 2"]
    refs = [{"topic": d["topic"], "offset": d["offset"], "lease": d["lease"]} for d in got]
    status, settled = _http(f"{third.registry_url}{base}/ack", "POST", {"deliveries": refs})
    assert (status, settled) == (200, {"settled": 3, "rejected": []})
    connection = http.client.HTTPConnection("127.0.0.1", third.registry_port, timeout=60)
    try:  # a poll waiting through one door, a record appended through another
        connection.request("POST", f"{base}/poll", json.dumps({"max_records": 10, "timeout": 20}))
        record = {"records": [{"key": "late", "value": "while waiting"}]}
        status, _ = _http(f"{first.registry_url}/v1/topics/jobs.2/records", "POST", record)
        assert status == 200
        answer = json.loads(connection.getresponse().read())
        assert [d["value"] for d in answer["deliveries"]] == ["while waiting"], answer
    finally:
        connection.close()
    for agent in agents:
        status, info = _http(f"{agent.registry_url}/v1/groups/crew")
        assert status == 200, info
        assert [member["member"] for member in info["members"]] == [joined["member"]]
        assert sum(topic["committed"] for topic in info["topics"]) == 3
    status, left = _http(f"{second.registry_url}{base}", "DELETE")
    assert (status, left) == (200, {"left": joined["member"]})
    status, info = _http(f"{first.registry_url}/v1/groups/crew")
    assert status == 200 and info["members"] == [], info
