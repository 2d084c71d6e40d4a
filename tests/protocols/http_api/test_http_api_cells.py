"""The HTTP API over cells (decision 0036), in one process.

Goal: where each request goes (a table of paths), how the cells' listings merge, and
what two agents' doors do together: a topic of the other cell is produced to, read and
tailed (records appended after the tail started arrive) through the door that does not
serve it; listings at either door have every cell's topics and groups; a creation
places the topic in the home cell and a refused one leaves no placement; a group of the
other cell's topic is joined, polled and acked through the door that does not serve it;
a member joined by pattern is a member of both cells, polled, acknowledged, given
back and made to leave through either door, and leaves both when one cell forgot it or
one could not join it;
a console tail of a pattern streams every cell's topics, new ones too, and ends
saying so when a cell's tail ends; a forwarded request for a
cell the agent does not serve, a cell without an owner and an owner out of reach are
each a retriable 503 in the API's error shape.
Method: two real registry listeners over two nodes, a catalog of placements and door
addresses in memory standing for etcd (as tests/protocols/registry/test_registry_cells.py);
urllib and http.client as clients, basic authentication.
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
from http_api_client import EventReader

from odradek import limits
from odradek.cluster.keys import cell_names, schema_id_base
from odradek.node import Node
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.http_api.cells import (
    CONSOLE_TOPICS,
    GROUPS,
    HERE,
    HOME,
    MEMBER,
    MERGE,
    ONE,
    TAILS,
    TOPICS,
    ApiRoute,
    group_cells,
    merge,
    route,
)
from odradek.protocols.registry import cell_api, cell_registry, start_cells_registry_listener
from odradek.security import Authenticator, CredentialStore

HOME_CELL, OTHER = cell_names(2)
CREDENTIALS = "Basic " + base64.b64encode(b"alice:alice-secret").decode()


def _body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "prefix", "expected"),
    [
        ("GET", "/v1/topics", {}, b"", "", ApiRoute(MERGE, listing=TOPICS)),
        ("POST", "/v1/topics", {}, _body({"name": "orders"}), "", ApiRoute(ONE, topic="orders")),
        (
            "POST",
            "/v1/topics",
            {},
            _body({"name": "orders"}),
            "_t.acme.",
            ApiRoute(ONE, topic="_t.acme.orders"),
        ),
        ("POST", "/v1/topics", {}, b"{not json", "", HOME),  # the home cell refuses it
        ("POST", "/v1/topics", {}, _body({"name": 3}), "", HOME),
        ("DELETE", "/v1/topics", {}, b"", "", HERE),  # a 405 wherever it is asked
        ("GET", "/v1/topics/orders", {}, b"", "", ApiRoute(ONE, topic="orders")),
        ("GET", "/v1/topics/bad%20name/records", {}, b"", "", HOME),  # refused wherever it is asked
        ("POST", "/v1/topics", {}, _body({"name": "_reserved"}), "", HOME),
        ("POST", "/v1/topics/orders/records", {}, b"{}", "", ApiRoute(ONE, topic="orders")),
        ("GET", "/v1/topics/orders/events", {}, b"", "_t.acme.", ApiRoute(ONE, topic="_t.acme.orders")),
        ("GET", "/v1/topics/a%2Eb/keys/k/records", {}, b"", "", ApiRoute(ONE, topic="a.b")),
        ("GET", "/v1/groups", {}, b"", "", ApiRoute(MERGE, listing=GROUPS)),
        ("POST", "/v1/groups/g/members", {}, _body({"pattern": "orders"}), "", ApiRoute(ONE, topic="orders")),
        ("POST", "/v1/groups/g/members", {}, _body({"pattern": "orders.>"}), "", ApiRoute(MEMBER, group="g")),
        ("POST", "/v1/groups/g/members/cells.9f/poll", {}, b"{}", "", ApiRoute(MEMBER, group="g")),
        ("DELETE", "/v1/groups/g/members/cells.9f", {}, b"", "", ApiRoute(MEMBER, group="g")),
        ("POST", "/v1/groups/g/members", {}, b"", "", HOME),
        ("POST", "/v1/groups/g/members/m/poll", {}, b"{}", "", ApiRoute("group", group="g")),
        ("GET", "/v1/groups/g", {}, b"", "", ApiRoute("group", group="g")),
        ("DELETE", "/v1/groups/g/members/m", {}, b"", "", ApiRoute("group", group="g")),
        ("GET", "/v1/console/topics", {}, b"", "", ApiRoute(MERGE, listing=CONSOLE_TOPICS)),
        ("GET", "/v1/console/tail", {"pattern": "orders"}, b"", "", ApiRoute(ONE, topic="orders")),
        ("GET", "/v1/console/tail", {"pattern": "orders.*"}, b"", "", ApiRoute(TAILS)),
        ("GET", "/v1/console/tail", {}, b"", "", HERE),
        ("GET", "/v1/console/cluster", {}, b"", "", HERE),
        ("GET", "/openapi.json", {}, b"", "", HERE),
        ("GET", "/ui/index.html", {}, b"", "", HERE),
        ("GET", "/v1/nothing", {}, b"", "", HERE),  # a 404 wherever it is asked
    ],
)
def test_where_a_request_goes(
    method: str, path: str, query: dict[str, str], body: bytes, prefix: str, expected: ApiRoute
) -> None:
    assert route(method, path, query, body, prefix) == expected


def test_listings_merge_into_one_cells_shape() -> None:
    topics = merge(
        TOPICS,
        [{"topics": ["b", "d"], "unavailable": {}}, {"topics": ["a", "c"], "unavailable": {"e": "damaged"}}],
    )
    assert topics == {"topics": ["a", "b", "c", "d"], "unavailable": {"e": "damaged"}}
    groups = merge(
        GROUPS,
        [{"groups": [{"group": "z", "kind": "native"}]}, {"groups": [{"group": "a", "kind": "native"}]}],
    )
    assert [entry["group"] for entry in groups["groups"]] == ["a", "z"]
    rows = merge(
        CONSOLE_TOPICS,
        [
            {"topics": [{"name": "b"}], "truncated": False, "rate_window_seconds": 4.0, "unavailable": {}},
            {"topics": [{"name": "a"}], "truncated": True, "rate_window_seconds": None, "unavailable": {}},
        ],
    )
    assert [row["name"] for row in rows["topics"]] == ["a", "b"]
    assert rows["truncated"] is True and rows["rate_window_seconds"] == 4.0
    assert rows["topics_max"] == limits.console_topics_max
    with pytest.raises(ValueError):
        merge(TOPICS, [{"topics": "not a list"}])
    with pytest.raises(ValueError):
        merge(GROUPS, [[]])


def test_a_group_is_found_in_every_cell_listing_it() -> None:
    listings = {
        "c0": {"groups": [{"group": "x", "members": 1}]},
        "c1": {"groups": [{"group": "g", "members": 2}]},
        "c2": {"groups": [{"group": "g"}, "not an entry"]},
    }
    cells = ["c0", "c1", "c2"]
    assert group_cells("g", cells, listings.__getitem__) == {"c1": 2, "c2": 0}
    assert group_cells("g", cells, listings.__getitem__, first=True) == {"c1": 2}
    assert group_cells("none", cells, listings.__getitem__) == {}


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
        return None

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
        self.nodes = {
            cell: Node.open(str(directory / cell), fsync=False, schema_id_base=schema_id_base(cell))
            for cell in (HOME_CELL, OTHER)
        }
        store = CredentialStore.open(str(directory / "credentials"))
        store.add_user("alice", "alice-secret")
        self.listeners = []
        with serving_authentication(Authenticator(store)):
            for cell, node in self.nodes.items():
                listener, registries = start_cells_registry_listener(self.catalog, "127.0.0.1", 0)

                def claim(topic: str, cell: str = cell) -> bool:
                    return self.catalog.claim(topic, cell)

                def release(topic: str, cell: str = cell) -> None:
                    self.catalog.release(topic, cell)

                registries.serve(
                    cell, cell_registry(node.engine, claim, release), cell_api(node, claim, release)
                )
                self.catalog.doors[cell] = ("127.0.0.1", listener.port)
                self.listeners.append(listener)

    def place(self, topic: str, cell: str) -> None:
        self.nodes[cell].engine.create_topic(topic)
        self.catalog.placements[topic] = cell

    def call(
        self, agent: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        sent = {"Authorization": CREDENTIALS, "Content-Type": "application/json", **(headers or {})}
        data = json.dumps(body).encode() if body is not None else None
        url = f"http://127.0.0.1:{self.listeners[agent].port}{path}"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, dict(answer.headers), json.loads(answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), json.loads(error.read())

    def ok(self, agent: int, method: str, path: str, body: Any = None) -> Any:
        status, _, document = self.call(agent, method, path, body)
        assert status in (200, 201), (status, document)
        return document

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for node in self.nodes.values():
            node.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[TwoAgents]:
    pair = TwoAgents(tmp_path)
    yield pair
    pair.close()


def _produce(agents: TwoAgents, agent: int, topic: str, values: list[str]) -> None:
    records = [{"key": f"k{index}", "value": value} for index, value in enumerate(values)]
    answer = agents.ok(agent, "POST", f"/v1/topics/{topic}/records", {"records": records})
    assert answer["count"] == len(values)


def test_each_cells_topics_are_produced_and_read_at_either_door(agents: TwoAgents) -> None:
    agents.place("far", OTHER)
    agents.place("near", HOME_CELL)
    _produce(agents, 0, "far", ["f1", "f2"])  # forwarded from agent 0 to agent 1
    _produce(agents, 1, "near", ["n1"])  # forwarded from agent 1 to agent 0
    assert agents.nodes[OTHER].engine.describe_topic("far").next_offset == 2
    assert agents.nodes[HOME_CELL].engine.describe_topic("near").next_offset == 1
    for agent in (0, 1):
        page = agents.ok(agent, "GET", "/v1/topics/far/records?offset=0")
        assert [record["value"] for record in page["records"]] == ["f1", "f2"]
        page = agents.ok(agent, "GET", "/v1/topics/near/records?offset=0")
        assert [record["value"] for record in page["records"]] == ["n1"]
        assert agents.ok(agent, "GET", "/v1/topics/far")["name"] == "far"
        listing = agents.ok(agent, "GET", "/v1/topics")
        assert listing == {"topics": ["far", "near"], "unavailable": {}}
        console = agents.ok(agent, "GET", "/v1/console/topics")
        assert [row["name"] for row in console["topics"]] == ["far", "near"]
        assert console["truncated"] is False
        assert agents.ok(agent, "GET", "/openapi.json")["openapi"].startswith("3.1")
    status, _, missing = agents.call(0, "GET", "/v1/topics/nowhere/records")
    assert status == 404 and missing["code"] == "topic_not_found"
    status, _, bad = agents.call(1, "GET", "/v1/topics/bad%20name/records")  # the home cell refuses it
    assert status == 400 and bad["code"] == "invalid_request", bad


def test_a_creation_places_the_topic_and_a_refused_one_leaves_nothing(agents: TwoAgents) -> None:
    created = agents.ok(1, "POST", "/v1/topics", {"name": "fresh"})  # forwarded to the home cell
    assert created["name"] == "fresh"
    assert agents.catalog.placements == {"fresh": HOME_CELL}
    assert "fresh" in agents.nodes[HOME_CELL].engine.list_topics()
    status, _, refused = agents.call(1, "POST", "/v1/topics", {"name": "broken", "cleanup": "sometimes"})
    assert status == 400, refused
    assert "broken" not in agents.catalog.placements
    assert "broken" not in agents.nodes[HOME_CELL].engine.list_topics()
    # A topic placed in the other cell is created there, whichever door is asked.
    agents.catalog.placements["elsewhere"] = OTHER
    agents.ok(0, "POST", "/v1/topics", {"name": "elsewhere"})
    assert "elsewhere" in agents.nodes[OTHER].engine.list_topics()
    assert "elsewhere" not in agents.nodes[HOME_CELL].engine.list_topics()
    status, _, exists = agents.call(1, "POST", "/v1/topics", {"name": "fresh"})
    assert status == 409 and exists["code"] == "topic_exists"
    assert agents.catalog.placements["fresh"] == HOME_CELL


def test_a_tail_of_the_other_cells_topic_streams_through_either_door(agents: TwoAgents) -> None:
    agents.place("far", OTHER)
    _produce(agents, 1, "far", ["before"])
    headers = {"Authorization": CREDENTIALS}
    tail = EventReader(agents.listeners[0].port, "/v1/topics/far/events?start=latest", headers)
    console = EventReader(agents.listeners[0].port, "/v1/console/tail?pattern=far&start=latest", headers)
    try:
        assert tail.status == 200 and tail.headers["Content-Type"] == "text/event-stream"
        assert console.status == 200
        _produce(agents, 1, "far", ["after-1", "after-2"])  # appended after the tails started
        assert [event["data"]["value"] for event in tail.records(2)] == ["after-1", "after-2"]
        assert [event["data"]["value"] for event in console.records(2)] == ["after-1", "after-2"]
    finally:
        tail.close()
        console.close()
    refused = EventReader(agents.listeners[0].port, "/v1/topics/nowhere/events", headers)
    try:
        assert refused.status == 404
    finally:
        refused.close()


def test_a_group_of_the_other_cells_topic_is_served_at_either_door(agents: TwoAgents) -> None:
    agents.place("far", OTHER)
    _produce(agents, 1, "far", ["a", "b"])
    joined = agents.ok(0, "POST", "/v1/groups/billing/members", {"pattern": "far", "start": "earliest"})
    member = joined["member"]
    assert agents.nodes[OTHER].groups.exists("billing")
    assert not agents.nodes[HOME_CELL].groups.exists("billing")
    base = f"/v1/groups/billing/members/{member}"
    polled = agents.ok(0, "POST", f"{base}/poll", {"max_records": 10, "timeout": 5})
    assert sorted(delivery["value"] for delivery in polled["deliveries"]) == ["a", "b"]
    refs = [{"topic": d["topic"], "offset": d["offset"], "lease": d["lease"]} for d in polled["deliveries"]]
    assert agents.ok(0, "POST", f"{base}/ack", {"deliveries": refs})["settled"] == 2
    for agent in (0, 1):
        listing = agents.ok(agent, "GET", "/v1/groups")
        assert [entry["group"] for entry in listing["groups"]] == ["billing"]
        assert agents.ok(agent, "GET", "/v1/groups/billing")["group"] == "billing"
    status, _, missing = agents.call(0, "GET", "/v1/groups/nobody")
    assert status == 404, missing
    agents.ok(0, "DELETE", f"{base}")
    agents.ok(1, "DELETE", "/v1/groups/billing")
    assert not agents.nodes[OTHER].groups.exists("billing")


def _refs(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"topic": d["topic"], "offset": d["offset"], "lease": d["lease"]} for d in deliveries]


def _poll_until(agents: TwoAgents, agent: int, base: str, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(20):
        got += agents.ok(agent, "POST", f"{base}/poll", {"max_records": 10, "timeout": 1})["deliveries"]
        if len(got) >= count:
            return got
    raise AssertionError(f"{len(got)} of {count} deliveries: {got}")


def test_a_member_by_pattern_is_a_member_of_every_cell_through_either_door(agents: TwoAgents) -> None:
    agents.place("jobs.far", OTHER)
    agents.place("jobs.near", HOME_CELL)
    _produce(agents, 0, "jobs.far", ["f1", "f2"])
    _produce(agents, 1, "jobs.near", ["n1"])
    joined = agents.ok(1, "POST", "/v1/groups/crew/members", {"pattern": "jobs.*", "start": "earliest"})
    member = joined["member"]
    assert member.startswith("cells.") and joined["group"] == "crew"
    for node in agents.nodes.values():  # one member, with one id, in each cell's group
        assert [entry.member for entry in node.groups.describe_group("crew").members] == [member]
    base = f"/v1/groups/crew/members/{member}"
    got = _poll_until(agents, 0, base, 3)  # polled through the other door than the join's
    assert sorted((d["topic"], d["value"]) for d in got) == [
        ("jobs.far", "f1"),
        ("jobs.far", "f2"),
        ("jobs.near", "n1"),
    ]
    far = sorted((d for d in got if d["topic"] == "jobs.far"), key=lambda d: d["offset"])
    near = [d for d in got if d["topic"] == "jobs.near"]
    assert agents.ok(1, "POST", f"{base}/nack", {"deliveries": _refs(far[1:]), "delay": 0}) == {
        "settled": 1,
        "rejected": [],
    }
    settled = agents.ok(0, "POST", f"{base}/ack", {"deliveries": _refs([*far[:1], *near])})
    assert settled == {"settled": 2, "rejected": []}
    again = _poll_until(agents, 1, base, 1)  # the given-back delivery, once more
    assert [(d["topic"], d["value"]) for d in again] == [("jobs.far", "f2")]
    late = agents.ok(1, "POST", f"{base}/ack", {"deliveries": _refs([*again, *far[:1]])})
    assert late["settled"] == 1 and [r["status"] for r in late["rejected"]] == ["done"]
    info = agents.ok(0, "GET", "/v1/groups/crew")
    assert [entry["member"] for entry in info["members"]] == [member]
    assert sum(topic["committed"] for topic in info["topics"]) == 3
    status, _, refused = agents.call(0, "POST", f"{base}/poll", {"max_records": 0})
    assert status == 400 and "max_records" in refused["message"], refused  # as one node refuses it
    assert agents.ok(1, "POST", f"{base}/ack", {"deliveries": []}) == {"settled": 0, "rejected": []}
    status, _, refused = agents.call(1, "POST", f"{base}/ack", {"deliveries": [{"offset": 0, "lease": 1}]})
    assert status == 400 and refused["code"] == "invalid_request", refused
    assert agents.ok(0, "DELETE", base) == {"left": member}
    for node in agents.nodes.values():
        assert node.groups.describe_group("crew").members == []
    status, _, gone = agents.call(1, "DELETE", base)
    assert status == 404 and gone["code"] == "unknown_member", gone
    status, _, gone = agents.call(1, "POST", f"{base}/poll", {"timeout": 0})
    assert status == 404 and gone["code"] == "unknown_member", gone


def test_a_member_forgotten_by_one_cell_or_not_joined_by_one_leaves_every_cell(agents: TwoAgents) -> None:
    agents.place("jobs.far", OTHER)
    member = agents.ok(0, "POST", "/v1/groups/crew/members", {"pattern": "jobs.>"})["member"]
    assert agents.nodes[OTHER].groups.leave("crew", member)  # as when it expired there
    status, _, gone = agents.call(0, "POST", f"/v1/groups/crew/members/{member}/poll", {"timeout": 0.5})
    assert status == 404 and gone["code"] == "unknown_member", gone
    assert agents.nodes[HOME_CELL].groups.describe_group("crew").members == []  # left there too
    agents.catalog.doors[OTHER] = None  # the other cell has no agent now: it cannot join
    status, _, refused = agents.call(0, "POST", "/v1/groups/crew/members", {"pattern": "jobs.>"})
    assert status == 503, refused
    assert agents.nodes[HOME_CELL].groups.describe_group("crew").members == []  # nothing half-joined


def test_a_console_tail_of_a_pattern_streams_every_cells_topics(agents: TwoAgents) -> None:
    agents.place("jobs.far", OTHER)
    agents.place("jobs.near", HOME_CELL)
    headers = {"Authorization": CREDENTIALS}
    tails = [
        EventReader(agents.listeners[agent].port, "/v1/console/tail?pattern=jobs.*", headers)
        for agent in (0, 1)
    ]
    try:
        assert [tail.status for tail in tails] == [200, 200]
        assert tails[0].headers["Content-Type"] == "text/event-stream"
        _produce(agents, 0, "jobs.far", ["f1", "f2"])
        _produce(agents, 1, "jobs.near", ["n1"])
        agents.place("jobs.new", OTHER)  # created while tailing: followed from its first record
        _produce(agents, 0, "jobs.new", ["w1"])
        for tail in tails:
            got = [(event["data"]["topic"], event["data"]["value"]) for event in tail.records(4)]
            assert sorted(got) == [
                ("jobs.far", "f1"),
                ("jobs.far", "f2"),
                ("jobs.near", "n1"),
                ("jobs.new", "w1"),
            ]
            assert got.index(("jobs.far", "f1")) < got.index(("jobs.far", "f2"))  # a topic's order kept
        agents.listeners[1].close()  # the other cell's agent stops: its tails end
        for tail in tails:
            ended = tail.next()
            while ended.get("event") not in ("end", "error"):
                ended = tail.next()
                assert ended, "the tail ended without an event saying why"
            assert tail.next() == {}  # then the stream ends
    finally:
        for tail in tails:
            tail.close()
    status, _, refused = agents.call(0, "GET", "/v1/console/tail?pattern=jobs.*&start=never")
    assert status == 400 and "start" in refused["message"], refused


def test_what_cannot_be_answered_now_is_a_retriable_503(agents: TwoAgents) -> None:
    # A forwarded request for a cell the agent does not serve (it changed hands).
    status, headers, answer = agents.call(0, "GET", "/v1/topics", headers={"X-Odradek-Cell": OTHER})
    assert status == 503 and answer["code"] == "unavailable" and OTHER in answer["message"]
    assert headers["Retry-After"] == "1"
    agents.place("far", OTHER)
    # A cell without an owner (a failover in progress).
    door = agents.catalog.doors[OTHER]
    agents.catalog.doors[OTHER] = None
    status, headers, answer = agents.call(0, "GET", "/v1/topics/far/records")
    assert status == 503 and "no agent with a registry door serves cell" in answer["message"]
    assert headers["Retry-After"] == "1"
    status, _, answer = agents.call(0, "GET", "/v1/topics")  # a listing needs every cell
    assert status == 503 and answer["code"] == "unavailable"
    # An owner out of reach.
    agents.listeners[1].close()
    agents.catalog.doors[OTHER] = door
    for path in ("/v1/topics/far/records", "/v1/groups", "/v1/groups/g"):
        status, headers, answer = agents.call(0, "GET", path)
        assert status == 503 and "did not answer" in answer["message"], (path, answer)
        assert headers["Retry-After"] == "1"
    tail = EventReader(agents.listeners[0].port, "/v1/topics/far/events", {"Authorization": CREDENTIALS})
    try:
        assert tail.status == 503 and tail.headers["Retry-After"] == "1"
    finally:
        tail.close()


def test_over_tls_a_request_is_forwarded_with_its_credentials_and_a_certificate_is_sent_on(
    tmp_path: Path,
) -> None:
    """Two TLS doors authenticating by password or client certificate: a request with a
    password on the other cell's topic is forwarded over TLS (the agent presenting its
    own certificate), its tail relayed; one authenticated by its certificate alone is
    answered 421 naming the door to call (its identity cannot travel)."""
    import http.client
    import ssl
    import sys

    from odradek.protocols.bounded_http import serving_tls
    from odradek.protocols.tls import ServerTls, TlsFiles

    sys.path.insert(0, str(Path(__file__).parents[2] / "cluster"))
    from etcd_certificates import make_certificates

    files = make_certificates(tmp_path / "certificates")
    tls = ServerTls(TlsFiles(str(files.server_cert), str(files.server_key), str(files.ca)))
    catalog = Catalog()
    nodes = {cell: Node.open(str(tmp_path / cell), fsync=False) for cell in (HOME_CELL, OTHER)}
    store = CredentialStore.open(str(tmp_path / "credentials"))
    store.add_user("alice", "alice-secret")
    listeners = []
    try:
        with serving_tls(tls.context), serving_authentication(Authenticator(store, mtls=True)):
            for cell, node in nodes.items():
                listener, registries = start_cells_registry_listener(
                    catalog, "127.0.0.1", 0, forward_tls=tls.agent_client_context
                )
                registries.serve(
                    cell,
                    cell_registry(node.engine, lambda _: True, lambda _: None),
                    cell_api(node, lambda _: True, lambda _: None),
                )
                catalog.doors[cell] = ("127.0.0.1", listener.port)
                listeners.append(listener)
        nodes[OTHER].engine.create_topic("far")
        catalog.placements["far"] = OTHER
        context = ssl.create_default_context(cafile=str(files.ca))
        context.load_cert_chain(str(files.client_cert), str(files.client_key))

        def call(method: str, path: str, body: Any = None, password: bool = True) -> tuple[int, Any]:
            headers = {
                "Content-Type": "application/json",
                **({"Authorization": CREDENTIALS} if password else {}),
            }
            data = json.dumps(body).encode() if body is not None else None
            url = f"https://localhost:{listeners[0].port}{path}"
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60, context=context) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                with error:
                    return error.code, json.loads(error.read())

        connection = http.client.HTTPSConnection("localhost", listeners[0].port, timeout=60, context=context)
        tail: http.client.HTTPResponse | None = None
        try:
            connection.request(
                "GET", "/v1/topics/far/events?start=latest", headers={"Authorization": CREDENTIALS}
            )
            tail = connection.getresponse()
            assert tail.status == 200
            status, produced = call(
                "POST", "/v1/topics/far/records", {"records": [{"key": "k", "value": "v"}]}
            )
            assert status == 200 and produced["count"] == 1
            assert nodes[OTHER].engine.describe_topic("far").next_offset == 1
            while (line := tail.readline()) and not line.startswith(b"data:"):
                pass
            assert json.loads(line.removeprefix(b"data:"))["value"] == "v"
        finally:
            if tail is not None:
                tail.close()  # it holds the socket too
            connection.close()
        status, refused = call("GET", "/v1/topics/far/records", password=False)
        assert status == 421 and refused["code"] == "misdirected", refused
        assert f"127.0.0.1:{listeners[1].port}" in refused["message"]
        status, _ = call("GET", "/v1/topics/nowhere", password=False)  # its own cell: answered here
        assert status == 404
    finally:
        for listener in listeners:
            listener.close()
        for node in nodes.values():
            node.close()
