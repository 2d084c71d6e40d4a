"""Synchronous commit under concurrency: read-your-writes through a view, every time.

Goal: an append with ``wait_for=["view:orders_by_customer"]`` returns only once the
view applied it, so a ``view_get`` right after it sees the order, on every one of many
appends from several threads at once, through the embedded client and through the
remote client of a Flight server; an append waiting for a group does not hold the
topic: other appends go on meanwhile; a view stopped by its reducer's error ends the
waits for it at once with ``WaitTimeout`` (not at the timeout). Method: threads that
each append orders of their own customer and check the view after each; the group
case blocks one append on a group nobody acks, while another thread appends (the test
would hang, and fail at its deadline, if the wait held the writer). A reducer given as
a function is stored by the embedded client, refused by the remote one. The Flight
``wait_for`` action answers a waiter gone since the check as pending.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
import pytest

import odradek
from odradek.errors import InvalidRequest, WaitTimeout
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.views.reducers import latest

THREADS = 4
ORDERS_PER_THREAD = 25
DEADLINE_SECONDS = 60.0


@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "embedded":
        with odradek.open(tmp_path / "data") as embedded:
            yield embedded
        return
    node = Node.open(tmp_path / "data")
    server = FlightService(node, "grpc://127.0.0.1:0")
    remote = odradek.connect(f"grpc://127.0.0.1:{server.port}")
    try:
        yield remote
    finally:
        remote.close()
        server.drain(5.0)
        node.close()


def test_read_your_writes_through_a_view_under_concurrency(client: Any) -> None:
    client.create_topic("orders.eu")
    client.create_view("orders_by_customer", "orders.>", "view_reducers:orders", key="view_reducers:customer")
    failures: list[str] = []

    def shop(number: int) -> None:
        customer = f"c{number}"
        try:
            for index in range(ORDERS_PER_THREAD):
                order_id = f"o{number}-{index}"
                value = json.dumps({"customer": customer}).encode()
                client.append(
                    "orders.eu",
                    [{"key": order_id.encode(), "value": value}],
                    wait_for=["view:orders_by_customer"],
                    timeout=DEADLINE_SECONDS,
                )
                state = client.view_get("orders_by_customer", customer)
                if state is None or order_id not in json.loads(state):
                    failures.append(f"{order_id} not in the view right after its append: {state!r}")
        except Exception as exc:  # noqa: BLE001 (reported below, with the others)
            failures.append(repr(exc))

    threads = [threading.Thread(target=shop, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for number in range(THREADS):
        state = client.view_get("orders_by_customer", f"c{number}")
        assert len(json.loads(state)) == ORDERS_PER_THREAD


def test_an_append_waiting_for_a_group_does_not_hold_the_topic(client: Any) -> None:
    client.create_topic("jobs")
    consumer = client.subscribe("jobs", group="slow", start="earliest")
    outcome: list[Any] = []

    def waiting_append() -> None:
        try:
            client.append(
                "jobs", [{"key": b"a", "value": b"1"}], wait_for=["group:slow"], timeout=DEADLINE_SECONDS
            )
            outcome.append("acked")
        except Exception as exc:  # noqa: BLE001 (the assertion below shows it)
            outcome.append(exc)

    waiter = threading.Thread(target=waiting_append)
    waiter.start()
    try:
        # The waiting append is written (then waits): a plain append goes on beside it.
        deliveries = consumer.poll(max_records=1, timeout=DEADLINE_SECONDS)
        assert [d.offset for d in deliveries] == [0]
        result = client.append("jobs", [{"key": b"b", "value": b"2"}])
        assert result.base_offset == 1
        assert outcome == []  # still waiting: nobody acked offset 0
        consumer.ack(deliveries)
    finally:
        waiter.join(DEADLINE_SECONDS)
        consumer.close()
    assert outcome == ["acked"]


def test_a_stopped_view_ends_the_waits_for_it_at_once(client: Any) -> None:
    client.create_topic("t")
    client.create_view("stuck", "t", "view_reducers:fails_on_poison")
    client.append("t", [{"key": b"a", "value": b"poison"}])  # the view stops at offset 0
    with pytest.raises(WaitTimeout, match="stopped") as caught:
        client.append("t", [{"key": b"a", "value": b"1"}], wait_for=["view:stuck"], timeout=DEADLINE_SECONDS)
    assert caught.value.pending == ["view:stuck"]
    assert caught.value.result is not None and caught.value.result.base_offset == 1


def test_a_function_is_taken_by_the_embedded_client_only(client: Any) -> None:
    client.create_topic("t")
    if isinstance(client, odradek.EmbeddedClient):
        assert client.create_view("v", "t", latest)["reducer"] == "odradek.views.reducers:latest"
    else:
        with pytest.raises(InvalidRequest, match="import path"):
            client.create_view("v", "t", latest)
        assert client.list_views() == []


def test_a_waiter_gone_by_the_wait_ends_it_as_pending_not_as_a_refusal(tmp_path: Path) -> None:
    # The remote client checks the waiters, appends, then waits: a view deleted between
    # the check and the wait must end the wait as pending (the append is written by then),
    # never with the refusal meant for before the append.
    node = Node.open(tmp_path / "data")
    server = FlightService(node, "grpc://127.0.0.1:0")
    plain = flight.FlightClient(f"grpc://127.0.0.1:{server.port}")
    try:
        node.engine.create_topic("t")
        node.engine.append("t", [{"key": b"k", "value": b"v"}])
        body = {"topic": "t", "wait_for": ["view:gone"], "timeout": 5.0, "base_offset": 0, "count": 1}
        results = list(plain.do_action(flight.Action("wait_for", json.dumps(body).encode())))
        answer = json.loads(results[0].body.to_pybytes())
        assert answer["pending"] == ["view:gone"]
        assert "gone" in answer["message"]
    finally:
        plain.close()
        server.drain(5.0)
        node.close()
