"""The registry listener of a one-cell cluster's agents (decisions 0034 and 0036).

Goal: a Schema Registry or HTTP API client may be given any agent of a cluster (a
Service over all of them): a standby's door forwards what it is asked to the owner's,
so a registration, a schema by id, a produce and a read through the standby are the
owner's answers; after a handover (SIGTERM of the owner) the new owner answers and
the restarted former owner, now a standby, forwards again.
Method: two real `odradek serve --etcd` processes with one cell each and a registry
listener of their own, a real etcd and moto's S3 server; Confluent's
`SchemaRegistryClient` and plain HTTP.
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
from serve_processes import RegistryCellAgent, cluster_name, running

from odradek.errors import OdradekError

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402

AVRO = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]})


@pytest.fixture
def agents(tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server) -> Iterator[list[RegistryCellAgent]]:
    cluster, prefix = cluster_name("o"), unique_prefix()
    with running(
        lambda agent_id: RegistryCellAgent(
            tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix, cells=1
        ),
        count=2,
    ) as started:
        yield started


def _http(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _role(agent: RegistryCellAgent) -> str | None:
    try:
        return str(agent.status()["role"])
    except OdradekError:
        return None


def _owner_and_standby(agents: list[RegistryCellAgent]) -> tuple[RegistryCellAgent, RegistryCellAgent]:
    found: list[RegistryCellAgent] = []

    def settled() -> bool:
        found[:] = [agent for agent in agents if agent.alive() and _role(agent) == "owner"]
        return len(found) == 1

    wait_for(settled, "one owner")
    return found[0], next(agent for agent in agents if agent is not found[0])


def test_a_standbys_door_answers_with_the_owners(agents: list[RegistryCellAgent]) -> None:
    owner, standby = _owner_and_standby(agents)
    through_standby = SchemaRegistryClient({"url": standby.registry_url})
    try:
        schema_id = through_standby.register_schema("orders-value", Schema(AVRO, "AVRO"))  # creates the topic
        status, found = _http(f"{owner.registry_url}/schemas/ids/{schema_id}")
        assert status == 200 and json.loads(found["schema"]) == json.loads(AVRO)
        status, produced = _http(
            f"{standby.registry_url}/v1/topics/orders/records", "POST", {"records": [{"value": {"id": 7}}]}
        )
        assert status == 200 and produced["count"] == 1, produced
        status, read = _http(f"{owner.registry_url}/v1/topics/orders/records?offset=0")
        assert status == 200 and [record["value"] for record in read["records"]] == [{"id": 7}]

        # A handover: the standby owns now, and the former owner, restarted, forwards to it.
        owner.signal(signal.SIGTERM)
        assert owner.process is not None and owner.process.wait(60) == 0
        wait_for(lambda: _role(standby) == "owner", "the standby owning the data")
        owner.start()
        answers: list[tuple[int, Any]] = []

        def answered() -> bool:  # a 503 (retriable) until it has learnt where the owner is
            answers.append(_http(f"{owner.registry_url}/subjects/orders-value/versions/latest"))
            return answers[-1][0] == 200

        wait_for(answered, "the restarted standby forwarding to the new owner")
        assert {status for status, _ in answers} <= {200, 503}, answers
        assert all("retry" in body["message"] for status, body in answers if status == 503), answers
        assert answers[-1][1]["id"] == schema_id
        status, read = _http(f"{owner.registry_url}/v1/topics/orders/records?offset=0")
        assert status == 200 and [record["value"] for record in read["records"]] == [{"id": 7}]
    finally:
        through_standby.close()
