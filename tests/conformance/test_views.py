"""Conformance of materialized key views and synchronous commit over every door.

Goal: ``create_view``, ``view_get``, ``view_scan``, ``describe_view``, ``list_views``,
``delete_view`` and ``append(..., wait_for=[...])`` answer the same through the
embedded, remote, asyncio, object-store and cluster clients, with the same errors
(exact classes and attributes, ``WaitTimeout.pending`` and ``.result`` included), and
an append that names a waiter that does not exist writes nothing. Method: the
``client`` fixture over every door, with the reducers that come with Odradek
(``odradek.views.reducers``), which every server can import, and, on a schema'd topic,
those of tests/views/view_reducers.py (which read a typed value's dict fields). Waits never sleep: an
append with ``wait_for`` returns once the view applied it, and ``view_get`` right after
must see it.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from odradek.errors import InvalidRequest, ViewNotFound, WaitTimeout

# The view tests' reducers (tests/views/view_reducers.py), imported by name: every
# server of this suite runs in the test's process.
sys.path.insert(0, str(Path(__file__).parents[1] / "views"))

Client = Any

LATEST = "odradek.views.reducers:latest"
COUNT = "odradek.views.reducers:count"


def test_a_view_sees_an_append_that_waited_for_it(client: Client) -> None:
    client.create_topic("orders.eu")
    described = client.create_view("last_order", "orders.>", LATEST)
    assert described["name"] == "last_order"
    assert described["pattern"] == "orders.>"
    assert described["reducer"] == LATEST
    assert described["status"] == "running"
    for number in range(5):
        value = b"v%d" % number
        result = client.append(
            "orders.eu", [{"key": b"k1", "value": value}], wait_for=["view:last_order"], timeout=30.0
        )
        assert result.count == 1
        assert client.view_get("last_order", b"k1") == value  # read-your-writes, every time
    assert client.view_get("last_order", "k1") == b"v4"  # a str key is its UTF-8
    assert client.view_get("last_order", b"missing") is None
    info = client.describe_view("last_order")
    assert info["offsets"] == {"orders.eu": 5}
    assert info["lag"] == {"orders.eu": 0}
    assert info["keys"] == 1
    assert info["error"] is None


ORDER_SCHEMA = {
    "type": "object",
    "properties": {"customer": {"type": "string"}, "amount": {"type": "integer"}},
    "required": ["customer", "amount"],
}


def test_a_view_on_a_schemad_topic_reduces_typed_values(client: Client) -> None:
    """A new view's reducer and key function read the dict fields of a schema'd topic's
    values; ``value_format="json"`` gives another view their JSON text."""
    client.create_topic("orders.typed", schema=ORDER_SCHEMA)
    described = client.create_view(
        "totals", "orders.typed", "view_reducers:typed_total", key="view_reducers:typed_customer"
    )
    assert described["value_format"] == "typed"
    text = client.create_view("sums", "orders.typed", "view_reducers:total", value_format="json")
    assert text["value_format"] == "json"
    orders = [("c1", 5), ("c2", 7), ("c1", 11)]
    for number, (who, amount) in enumerate(orders):
        client.append(
            "orders.typed",
            [{"key": b"o%d" % number, "value": {"customer": who, "amount": amount}}],
            wait_for=["view:totals", "view:sums"],
            timeout=30.0,
        )
    assert client.view_get("totals", b"c1") == b"16"
    assert client.view_get("totals", b"c2") == b"7"
    assert client.view_get("sums", b"o2") == b"11"
    assert client.describe_view("totals")["value_format"] == "typed"
    assert client.describe_view("sums")["value_format"] == "json"
    # exist_ok: the same definition without a value_format is the view; another is refused.
    assert client.create_view("sums", "orders.typed", "view_reducers:total", exist_ok=True)["name"] == "sums"
    with pytest.raises(InvalidRequest, match="exists"):
        client.create_view("sums", "orders.typed", "view_reducers:total", exist_ok=True, value_format="typed")
    with pytest.raises(InvalidRequest, match="value_format"):
        client.create_view("bad", "orders.typed", "view_reducers:total", value_format="wire")
    assert client.list_views() == ["sums", "totals"]
    last = client.create_view("last", "orders.typed", "odradek.views.reducers:latest")
    assert last["value_format"] == "typed"
    client.append(
        "orders.typed",
        [{"key": b"o9", "value": {"customer": "c3", "amount": 1}}],
        wait_for=["view:last"],
        timeout=30.0,
    )
    assert json.loads(client.view_get("last", b"o9")) == {"customer": "c3", "amount": 1}


def test_scan_returns_keys_of_a_prefix_in_order_in_pages(client: Client) -> None:
    client.create_topic("events")
    client.create_view("counts", "events", COUNT)
    records = [{"key": key, "value": b"x"} for key in [b"b2", b"a1", b"b1", b"c1", b"b1", b"b3"]]
    client.append("events", records, wait_for=["view:counts"], timeout=30.0)
    table = client.view_scan("counts", b"b")
    assert table.column_names == ["key", "state"]
    assert table.to_pylist() == [
        {"key": b"b1", "state": b"2"},
        {"key": b"b2", "state": b"1"},
        {"key": b"b3", "state": b"1"},
    ]
    assert client.view_scan("counts").num_rows == 5
    page = client.view_scan("counts", b"b", limit=2)
    assert page.column("key").to_pylist() == [b"b1", b"b2"]
    rest = client.view_scan("counts", b"b", after=b"b2", limit=2)
    assert rest.column("key").to_pylist() == [b"b3"]
    with pytest.raises(InvalidRequest):
        client.view_scan("counts", b"", limit=0)


def test_list_describe_and_delete_views(client: Client) -> None:
    client.create_topic("events")
    client.create_view("b_view", "events", COUNT)
    client.create_view("a_view", "events", LATEST)
    assert client.list_views() == ["a_view", "b_view"]
    again = client.create_view("a_view", "events", LATEST, exist_ok=True)
    assert again["name"] == "a_view"
    with pytest.raises(InvalidRequest, match="exists"):
        client.create_view("a_view", "events", COUNT)
    client.delete_view("a_view")
    assert client.list_views() == ["b_view"]
    with pytest.raises(ViewNotFound) as caught:
        client.view_get("a_view", b"k")
    assert caught.value.view == "a_view"
    with pytest.raises(ViewNotFound):
        client.describe_view("a_view")
    with pytest.raises(ViewNotFound):
        client.delete_view("a_view")


def test_bad_views_are_refused(client: Client) -> None:
    client.create_topic("events")
    with pytest.raises(InvalidRequest, match="view name"):
        client.create_view("bad name", "events", LATEST)
    with pytest.raises(InvalidRequest):
        client.create_view("v", "events..x", LATEST)
    with pytest.raises(InvalidRequest, match="import path"):
        client.create_view("v", "events", "not a path")
    with pytest.raises(InvalidRequest, match="cannot be imported"):
        client.create_view("v", "events", "odradek_no_such_module:reduce")
    with pytest.raises(InvalidRequest, match="not callable"):
        client.create_view("v", "events", "odradek.limits:views_max")
    assert client.list_views() == []


def test_unknown_waiters_are_refused_before_anything_is_written(client: Client) -> None:
    client.create_topic("events")
    client.create_topic("other")
    client.create_view("counts", "events", COUNT)
    record = [{"key": b"k", "value": b"v"}]
    with pytest.raises(ViewNotFound):
        client.append("events", record, wait_for=["view:nope"])
    with pytest.raises(InvalidRequest, match="does not exist"):
        client.append("events", record, wait_for=["group:nope"])
    with pytest.raises(InvalidRequest, match="does not read"):
        client.append("other", record, wait_for=["view:counts"])
    with pytest.raises(InvalidRequest, match="group:NAME"):
        client.append("events", record, wait_for=["counts"])
    with pytest.raises(InvalidRequest, match="list"):
        client.append("events", record, wait_for="view:counts")
    with pytest.raises(InvalidRequest, match="timeout"):
        client.append("events", record, wait_for=["view:counts"], timeout=0)
    assert client.describe_topic("events").next_offset == 0
    assert client.describe_topic("other").next_offset == 0


def test_a_group_that_does_not_ack_times_the_wait_out(client: Client) -> None:
    client.create_topic("jobs")
    consumer = client.subscribe("jobs", group="workers", start="earliest")
    try:
        with pytest.raises(WaitTimeout) as caught:
            client.append("jobs", [{"key": b"j", "value": b"1"}], wait_for=["group:workers"], timeout=0.2)
        assert caught.value.pending == ["group:workers"]
        assert caught.value.result.base_offset == 0
        assert caught.value.result.count == 1
        assert client.describe_topic("jobs").next_offset == 1  # durable all the same
        deliveries = consumer.poll(max_records=10, timeout=30.0)
        assert [d.offset for d in deliveries] == [0]
        consumer.ack(deliveries)

        # The next append returns once a member acked it: one acks it on another thread.
        acked: list[int] = []

        def work() -> None:
            while not acked:
                for delivery in consumer.poll(max_records=10, timeout=30.0):
                    consumer.ack(delivery)
                    acked.append(delivery.offset)

        worker = threading.Thread(target=work)
        worker.start()
        result = client.append(
            "jobs", [{"key": b"j", "value": b"2"}], wait_for=["group:workers"], timeout=60.0
        )
        worker.join()
        assert result.base_offset == 1
        assert acked == [1]
    finally:
        consumer.close()
