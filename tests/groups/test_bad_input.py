"""Bad input to consumer groups: every refusal is a clear error, and no bad ack ever
loses or duplicates progress.

Method: absurd options, names and poll arguments must raise InvalidRequest naming
what is wrong; acks of deliveries that cannot be settled (unknown, already settled,
redelivered since, duplicated, of another topic) come back as per-delivery
rejections with a reason, while malformed ones raise; after each, the group's
progress is checked to be exactly what the valid acks made it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

import odradek
from odradek.errors import UnknownMember, from_wire, to_wire
from odradek.groups import GroupOptions

TOPIC = "orders.created"


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"ack_timeout": -1}, "ack_timeout"),
        ({"ack_timeout": 0}, "ack_timeout"),
        ({"ack_timeout": math.nan}, "ack_timeout"),
        ({"ack_timeout": math.inf}, "ack_timeout"),
        ({"ack_timeout": "30"}, "ack_timeout"),
        ({"ack_timeout": 10_000}, "ack_timeout"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"max_deliveries": -3}, "max_deliveries"),
        ({"max_deliveries": 2.5}, "max_deliveries"),
        ({"max_deliveries": True}, "max_deliveries"),
        ({"max_in_flight_per_key": 0}, "max_in_flight_per_key"),
        ({"max_in_flight_per_key": 10**9}, "max_in_flight_per_key"),
        ({"ordering": "partition"}, "ordering"),
        ({"dead_letter_topic": "_internal"}, "reserved"),
        ({"dead_letter_topic": "a..b"}, "invalid topic name"),
        ({"start": "yesterday"}, "start"),
        ({"start": -1}, "start"),
        ({"start": True}, "start"),
        ({"start": 1.5}, "start"),
    ],
)
def test_absurd_options_are_refused(client: Any, options: dict[str, Any], complaint: str) -> None:
    client.create_topic(TOPIC)
    with pytest.raises(odradek.InvalidRequest, match=complaint):
        client.subscribe(TOPIC, group="g", **options)
    assert client.list_groups() == [], "a refused subscribe left a group behind"


@pytest.mark.parametrize("group", ["", "_system", "a b", "a..b", "x" * 246, "ünï"])
def test_bad_group_names_are_refused(client: Any, group: str) -> None:
    client.create_topic(TOPIC)
    with pytest.raises(odradek.InvalidRequest, match="group name"):
        client.subscribe(TOPIC, group=group)


def test_group_names_may_have_dots_and_bad_patterns_are_refused(client: Any) -> None:
    client.create_topic(TOPIC)
    client.subscribe(TOPIC, group="billing.eu").close()
    for pattern in ("orders.>.x", "", "orders..x", "a b"):
        with pytest.raises(odradek.InvalidRequest, match="pattern"):
            client.subscribe(pattern, group="g2")


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"max_records": 0}, "max_records"),
        ({"max_records": 10**7}, "max_records"),
        ({"max_records": "5"}, "max_records"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": 10**6}, "timeout"),
    ],
)
def test_bad_poll_arguments_are_refused(client: Any, arguments: dict[str, Any], complaint: str) -> None:
    client.create_topic(TOPIC)
    consumer = client.subscribe(TOPIC, group="g")
    with pytest.raises(odradek.InvalidRequest, match=complaint):
        consumer.poll(**arguments)


def test_bad_nack_delays_are_refused(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"])
    consumer = client.subscribe(TOPIC, group="g")
    (delivery,) = consumer.poll(10, timeout=0)
    for delay in (-1, math.nan, math.inf, 10**9, "1"):
        with pytest.raises(odradek.InvalidRequest, match="delay"):
            consumer.nack(delivery, delay=delay)
    assert consumer.ack(delivery).ok, "a refused nack changed the delivery"


def test_acks_that_cannot_settle_are_rejected_with_a_reason(
    client: Any, append_keyed: Any, clock: Any
) -> None:
    client.create_topic(TOPIC)
    client.create_topic("other.topic")
    append_keyed(client, TOPIC, [b"a", b"b", b"c"])
    consumer = client.subscribe(TOPIC, group="g", ack_timeout=5)
    first, second, third = consumer.poll(10, timeout=0)
    assert consumer.ack(first).ok
    never = dataclasses.replace(first, offset=99)
    elsewhere = dataclasses.replace(second, topic="other.topic")
    result = consumer.ack([first, never, elsewhere, second, second])
    assert result.settled == 1
    statuses = sorted((r.topic, r.offset, r.status) for r in result.rejected)
    assert statuses == [
        ("orders.created", 0, "done"),
        ("orders.created", 1, "done"),
        ("orders.created", 99, "unknown"),
        ("other.topic", 1, "unknown"),
    ]
    clock.advance(6)
    (again,) = consumer.poll(10, timeout=0)  # the third record, redelivered
    assert (again.offset, again.attempt) == (2, 2)
    stale = consumer.ack(third)
    assert stale.settled == 0 and stale.rejected[0].status == "stale"
    assert consumer.nack(third).rejected[0].status == "stale"
    info = client.describe_group("g")
    assert info.topics[0].committed == 2 and info.topics[0].in_flight == 1
    assert consumer.ack(again).ok
    assert client.describe_group("g").topics[0].committed == 3
    assert client.describe_group("g").counters["acked"] == 3


def test_malformed_acks_raise(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"])
    consumer = client.subscribe(TOPIC, group="g")
    (delivery,) = consumer.poll(10, timeout=0)
    for bad in (
        [object()],
        [dataclasses.replace(delivery, offset=-1)],
        [dataclasses.replace(delivery, lease=0)],
        [dataclasses.replace(delivery, topic=3)],
        42,
    ):
        with pytest.raises(odradek.InvalidRequest):
            consumer.ack(bad)
    assert consumer.ack([]).settled == 0
    assert consumer.ack(delivery).ok, "a malformed ack changed the delivery"


def test_unknown_groups_and_members(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    groups = client.node.groups
    with pytest.raises(odradek.InvalidRequest, match="does not exist"):
        client.describe_group("nobody")
    with pytest.raises(odradek.InvalidRequest, match="does not exist"):
        groups.ack("nobody", "m", [])
    member = groups.join("g", TOPIC, GroupOptions())
    with pytest.raises(UnknownMember, match="join again") as raised:
        groups.poll("g", "not-a-member", 10, 0)
    assert raised.value.group == "g" and raised.value.member == "not-a-member"
    rebuilt = from_wire(to_wire(raised.value))
    assert isinstance(rebuilt, UnknownMember) and rebuilt.member == "not-a-member"
    assert groups.leave("g", member) and not groups.leave("g", member)
    with pytest.raises(UnknownMember):
        groups.poll("g", member, 10, 0)


def test_a_closed_consumer_and_a_closed_engine_refuse_politely(open_client: Any, append_keyed: Any) -> None:
    client = open_client()
    client.create_topic(TOPIC)
    consumer = client.subscribe(TOPIC, group="g")
    consumer.close()
    consumer.close()
    with pytest.raises(odradek.ClosedError):
        consumer.poll()
    other = client.subscribe(TOPIC, group="g")
    client.close()
    with pytest.raises(odradek.ClosedError):
        other.poll(timeout=0)
    other.close()  # leaving a closed engine is not an error


def test_a_start_offset_out_of_range_is_refused_and_then_corrected(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b"])
    with pytest.raises(odradek.OffsetOutOfRange):
        client.subscribe(TOPIC, group="g", start=50)
    consumer = client.subscribe(TOPIC, group="g", start=1)
    assert [d.offset for d in consumer.poll(10, timeout=0)] == [1]


def test_joining_an_empty_group_with_other_options_is_allowed(client: Any) -> None:
    client.create_topic(TOPIC)
    client.subscribe(TOPIC, group="g", ack_timeout=5).close()
    client.subscribe(TOPIC, group="g", ack_timeout=7).close()
    assert client.describe_group("g").options["ack_timeout"] == 7.0


def test_too_many_members_are_refused(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from odradek import limits

    client.create_topic(TOPIC)
    monkeypatch.setattr(limits, "group_members_max", 2)
    client.subscribe(TOPIC, group="g")
    client.subscribe(TOPIC, group="g")
    with pytest.raises(odradek.InvalidRequest, match="most allowed"):
        client.subscribe(TOPIC, group="g")
