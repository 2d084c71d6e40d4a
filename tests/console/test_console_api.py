"""The console's side of the listener: its assets at /ui and its endpoints under /v1/console.

Goal: /ui serves the built console (and only its files: no path from a request reaches
the disk), behind the listener's authentication like the HTTP API, with a Basic
challenge a browser answers; /v1/console/topics gives sizes and rates (the rates from
samples in time); /v1/console/tail follows every topic a pattern matches, topics created
while it runs included, and refuses bad patterns, missing topics and patterns matching
too many topics with clear errors, holding its stream slot only while it runs;
/v1/console/cluster says whether the server is clustered; with authorization the
console shows only what the principal may describe and read, and the cluster page
shows a cluster agent's agents. Method: the real listener
in-process over a fresh node (and inside serving_authentication for the secured
cases); urllib and http.client as clients; one headless Chromium with credentials for
the secured page; the rate sampler with explicit times.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_server import EventReader

from odradek import limits
from odradek.console.api import ConsoleApi, RateSampler
from odradek.node import Node
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.http_api import ApiRequest, ApiResponse, HttpApi
from odradek.protocols.registry import RegistryListener, start_registry_listener
from odradek.security import Authenticator, CredentialStore
from odradek.security.acl import binding
from odradek.security.authorizer import enable_authorization

# A condition the test waits for holds within this (generous: never a timing asserted).
DEADLINE_SECONDS = 30.0


class Listener:
    def __init__(self, node: Node, listener: RegistryListener) -> None:
        self.node = node
        self.listener = listener
        self.base = f"http://127.0.0.1:{listener.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Listener]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    yield Listener(node, listener)
    listener.close()
    node.close()


# -- the assets ----------------------------------------------------------------------------------


def test_ui_serves_the_built_console(served: Listener) -> None:
    status, headers, _ = served.get("/ui")
    assert (status, headers["Location"]) == (308, "/ui/")
    status, headers, body = served.get("/ui/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert (
        headers["Cache-Control"] == "no-cache" and "default-src 'self'" in headers["Content-Security-Policy"]
    )
    assert b"<title>Odradek console</title>" in body
    asset = body.decode().split('src="./', 1)[1].split('"', 1)[0]
    status, headers, script = served.get(f"/ui/{asset}")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and script
    assert "immutable" in headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nothing.js",
        "/ui/../pyproject.toml",
        "/ui/%2e%2e/pyproject.toml",
        "/ui/assets/",
        "/ui//etc/passwd",
    ],
)
def test_only_the_builds_files_are_served(served: Listener, path: str) -> None:
    status, _, body = served.get(path)
    assert status == 404, (path, status, body)
    assert json.loads(body)["code"] == "not_found"


def test_ui_answers_only_get(served: Listener) -> None:
    request = urllib.request.Request(served.base + "/ui/", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    with refused.value as error:
        assert error.code == 405 and error.headers["Allow"] == "GET"


# -- topics and rates ------------------------------------------------------------------------------


def test_topics_give_sizes_and_rates_from_samples(served: Listener) -> None:
    engine = served.node.engine
    engine.create_topic("rates.a")
    engine.create_topic("other")
    engine.append("rates.a", [{"key": b"k", "value": b"v" * 100}] * 5)
    listing = served.json("/v1/console/topics?pattern=rates.>")
    assert [row["name"] for row in listing["topics"]] == ["rates.a"]
    (row,) = listing["topics"]
    assert row["records"] == 5 and row["bytes"] > 500 and row["next_offset"] == 5
    assert row["records_per_second"] is None and listing["rate_window_seconds"] is None
    status, _, body = served.get("/v1/console/topics?pattern=a..b")
    assert status == 400 and json.loads(body)["code"] == "invalid_request"


def test_rates_are_the_growth_since_the_oldest_kept_sample() -> None:
    sampler = RateSampler(samples_max=3, sample_seconds_min=1.0)
    assert sampler.rates(100.0, {"t": (0, 500)}) == ({}, None)
    rates, span = sampler.rates(102.0, {"t": (50, 1000), "new": (5, 5)})
    assert span == 2.0 and rates == {"t": (25.0, 250.0)}  # a topic new since: no rate yet
    rates, span = sampler.rates(102.5, {"t": (60, 400)})  # half a second later: not kept
    assert span == 2.5 and rates["t"] == (24.0, 0.0)  # bytes shrank (retention): 0, not < 0
    sampler.rates(104.0, {"t": (100, 2000)})
    sampler.rates(106.0, {"t": (200, 3000)})  # 3 kept: 102, 104, 106; 100 dropped
    rates, span = sampler.rates(108.0, {"t": (300, 4000)})
    assert span == 6.0 and rates["t"] == ((300 - 50) / 6.0, (4000 - 1000) / 6.0)


# -- the pattern's tail ------------------------------------------------------------------------------


def test_a_pattern_tail_follows_every_matching_topic(served: Listener) -> None:
    engine = served.node.engine
    engine.create_topic("shop.eu")
    engine.create_topic("bank.eu")
    engine.append("shop.eu", [{"key": b"old", "value": b"before the tail"}])
    reader = EventReader(served.listener.port, "/v1/console/tail?pattern=shop.>")
    try:
        assert reader.status == 200 and reader.headers["Content-Type"] == "text/event-stream"
        _wait_for(lambda: served.listener.api is not None and served.listener.api.streams.open == 1)
        engine.append("shop.eu", [{"key": b"a", "value": b"one"}])
        engine.append("bank.eu", [{"key": b"x", "value": b"not matched"}])
        engine.create_topic("shop.us")  # created while tailing: followed from its first record
        engine.append("shop.us", [{"key": b"b", "value": b"two"}])
        first, second = reader.records(2)
        assert (first["topic"], first["offset"], first["value"]) == ("shop.eu", 1, "one")
        assert (second["topic"], second["offset"], second["value"]) == ("shop.us", 0, "two")
    finally:
        reader.close()
    _wait_for(lambda: served.listener.api is not None and served.listener.api.streams.open == 0)


def test_a_tail_from_the_earliest_and_of_a_schemad_topic(served: Listener) -> None:
    engine = served.node.engine
    engine.create_topic("typed", schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    engine.append("typed", [{"key": b"k", "value": b'{"n": 1}'}])
    reader = EventReader(served.listener.port, "/v1/console/tail?pattern=typed&start=earliest")
    try:
        (record,) = reader.records(1)
        assert record["topic"] == "typed" and record["value"] == {"n": 1}
    finally:
        reader.close()


def test_a_tail_outlives_a_deleted_topic_and_ends_when_the_server_stops(tmp_path: Path) -> None:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    try:
        node.engine.create_topic("gone.a")
        node.engine.create_topic("gone.b")
        reader = EventReader(listener.port, "/v1/console/tail?pattern=gone.>")
        try:
            _wait_for(lambda: listener.api is not None and listener.api.streams.open == 1)
            node.engine.append("gone.a", [{"key": b"k", "value": b"a"}])
            assert [r["topic"] for r in reader.records(1)] == ["gone.a"]
            node.engine.delete_topic("gone.a")
            node.engine.append("gone.b", [{"key": b"k", "value": b"b"}])
            assert [r["topic"] for r in reader.records(1)] == ["gone.b"]
            listener.close()  # drains: the tail ends with an end event
            events = []
            while event := reader.next():
                events.append(event)
            assert events[-1]["event"] == "end" and "shutting down" in events[-1]["data"]["reason"]
        finally:
            reader.close()
    finally:
        listener.close()
        node.close()


def test_a_recent_tail_starts_a_screen_before_the_end(
    served: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "console_tail_recent_records", 2)
    engine = served.node.engine
    engine.create_topic("long")
    engine.append("long", [{"key": b"k", "value": str(n).encode()} for n in range(5)])
    engine.create_topic("short")
    engine.append("short", [{"key": b"k", "value": b"only"}])
    reader = EventReader(served.listener.port, "/v1/console/tail?pattern=*&start=recent")
    try:
        records = reader.records(3)
        assert [(r["topic"], r["offset"]) for r in records] == [("long", 3), ("long", 4), ("short", 0)]
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("", 400, "invalid_request"),
        ("?pattern=a..b", 400, "invalid_request"),
        ("?pattern=missing", 404, "topic_not_found"),
        ("?pattern=many.>&start=yesterday", 400, "invalid_request"),
    ],
)
def test_a_bad_tail_is_refused_before_it_starts(served: Listener, query: str, status: int, code: str) -> None:
    answer = served.get("/v1/console/tail" + query)
    assert (answer[0], json.loads(answer[2])["code"]) == (status, code)
    assert served.listener.api is not None and served.listener.api.streams.open == 0


def test_a_pattern_matching_too_many_topics_is_refused(
    served: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "console_tail_topics_max", 2)
    for name in ("many.a", "many.b", "many.c"):
        served.node.engine.create_topic(name)
    status, _, body = served.get("/v1/console/tail?pattern=many.>")
    assert status == 400 and "matches 3 topics" in json.loads(body)["message"]
    assert served.listener.api is not None and served.listener.api.streams.open == 0


# -- the cluster -----------------------------------------------------------------------------------


def test_a_single_node_is_not_clustered(served: Listener) -> None:
    assert served.json("/v1/console/cluster") == {"clustered": False}


def test_a_cluster_agent_gives_its_status(served: Listener) -> None:
    status = {"cluster": "prod", "agents": [{"id": "a1", "role": "owner"}]}
    console = ConsoleApi(HttpApi(served.node), lambda: status)
    answer = console.handle(ApiRequest("GET", "/v1/console/cluster"))
    assert isinstance(answer, ApiResponse) and answer.document() == {"clustered": True, "status": status}
    refused = console.handle(ApiRequest("DELETE", "/v1/console/cluster"))
    assert isinstance(refused, ApiResponse) and refused.status == 405
    missing = console.handle(ApiRequest("GET", "/v1/console/nothing"))
    assert isinstance(missing, ApiResponse) and missing.status == 404


# -- authentication --------------------------------------------------------------------------------


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Listener]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    store.add_user("alice", "alice-secret")
    with serving_authentication(Authenticator(store)):
        listener = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    yield Listener(node, listener)
    listener.close()
    node.close()


def test_the_console_needs_the_listeners_credentials(secured: Listener) -> None:
    for path in ("/ui/", "/v1/console/topics", "/v1/console/tail?pattern=x"):
        status, headers, _ = secured.get(path)
        assert status == 401 and "Basic" in headers["WWW-Authenticate"], path  # a browser prompts
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-secret").decode()}
    assert secured.get("/ui/", good)[0] == 200
    assert secured.get("/v1/console/topics", good)[0] == 200


def test_a_browser_with_credentials_sees_the_console(secured: Listener, browser: Any, tmp_path: Path) -> None:
    secured.node.engine.create_topic("secret.topic")
    secured.node.engine.append("secret.topic", [{"key": b"k", "value": b"v"}])
    context = browser.new_context(http_credentials={"username": "alice", "password": "alice-secret"})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_SECONDS * 1000)
    try:
        page.goto(secured.base + "/ui/#/tail?pattern=secret.topic&start=earliest")
        page.locator("[data-testid=tail] td", has_text="secret.topic").wait_for()
        page.screenshot(path=str(tmp_path / "secured.png"))
        print(f"screenshot: {tmp_path / 'secured.png'}")
    finally:
        context.close()


def _wait_for(condition: Any) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


# -- authorization ---------------------------------------------------------------------------------

AGENTS = {"cluster": "prod", "agent": "agent-a", "agents": [{"id": "agent-a"}, {"id": "agent-b"}]}


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Listener]:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    store.add_user("root", "root-secret", admin=True)
    store.add_user("alice", "alice-secret")
    authenticator = Authenticator(store)
    enable_authorization(authenticator).store.add(
        [
            binding("User:alice", "topic", "prefixed", "open.", "read", "allow"),
            binding("User:alice", "topic", "prefixed", "open.", "describe", "allow"),
        ]
    )
    with serving_authentication(authenticator):
        listener = start_registry_listener(
            node.engine, node.engine.path, "127.0.0.1", 0, cluster_status=lambda: AGENTS
        )
    yield Listener(node, listener)
    listener.close()
    node.close()


def _as(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{user}-secret".encode()).decode()}


def test_the_console_shows_only_what_the_principal_may_see(guarded: Listener) -> None:
    engine = guarded.node.engine
    for name in ("open.a", "secret.a"):
        engine.create_topic(name)
    status, _, body = guarded.get("/v1/console/topics", _as("alice"))
    assert status == 200 and [row["name"] for row in json.loads(body)["topics"]] == ["open.a"]
    status, _, body = guarded.get("/v1/console/tail?pattern=secret.a", _as("alice"))
    assert (status, json.loads(body)["code"]) == (403, "unauthorized")
    status, _, body = guarded.get("/v1/console/cluster", _as("alice"))
    assert (status, json.loads(body)["code"]) == (403, "unauthorized")
    status, _, body = guarded.get("/v1/console/cluster", _as("root"))
    assert (status, json.loads(body)) == (200, {"clustered": True, "status": AGENTS})
    reader = EventReader(guarded.listener.port, "/v1/console/tail?pattern=>", _as("alice"))
    try:
        assert reader.status == 200
        _wait_for(lambda: guarded.listener.api is not None and guarded.listener.api.streams.open == 1)
        engine.append("secret.a", [{"key": b"s", "value": b"not for alice"}])
        engine.append("open.a", [{"key": b"o", "value": b"first"}])
        engine.append("open.a", [{"key": b"o", "value": b"second"}])
        records = reader.records(2)
        assert [(r["topic"], r["value"]) for r in records] == [("open.a", "first"), ("open.a", "second")]
    finally:
        reader.close()


def test_the_cluster_page_shows_the_agents(guarded: Listener, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(http_credentials={"username": "root", "password": "root-secret"})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_SECONDS * 1000)
    try:
        page.goto(guarded.base + "/ui/")
        page.locator("nav a[data-page=cluster]").click()
        page.locator("[data-testid=agents] td", has_text="agent-b").wait_for()
        assert '"cluster": "prod"' in page.locator("[data-testid=cluster-status]").inner_text()
        page.screenshot(path=str(tmp_path / "cluster.png"))
        print(f"screenshot: {tmp_path / 'cluster.png'}")
    finally:
        context.close()
