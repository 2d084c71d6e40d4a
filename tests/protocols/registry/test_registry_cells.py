"""The Schema Registry door over cells (decision 0034), in one process.

Goal: where each request goes (a table of paths), how the cells' answers merge, and
what two agents' doors do together: a request about another cell's subject or schema
id is forwarded to the door serving that cell with the client's credentials and
answered there; listings merge every cell's; the default compatibility is written to
every cell; a registration creating a topic places it in the home cell and a refused
one leaves no placement; a forwarded request for a cell the agent does not serve, a
cell without an owner and an owner out of reach are each a retriable 503.
Method: two real registry listeners over two engines (the cells' ranges of schema
ids), a catalog of placements and door addresses in memory standing for etcd;
urllib as the client.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odradek.cluster.keys import cell_names, cell_of_schema_id, schema_id_base
from odradek.engine import Engine
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.registry import cell_registry, start_cells_registry_listener
from odradek.protocols.registry.cells import EVERY, HOME, MERGE, ONE, Route, merge, route
from odradek.protocols.registry.routes import Response
from odradek.security import Authenticator, CredentialStore

HOME_CELL, OTHER = cell_names(2)
AVRO = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}


@pytest.mark.parametrize(
    ("method", "path", "prefix", "expected"),
    [
        ("GET", "/subjects", "", Route(MERGE)),
        ("POST", "/subjects", "", HOME),
        ("PUT", "/config", "", Route(EVERY)),
        ("DELETE", "/config", "", Route(EVERY)),
        ("GET", "/config", "", HOME),
        ("GET", "/mode", "", HOME),
        ("GET", "/schemas/types", "", HOME),
        ("POST", "/subjects/orders-value/versions", "", Route(ONE, topic="orders")),
        ("GET", "/subjects/orders-value/versions/latest", "", Route(ONE, topic="orders")),
        ("POST", "/subjects/orders-value", "", Route(ONE, topic="orders")),
        ("POST", "/compatibility/subjects/orders-value/versions/1", "", Route(ONE, topic="orders")),
        ("PUT", "/config/orders-value", "", Route(ONE, topic="orders")),
        ("GET", "/mode/orders-value", "", Route(ONE, topic="orders")),
        ("GET", "/subjects/orders-key/versions", "", HOME),
        ("GET", "/subjects/bad%20name-value/versions", "", HOME),  # the registry refuses it
        ("GET", "/subjects/orders-value/versions", "_t.acme.", Route(ONE, topic="_t.acme.orders")),
        ("GET", "/schemas/ids/16777217", "", Route(ONE, schema_id=16777217)),
        ("GET", "/schemas/ids/3/versions", "", Route(ONE, schema_id=3)),
        ("GET", "/schemas/ids/x", "", HOME),
        ("GET", "/v1/views/v/keys/k", "", HOME),
    ],
)
def test_where_a_request_goes(method: str, path: str, prefix: str, expected: Route) -> None:
    assert route(method, path, prefix) == expected


def _listing(*names: str) -> Response:
    return Response(200, json.dumps(list(names)).encode())


def test_listings_merge_and_the_first_refusal_is_the_answer() -> None:
    merged = merge(Route(MERGE), [_listing("b-value", "a"), _listing("a", "c-value")])
    assert merged.status == 200 and json.loads(merged.body) == ["a", "b-value", "c-value"]
    refused = Response.error(503, 50003, "no owner")
    assert merge(Route(MERGE), [_listing("a"), refused]) is refused
    home = Response.of({"compatibility": "FULL"})
    assert merge(Route(EVERY), [home, Response.of({"compatibility": "FULL"})]) is home
    broken = merge(Route(MERGE), [_listing("a"), Response(200, b"{not json")])
    assert broken.status == 502


class Catalog:
    """The cluster as the doors see it: placements and which door serves each cell."""

    def __init__(self) -> None:
        self.placements: dict[str, str] = {}
        self.doors: dict[str, tuple[str, int] | None] = {}

    def cells(self) -> list[str]:
        return [HOME_CELL, OTHER]

    def cell_of(self, topic: str) -> str:
        return self.placements.get(topic, HOME_CELL)

    def cell_of_schema_id(self, schema_id: int) -> str | None:
        return cell_of_schema_id(schema_id, 2)

    def door_of(self, cell: str) -> tuple[str, int] | None:
        return self.doors.get(cell)

    def claim(self, topic: str, cell: str) -> bool:
        return self.placements.setdefault(topic, cell) == cell

    def release(self, topic: str, cell: str) -> None:
        if self.placements.get(topic) == cell:
            del self.placements[topic]


class TwoAgents:
    """Agent 0 serves the home cell, agent 1 the other; basic authentication on both."""

    def __init__(self, directory: Path) -> None:
        self.catalog = Catalog()
        self.engines = {
            cell: Engine(str(directory / cell), fsync=False, schema_id_base=schema_id_base(cell))
            for cell in (HOME_CELL, OTHER)
        }
        store = CredentialStore.open(str(directory / "credentials"))
        store.add_user("alice", "alice-secret")
        self.listeners = []
        with serving_authentication(Authenticator(store)):
            for cell, engine in self.engines.items():
                listener, registries = start_cells_registry_listener(self.catalog, "127.0.0.1", 0)
                registries.serve(
                    cell,
                    cell_registry(
                        engine,
                        lambda topic, cell=cell: self.catalog.claim(topic, cell),
                        lambda topic, cell=cell: self.catalog.release(topic, cell),
                    ),
                )
                self.catalog.doors[cell] = ("127.0.0.1", listener.port)
                self.listeners.append(listener)

    def call(
        self, agent: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        credentials = base64.b64encode(b"alice:alice-secret").decode()
        sent = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        data = json.dumps(body).encode() if body is not None else None
        url = f"http://127.0.0.1:{self.listeners[agent].port}{path}"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for engine in self.engines.values():
            engine.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[TwoAgents]:
    pair = TwoAgents(tmp_path)
    yield pair
    pair.close()


def _register(agents: TwoAgents, agent: int, subject: str, schema: Any = AVRO) -> tuple[int, Any]:
    return agents.call(agent, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})


def test_each_cells_subjects_are_answered_at_either_door(agents: TwoAgents) -> None:
    agents.engines[OTHER].create_topic("far")
    agents.catalog.placements["far"] = OTHER
    agents.engines[HOME_CELL].create_topic("near")
    agents.catalog.placements["near"] = HOME_CELL
    status, far = _register(agents, 0, "far-value")  # forwarded from agent 0 to agent 1
    assert status == 200 and far["id"] == schema_id_base(OTHER) + 1
    assert agents.engines[OTHER].get_schema("far") is not None
    status, near = _register(agents, 1, "near-value")  # forwarded from agent 1 to agent 0
    assert status == 200 and near["id"] == 1
    assert agents.engines[HOME_CELL].get_schema("near") is not None
    for agent in (0, 1):
        status, found = agents.call(agent, "GET", f"/schemas/ids/{far['id']}")
        assert status == 200 and json.loads(found["schema"]) == AVRO
        status, latest = agents.call(agent, "GET", "/subjects/far-value/versions/latest")
        assert status == 200 and latest["id"] == far["id"]
        status, subjects = agents.call(agent, "GET", "/subjects")
        assert status == 200 and subjects == ["far-value", "near-value"]
    status, missing = agents.call(1, "GET", f"/schemas/ids/{schema_id_base(OTHER) + 99}")
    assert status == 404 and missing["error_code"] == 40403
    status, missing = agents.call(1, "GET", f"/schemas/ids/{5 * schema_id_base(OTHER)}")
    assert status == 404  # no cell hands it out: the home cell says so


def test_the_default_compatibility_is_every_cells(agents: TwoAgents) -> None:
    status, _ = agents.call(1, "PUT", "/config", {"compatibility": "FULL"})
    assert status == 200
    for agent in (0, 1):
        assert agents.call(agent, "GET", "/config")[1]["compatibilityLevel"] == "FULL"
    agents.engines[OTHER].create_topic("far")
    agents.catalog.placements["far"] = OTHER
    assert _register(agents, 0, "far-value")[0] == 200
    assert agents.engines[OTHER].get_schema("far").compatibility == "full"  # type: ignore[union-attr]


def test_a_registration_creating_a_topic_places_it_and_a_refused_one_leaves_nothing(
    agents: TwoAgents,
) -> None:
    status, created = _register(agents, 1, "fresh-value")
    assert status == 200, created
    assert agents.catalog.placements == {"fresh": HOME_CELL}
    assert "fresh" in agents.engines[HOME_CELL].list_topics()
    status, refused = _register(agents, 1, "broken-value", {"type": "record", "name": "R", "fields": "no"})
    assert status == 422, refused
    assert "broken" not in agents.catalog.placements
    assert "broken" not in agents.engines[HOME_CELL].list_topics()


def test_what_cannot_be_answered_now_is_a_retriable_503(agents: TwoAgents) -> None:
    # A forwarded request for a cell the agent does not serve (it changed hands).
    status, answer = agents.call(0, "GET", "/subjects", headers={"X-Odradek-Cell": OTHER})
    assert status == 503 and answer["error_code"] == 50003 and OTHER in answer["message"]
    agents.engines[OTHER].create_topic("far")
    agents.catalog.placements["far"] = OTHER
    # A cell without an owner (a failover in progress).
    door = agents.catalog.doors[OTHER]
    agents.catalog.doors[OTHER] = None
    status, answer = agents.call(0, "GET", "/subjects/far-value/versions")
    assert status == 503 and "no agent with a registry door serves cell" in answer["message"]
    # An owner out of reach.
    agents.listeners[1].close()
    agents.catalog.doors[OTHER] = door
    status, answer = agents.call(0, "GET", "/subjects/far-value/versions")
    assert status == 503 and "did not answer" in answer["message"]
    status, answer = agents.call(0, "GET", "/subjects")  # a listing needs every cell
    assert status == 503


def test_the_http_api_is_served_over_cells_beside_the_registry(agents: TwoAgents) -> None:
    # Cells registered without an HTTP API (a registry only): the API's paths say so in
    # its own error shape, a retriable 503 naming the cell (decision 0036; the agents
    # of tests/protocols/http_api/test_http_api_cells.py serve both).
    status, answer = agents.call(0, "GET", "/v1/topics")
    assert status == 503 and answer["code"] == "unavailable"
    assert agents.call(0, "GET", "/subjects")[0] == 200  # the registry answers as before
