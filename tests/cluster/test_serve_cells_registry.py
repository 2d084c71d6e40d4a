"""The Schema Registry door of `odradek serve --etcd --cells 3` (decision 0034).

Goal: what a Schema Registry user of a cluster whose topics are spread over three
agents sees, with Confluent's client: any agent's registry door answers for every
topic, whichever cell holds it (the request is forwarded to the agent serving that
cell); schema ids are unique in the cluster and say which cell gave them, so a
consumer fetching a schema by id from any door gets it; a subject listing at any door
lists every cell's subjects; the default compatibility set at one door is the one
every cell gives a topic's first schema; a registration creating a topic places it
(and a refused one leaves no topic); a subject of a killed agent's cell is refused
with a retriable 503 until a survivor takes the cell over, then answered again.
Method: real `odradek serve` processes with `--cells 3 --registry-listen`, a real etcd
and moto's S3 server; Confluent's `SchemaRegistryClient` and plain HTTP; kill -9.
"""

from __future__ import annotations

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
from odradek.cluster.keys import cell_of_schema_id

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402

CELLS = ["_cell", "_cell.1", "_cell.2"]
TOPICS = [f"orders.{index}" for index in range(6)]
AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
    }
)


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[RegistryCellAgent]]:
    cluster, prefix = cluster_name("r"), unique_prefix()
    with running(
        lambda agent_id: RegistryCellAgent(tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix)
    ) as started:
        yield started


def _http(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_any_door_answers_for_every_cell(agents: list[RegistryCellAgent]) -> None:
    owners = one_cell_each(agents, CELLS)
    urls = ",".join(agent.url for agent in agents)
    with odradek.connect(urls) as client:
        for topic in TOPICS:
            client.create_topic(topic)  # placed in turn in the least loaded cell
    first, second, third = (SchemaRegistryClient({"url": agent.registry_url}) for agent in agents)
    try:
        # Registered through one door: every topic gets its first schema in its own cell.
        ids = {topic: first.register_schema(f"{topic}-value", Schema(AVRO, "AVRO")) for topic in TOPICS}
        cells = {cell_of_schema_id(schema_id, 3) for schema_id in ids.values()}
        assert cells == set(CELLS), ids  # each cell handed out the ids of its topics
        # The same schema has one id per cell that holds it (ids are unique in the cluster).
        assert len(set(ids.values())) == 3
        # Fetched by id through another door, as a consumer's deserializer does.
        for topic, schema_id in ids.items():
            fetched = second.get_schema(schema_id)
            assert json.loads(fetched.schema_str) == json.loads(AVRO), topic
            latest = third.get_latest_version(f"{topic}-value")
            assert latest.schema_id == schema_id and latest.version == 1
        # A subject that is no topic's value lives in the home cell, seen from every door.
        key = {"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]}
        key_id = third.register_schema("orders-key", Schema(json.dumps(key), "AVRO"))
        assert cell_of_schema_id(key_id, 3) == "_cell"
        expected = sorted([*(f"{topic}-value" for topic in TOPICS), "orders-key"])
        for agent in agents:
            status, listing = _http(f"{agent.registry_url}/subjects")
            assert status == 200 and listing == expected, (agent.agent_id, listing)
        uses = sorted(f"{topic}-value" for topic, schema_id in ids.items() if schema_id == ids[TOPICS[3]])
        status, versions = _http(f"{agents[0].registry_url}/schemas/ids/{ids[TOPICS[3]]}/versions")
        assert status == 200 and versions == [{"subject": subject, "version": 1} for subject in uses]

        # The default compatibility set through one door is every cell's: a topic of
        # each cell given its first schema through another door takes it.
        status, _ = _http(f"{agents[1].registry_url}/config", "PUT", {"compatibility": "FULL"})
        assert status == 200
        with odradek.connect(urls) as client:
            for index in range(3):
                client.create_topic(f"plain.{index}")
        for index in range(3):
            subject = f"plain.{index}-value"
            second.register_schema(subject, Schema(AVRO, "AVRO"))
            status, config = _http(f"{agents[2].registry_url}/config/{subject}")
            assert status == 200 and config["compatibilityLevel"] == "FULL", (subject, config)

        # A registration under a new topic's value creates the topic (and places it);
        # a refused one leaves no topic behind.
        third.register_schema("fresh.one-value", Schema(AVRO, "AVRO"))
        status, refused = _http(
            f"{agents[1].registry_url}/subjects/fresh.two-value/versions", "POST", {"schema": "{not json"}
        )
        assert status == 422, refused
        with odradek.connect(urls) as client:
            listed = client.list_topics()
            assert "fresh.one" in listed and "fresh.two" not in listed
            assert client.get_schema("fresh.one") is not None

        # Kill -9 the agent serving a cell: its subjects are refused with a retriable 503
        # at the other doors, then answered again once a survivor serves the cell.
        victim_cell = cell_of_schema_id(ids[TOPICS[1]], 3)
        assert victim_cell is not None
        victim = owners[victim_cell]
        survivor = next(agent for agent in agents if agent is not victim)
        victim.signal(signal.SIGKILL)
        assert victim.process is not None
        victim.process.wait(30)
        subject = f"{TOPICS[1]}-value"
        seen: list[int] = []

        def answered() -> bool:
            status, _ = _http(f"{survivor.registry_url}/subjects/{subject}/versions/latest")
            seen.append(status)
            return status == 200

        wait_for(answered, "the killed agent's cell answered again")
        assert set(seen) <= {200, 503}, seen
        status, schema = _http(f"{survivor.registry_url}/schemas/ids/{ids[TOPICS[1]]}")
        assert status == 200 and json.loads(schema["schema"]) == json.loads(AVRO)
    finally:
        for each in (first, second, third):
            each.close()


def test_a_forwarded_request_for_a_cell_the_agent_does_not_serve_is_refused_retriably(
    agents: list[RegistryCellAgent],
) -> None:
    owners = one_cell_each(agents, CELLS)
    home = owners["_cell"]
    request = urllib.request.Request(f"{home.registry_url}/subjects", headers={"X-Odradek-Cell": "_cell.1"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 503
    assert "does not serve cell '_cell.1'" in json.loads(refused.value.read())["message"]
    # The HTTP API on the same listener answers for every cell (decision 0036), and a
    # forward of it for a cell the agent does not serve is refused the same way.
    status, answer = _http(f"{home.registry_url}/v1/topics")
    assert status == 200 and answer == {"topics": [], "unavailable": {}}
    request = urllib.request.Request(f"{home.registry_url}/v1/topics", headers={"X-Odradek-Cell": "_cell.1"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
    assert json.loads(refused.value.read())["code"] == "unavailable"
