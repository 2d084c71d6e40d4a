"""Conformance of consumer groups: subscribe, poll, ack, nack, redelivery, administration.

Goal: a consumer from ``client.subscribe`` behaves the same through the embedded
client, the remote client (DoExchange) and the asyncio client: the same deliveries
with the same fields, the same ack results, redelivery after a nack or an ack timeout,
dead letters, deliveries given back on close, the same errors (exact classes), and
the same group administration. Method: the ``client`` fixture over the three doors;
ack timeouts are driven by a fake monotonic clock installed on the engine's group
manager (the in-process server's engine for the remote doors), so every poll that
must not wait uses ``timeout=0`` and nothing sleeps through a timeout.
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import ClosedError, InvalidRequest
from odradek.groups import DeliveryBatch

Client = Any


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock(door: Any) -> FakeClock:
    fake = FakeClock()
    door.node.groups.clock = fake
    return fake


def _keyed(client: Client, topic: str, keys: list[bytes]) -> None:
    client.append(topic, [{"key": key, "value": b"%s-%d" % (key, i)} for i, key in enumerate(keys)])


def test_poll_delivers_each_key_in_order_and_ack_settles(client: Client) -> None:
    client.create_topic("orders")
    client.append(
        "orders",
        [
            {"key": b"a", "value": b"a1", "headers": {"trace": b"t"}},
            {"key": b"a", "value": b"a2"},
            {"key": b"b", "value": b"b1"},
        ],
    )
    consumer = client.subscribe("orders", group="billing")
    first = consumer.poll(10, timeout=0)
    assert [(d.topic, d.offset, d.key, d.value, d.version, d.attempt) for d in first] == [
        ("orders", 0, b"a", b"a1", 1, 1),
        ("orders", 2, b"b", b"b1", 1, 1),
    ]
    assert dict(first[0].headers) == {"trace": b"t"} and dict(first[1].headers) == {}
    assert first[0].timestamp.tzinfo is not None
    result = consumer.ack(first)
    assert (result.settled, result.ok) == (2, True)
    second = consumer.poll(10, timeout=0)
    assert [(d.offset, d.version) for d in second] == [(1, 2)]
    consumer.ack(second[0])
    assert consumer.poll(10, timeout=0) == []
    info = client.describe_group("billing")
    assert (info.group, info.pattern, info.lag, len(info.members)) == ("billing", "orders", 0, 1)
    assert info.topics[0].committed == 3
    consumer.close()


def test_poll_batches_and_acking_a_batch(client: Client) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"k%d" % i for i in range(50)])
    consumer = client.subscribe("t", group="g")
    batches = consumer.poll_batches(30, timeout=0)
    assert [type(batch) for batch in batches] == [DeliveryBatch]
    records = batches[0].records
    assert records.num_rows == 30 and records.column("attempt").to_pylist() == [1] * 30
    assert records.column("offset").to_pylist() == list(range(30))
    assert consumer.ack(batches[0]).settled == 30
    assert len(consumer.poll(100, timeout=0)) == 20
    consumer.close()


def test_nack_redelivers_then_dead_letters(client: Client) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"bad", b"bad"])
    consumer = client.subscribe("t", group="g", max_deliveries=2)
    (delivery,) = consumer.poll(10, timeout=0)
    assert consumer.nack(delivery).settled == 1
    (again,) = consumer.poll(10, timeout=0)
    assert (again.offset, again.attempt) == (0, 2)
    consumer.nack([again], delay=0.0)
    (following,) = consumer.poll(10, timeout=0)
    assert (following.offset, following.attempt) == (1, 1)
    letters = [row for batch in client.read("dlq.g", wait=0) for row in batch.to_pylist()]
    assert [(row["key"], row["value"]) for row in letters] == [(b"bad", b"bad-0")]
    assert client.describe_group("g").dead_lettered == 1
    consumer.close()


def test_ack_timeout_redelivers(client: Client, clock: FakeClock) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"a"])
    consumer = client.subscribe("t", group="g", ack_timeout=1.0, max_deliveries=10)
    member = consumer.member_id
    assert [d.attempt for d in consumer.poll(10, timeout=0)] == [1]
    clock.advance(0.6)
    assert consumer.poll(10, timeout=0) == []  # still in flight; the poll keeps the member alive
    clock.advance(0.6)
    late = consumer.poll(10, timeout=0)
    assert [(d.offset, d.attempt) for d in late] == [(0, 2)]
    assert consumer.member_id == member
    assert consumer.ack(late).ok
    consumer.close()


def test_a_silent_member_is_replaced_by_a_new_join(client: Client, clock: FakeClock) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"a"])
    consumer = client.subscribe("t", group="g", ack_timeout=1.0)
    member = consumer.member_id
    assert len(consumer.poll(10, timeout=0)) == 1
    clock.advance(5)  # silent longer than ack_timeout:
    assert client.describe_group("g").members == []  # the group removed it
    (again,) = consumer.poll(10, timeout=0)  # the consumer joins again by itself
    assert again.attempt == 2
    assert consumer.member_id != member
    consumer.close()


def test_close_gives_unsettled_deliveries_back(client: Client) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"a", b"b"])
    first = client.subscribe("t", group="g")
    assert len(first.poll(10, timeout=0)) == 2
    first.close()
    first.close()  # twice is fine
    second = client.subscribe("t", group="g")
    assert sorted((d.key, d.attempt) for d in second.poll(10, timeout=0)) == [(b"a", 1), (b"b", 1)]
    second.close()
    with pytest.raises(ClosedError):
        first.poll(10, timeout=0)


def test_ack_results_and_refusals(client: Client) -> None:
    client.create_topic("t")
    _keyed(client, "t", [b"a", b"b"])
    consumer = client.subscribe("t", group="g")
    deliveries = consumer.poll(10, timeout=0)
    assert consumer.ack(deliveries[0]).ok
    twice = consumer.ack(deliveries)
    assert twice.settled == 1
    assert [(r.topic, r.offset, r.status) for r in twice.rejected] == [("t", deliveries[0].offset, "done")]
    assert consumer.ack([]).settled == 0
    for refused in (
        lambda: consumer.ack(["not a delivery"]),
        lambda: consumer.poll(0, timeout=0),
        lambda: consumer.poll(10, timeout=-1),
        lambda: consumer.nack(deliveries, delay=-1),
    ):
        with pytest.raises(InvalidRequest) as caught:
            refused()
        assert type(caught.value) is InvalidRequest
    _keyed(client, "t", [b"c"])
    assert [d.key for d in consumer.poll(10, timeout=0)] == [b"c"]  # still a member after refusals
    with pytest.raises(InvalidRequest):
        client.subscribe("t", group="g", max_deliveries=9)  # other options while it has members
    with pytest.raises(InvalidRequest):
        client.subscribe("t", group="bad group!")
    with pytest.raises(InvalidRequest):
        client.subscribe("t", group="g2", ordering="sideways")
    consumer.close()


def test_poll_waits_for_new_records(client: Client) -> None:
    client.create_topic("t")
    consumer = client.subscribe("t", group="g", start="latest")
    timer = threading.Timer(0.2, lambda: client.append("t", [{"key": b"k", "value": b"late"}]))
    timer.start()
    try:
        deliveries = consumer.poll(10, timeout=30.0)
    finally:
        timer.join()
    assert [d.value for d in deliveries] == [b"late"]
    consumer.close()


def test_group_administration(client: Client) -> None:
    client.create_topic("t")
    consumer = client.subscribe("t", group="g2")
    other = client.subscribe("t", group="g1", ordering="none")
    assert client.list_groups() == ["g1", "g2"]
    info = client.describe_group("g1")
    assert info.options["ordering"] == "none" and [m.member for m in info.members] == [other.member_id]
    assert consumer.describe().group == "g2"
    with pytest.raises(InvalidRequest):
        client.delete_group("g2")  # it has a member
    with pytest.raises(InvalidRequest):
        client.describe_group("nope")
    consumer.close()
    other.close()
    client.delete_group("g2")
    assert client.list_groups() == ["g1"]


def test_a_wildcard_subscription_spans_topics(client: Client) -> None:
    client.create_topic("orders.eu")
    client.create_topic("orders.us")
    client.append("orders.eu", [{"key": b"e", "value": b"eu"}])
    client.append("orders.us", pa.RecordBatch.from_pydict({"key": [b"u"], "value": [b"us"]}))
    consumer = client.subscribe("orders.*", group="g")
    deliveries = consumer.poll(10, timeout=0)
    assert sorted((d.topic, d.value) for d in deliveries) == [("orders.eu", b"eu"), ("orders.us", b"us")]
    assert consumer.ack(deliveries).settled == 2
    consumer.close()
