"""Consumer groups through the embedded client: key order, parallelism, membership,
acks, redelivery, dead letters, key isolation, topic ordering and starts.

Method: real engines in a temporary directory (fsync off), real consumers. Time-driven
behaviour (ack timeouts, expiry, nack delays) uses the fake clock fixture, so nothing
sleeps through a timeout; tests with threads only bound their waits by a hang guard.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

import odradek
from odradek.groups import Delivery

TOPIC = "orders.eu.created"


def keys_of(deliveries: list[Delivery]) -> list[bytes | None]:
    return [d.key for d in deliveries]


def by_key(deliveries: list[Delivery]) -> dict[bytes | None, list[int]]:
    result: dict[bytes | None, list[int]] = defaultdict(list)
    for delivery in deliveries:
        result[delivery.key].append(delivery.offset)
    return result


# -- per-key order ------------------------------------------------------------------


def test_one_record_per_key_in_flight_and_in_version_order(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a", b"b", b"a", b"b", b"c"])
    consumer = client.subscribe(TOPIC, group="billing")
    first = consumer.poll(100, timeout=0)
    assert [(d.key, d.version) for d in first] == [(b"a", 1), (b"b", 1), (b"c", 1)]
    assert consumer.poll(100, timeout=0) == [], "a key's next record came before its previous was settled"
    consumer.ack(first[0])
    second = consumer.poll(100, timeout=0)
    assert [(d.key, d.version) for d in second] == [(b"a", 2)]
    consumer.ack(first[1:] + second)
    third = consumer.poll(100, timeout=0)
    assert [(d.key, d.version) for d in third] == [(b"a", 3), (b"b", 2)]  # offset order


def test_keyless_records_spread_freely(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [None] * 10)
    first = client.subscribe(TOPIC, group="g")
    second = client.subscribe(TOPIC, group="g")
    got_first = first.poll(4, timeout=0)
    got_second = second.poll(100, timeout=0)
    assert len(got_first) == 4 and len(got_second) == 6
    assert {d.offset for d in got_first + got_second} == set(range(10))


def test_different_keys_flow_to_all_members_in_parallel(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [f"k{i}".encode() for i in range(40)])
    members = [client.subscribe(TOPIC, group="g") for _ in range(4)]
    taken = [m.poll(10, timeout=0) for m in members]
    assert [len(t) for t in taken] == [10, 10, 10, 10]
    assert len({d.key for t in taken for d in t}) == 40


def test_max_in_flight_per_key_pipelines_a_key_to_one_member(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"] * 5 + [b"b"] * 5)
    first = client.subscribe(TOPIC, group="g", max_in_flight_per_key=3)
    second = client.subscribe(TOPIC, group="g", max_in_flight_per_key=3)
    got = first.poll(4, timeout=0)
    assert [(d.key, d.version) for d in got] == [(b"a", 1), (b"a", 2), (b"a", 3), (b"b", 1)]
    # Key a (3 in flight) and key b (held by the first member) are not for the second.
    assert second.poll(100, timeout=0) == []
    more = first.poll(100, timeout=0)
    assert [(d.key, d.version) for d in more] == [(b"b", 2), (b"b", 3)]
    first.ack(got[:2])
    after = second.poll(100, timeout=0)
    assert after == [], "a key in flight at one member must not go to another"
    first.ack(got[2:] + more)
    rest = second.poll(100, timeout=0)
    assert [(d.key, d.version) for d in rest] == [(b"a", 4), (b"a", 5), (b"b", 4), (b"b", 5)]


def test_threaded_members_see_every_key_in_order(client: Any, append_keyed: Any) -> None:
    """Several members in threads, acking in bulk as they go: every record is
    delivered once, and each key's settlements happen in version order."""
    client.create_topic(TOPIC)
    keys = [f"key-{i % 97}".encode() for i in range(5000)] + [None] * 300
    append_keyed(client, TOPIC, keys)
    settled: list[tuple[bytes | None, int | None, int]] = []
    lock = threading.Lock()
    done = threading.Event()

    def member() -> None:
        with client.subscribe(TOPIC, group="g") as consumer:
            while not done.is_set():
                deliveries = consumer.poll(64, timeout=0.05)
                with lock:  # settle and record atomically, so the log is in settle order
                    result = consumer.ack(deliveries)
                    settled.extend((d.key, d.version, d.offset) for d in deliveries)
                    assert result.ok
                    if len(settled) >= len(keys):
                        done.set()

    threads = [threading.Thread(target=member) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert done.wait(60), "the members did not settle everything"
    for thread in threads:
        thread.join(60)
    assert sorted(offset for _, _, offset in settled) == list(range(len(keys)))
    versions: dict[bytes, list[int]] = defaultdict(list)
    for key, version, _ in settled:
        if key is not None:
            assert version is not None
            versions[key].append(version)
    for key, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"key {key!r} settled out of order"


# -- membership -----------------------------------------------------------------------


def test_members_join_and_leave_at_any_moment(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [f"k{i % 5}".encode() for i in range(50)])
    first = client.subscribe(TOPIC, group="g")
    held = first.poll(100, timeout=0)
    assert len(held) == 5
    late = client.subscribe(TOPIC, group="g")  # joins with every key in flight elsewhere
    assert late.poll(100, timeout=0) == []
    first.close()  # leaves holding five deliveries: they go back at once, as attempt 1
    taken = late.poll(100, timeout=0)
    assert sorted(d.offset for d in taken) == sorted(d.offset for d in held)
    assert {d.attempt for d in taken} == {1}, "a clean leave must not count as a failed attempt"
    late.ack(taken)
    again = client.subscribe(TOPIC, group="g")  # joins mid-stream
    everything = [*taken]
    for _ in range(100):
        from_late, from_again = late.poll(3, timeout=0), again.poll(3, timeout=0)
        if not from_late and not from_again:
            break
        everything += from_late + from_again
        assert late.ack(from_late).ok and again.ack(from_again).ok
    assert sorted(d.offset for d in everything) == list(range(50))


def test_a_vanished_member_times_out_and_its_deliveries_go_to_others(
    client: Any, append_keyed: Any, clock: Any
) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a", b"b"])
    ghost = client.subscribe(TOPIC, group="g", ack_timeout=10)
    held = ghost.poll(100, timeout=0)
    assert [d.offset for d in held] == [0, 2]
    other = client.subscribe(TOPIC, group="g", ack_timeout=10)
    assert other.poll(100, timeout=0) == []
    clock.advance(5)
    assert other.poll(100, timeout=0) == [], "redelivered before the ack timeout"
    clock.advance(6)
    redelivered = other.poll(100, timeout=0)
    assert [(d.offset, d.attempt) for d in redelivered] == [(0, 2), (2, 2)]
    info = client.describe_group("g")
    assert [m.member for m in info.members] == [other.member_id], "the silent member was not removed"
    assert info.counters["members_expired"] == 1
    # The ghost comes back: its late acks are stale, and its next poll rejoins it.
    result = ghost.ack(held)
    assert result.settled == 0 and {r.status for r in result.rejected} == {"stale"}
    assert ghost.poll(100, timeout=0) == []
    other.ack(redelivered)
    assert [d.offset for d in ghost.poll(100, timeout=0) + other.poll(100, timeout=0)] == [1]


def test_joining_with_other_options_or_pattern_is_refused_while_members_exist(client: Any) -> None:
    client.create_topic(TOPIC)
    first = client.subscribe(TOPIC, group="g", ack_timeout=5)
    with pytest.raises(odradek.InvalidRequest, match="ack_timeout"):
        client.subscribe(TOPIC, group="g", ack_timeout=6)
    with pytest.raises(odradek.InvalidRequest, match="subscribes to"):
        client.subscribe("orders.>", group="g", ack_timeout=5)
    client.subscribe(TOPIC, group="g", ack_timeout=5, start="latest")  # start only places a new group
    first.close()


def test_an_empty_group_takes_the_options_of_its_next_member(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a"])
    with client.subscribe(TOPIC, group="g") as consumer:
        consumer.ack(consumer.poll(10, timeout=0))
    with client.subscribe(TOPIC, group="g", max_in_flight_per_key=2) as consumer:
        assert [d.version for d in consumer.poll(10, timeout=0)] == [2]
        assert client.describe_group("g").options["max_in_flight_per_key"] == 2


# -- acks, nacks, redelivery ----------------------------------------------------------


def test_bulk_ack_and_poll_batches(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [f"k{i}".encode() for i in range(1000)])
    consumer = client.subscribe(TOPIC, group="g")
    batches = consumer.poll_batches(600, timeout=0)
    assert sum(b.records.num_rows for b in batches) == 600
    assert batches[0].records.column("attempt").to_pylist() == [1] * 600
    result = consumer.ack(batches[0])
    assert result.settled == 600 and result.ok
    rest = consumer.poll(1000, timeout=0)
    assert len(rest) == 400
    assert consumer.ack(rest).settled == 400
    assert client.describe_group("g").topics[0].committed == 1000


def test_nack_with_delay_holds_only_that_key(client: Any, append_keyed: Any, clock: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a", b"b", b"b"])
    consumer = client.subscribe(TOPIC, group="g", ack_timeout=120)
    first = consumer.poll(10, timeout=0)
    assert consumer.nack(first[0], delay=30).settled == 1
    consumer.ack(first[1])
    assert [(d.key, d.version) for d in consumer.poll(10, timeout=0)] == [(b"b", 2)]
    clock.advance(29)
    assert consumer.poll(10, timeout=0) == []
    clock.advance(2)
    again = consumer.poll(10, timeout=0)
    assert [(d.key, d.version, d.attempt) for d in again] == [(b"a", 1, 2)]
    consumer.ack(again)
    assert [(d.key, d.version) for d in consumer.poll(10, timeout=0)] == [(b"a", 2)]


def test_ack_timeout_redelivers_with_attempt_counting(client: Any, append_keyed: Any, clock: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"])
    consumer = client.subscribe(TOPIC, group="g", ack_timeout=1, max_deliveries=10)
    attempts = []
    for _ in range(3):
        deliveries = consumer.poll(10, timeout=0)
        attempts.extend(d.attempt for d in deliveries)
        clock.advance(0.6)
        consumer.poll(10, timeout=0)  # keeps the member alive; the key is still in flight
        clock.advance(0.6)
    assert attempts == [1, 2, 3]
    late = consumer.poll(10, timeout=0)
    assert consumer.ack(late).ok
    info = client.describe_group("g")
    assert info.counters["timed_out"] == 3 and info.counters["redelivered"] == 3


def test_late_ack_before_redelivery_is_accepted(client: Any, append_keyed: Any, clock: Any) -> None:
    """A delivery past its timeout that nobody has taken again can still be settled by
    its holder: the work was done, so redelivering it would only duplicate it."""
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a"])
    slow = client.subscribe(TOPIC, group="g", ack_timeout=1)
    held = slow.poll(10, timeout=0)
    clock.advance(1.5)
    client.describe_group("g")  # notices the timeout
    assert slow.ack(held).ok
    assert [(d.version, d.attempt) for d in slow.poll(10, timeout=0)] == [(2, 1)]


# -- dead letters and key isolation ---------------------------------------------------


def test_dead_letter_after_max_deliveries(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    client.append(
        TOPIC,
        [{"key": b"bad", "value": b"boom", "headers": {"trace": b"t-1"}}, {"key": b"bad", "value": b"next"}],
    )
    consumer = client.subscribe(TOPIC, group="billing", max_deliveries=3)
    for attempt in (1, 2, 3):
        (delivery,) = consumer.poll(10, timeout=0)
        assert (delivery.offset, delivery.attempt) == (0, attempt)
        consumer.nack(delivery)
    (following,) = consumer.poll(10, timeout=0)
    assert (following.offset, following.attempt) == (1, 1), "the key did not move on after its dead letter"
    dead = [d for b in client.read("dlq.billing", wait=0) for d in b.to_pylist()]
    assert len(dead) == 1
    letter = dead[0]
    assert letter["key"] == b"bad" and letter["value"] == b"boom"
    headers = dict(letter["headers"])
    assert headers["trace"] == b"t-1"
    assert headers["odradek.dlq.topic"] == TOPIC.encode()
    assert headers["odradek.dlq.offset"] == b"0"
    assert headers["odradek.dlq.group"] == b"billing"
    assert headers["odradek.dlq.attempts"] == b"3"
    assert headers["odradek.dlq.reason"] == b"nacked"
    info = client.describe_group("billing")
    assert info.dead_lettered == 1
    consumer.ack(following)
    assert client.describe_group("billing").topics[0].committed == 2


def test_dead_letter_by_timeout_to_a_named_topic(client: Any, append_keyed: Any, clock: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"])
    consumer = client.subscribe(
        TOPIC, group="g", max_deliveries=1, ack_timeout=1, dead_letter_topic="errors.orders"
    )
    assert len(consumer.poll(10, timeout=0)) == 1
    clock.advance(2)
    assert consumer.poll(10, timeout=0) == []
    dead = [d for b in client.read("errors.orders", wait=0) for d in b.to_pylist()]
    assert dict(dead[0]["headers"])["odradek.dlq.reason"] in (b"ack_timeout", b"member_expired")
    assert client.describe_group("g").topics[0].committed == 1


def test_a_failing_key_holds_back_only_itself(client: Any, append_keyed: Any) -> None:
    """Key isolation: key "poison" fails every time (nacked with a long delay, so it is
    stuck for the whole test); 2,000 records of 50 other keys are interleaved with it.
    Three members in threads must deliver every other key completely and in order
    while the poison key is still stuck."""
    client.create_topic(TOPIC)
    keys: list[bytes | None] = []
    for index in range(2000):
        keys.append(f"k{index % 50}".encode())
        if index % 10 == 0:
            keys.append(b"poison")
    append_keyed(client, TOPIC, keys)
    expected = sum(1 for k in keys if k != b"poison")
    good: list[Delivery] = []
    poison: list[Delivery] = []
    lock = threading.Lock()
    finished = threading.Event()

    def member() -> None:
        with client.subscribe(TOPIC, group="g", max_deliveries=100) as consumer:
            while not finished.is_set():
                deliveries = consumer.poll(50, timeout=0.05)
                bad = [d for d in deliveries if d.key == b"poison"]
                fine = [d for d in deliveries if d.key != b"poison"]
                with lock:
                    consumer.ack(fine)
                    good.extend(fine)
                    poison.extend(bad)
                    if len(good) >= expected:
                        finished.set()
                if bad:
                    consumer.nack(bad, delay=3600)

    threads = [threading.Thread(target=member) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert finished.wait(60), "other keys were held back by the failing one"
    for thread in threads:
        thread.join(60)
    assert len(good) == expected
    offsets = by_key(good)
    for key, seen in offsets.items():
        assert seen == sorted(seen), f"key {key!r} out of order"
    assert [d.version for d in poison] == [1], "the poison key moved on while its first record was failing"
    info = client.describe_group("g")
    assert info.topics[0].lag == len(keys) - expected


def test_key_isolation_with_dead_letters_end_to_end(client: Any, append_keyed: Any) -> None:
    """The poison key's records each fail max_deliveries times and go to the dead-letter
    topic one by one, in order; every other key is delivered completely and in order."""
    client.create_topic(TOPIC)
    keys = [b"poison" if i % 7 == 0 else f"k{i % 13}".encode() for i in range(700)]
    append_keyed(client, TOPIC, keys)
    consumer = client.subscribe(TOPIC, group="g", max_deliveries=2)
    good: list[Delivery] = []
    for _ in range(10_000):
        deliveries = consumer.poll(100, timeout=0)
        if not deliveries:
            break
        consumer.ack([d for d in deliveries if d.key != b"poison"])
        consumer.nack([d for d in deliveries if d.key == b"poison"])
        good.extend(d for d in deliveries if d.key != b"poison")
    assert len(good) == sum(1 for k in keys if k != b"poison")
    for key, seen in by_key(good).items():
        assert seen == sorted(seen), key
    letters = [row for b in client.read("dlq.g", wait=0) for row in b.to_pylist()]
    offsets = [int(dict(r["headers"])["odradek.dlq.offset"]) for r in letters]
    assert offsets == [i for i, k in enumerate(keys) if k == b"poison"]
    assert client.describe_group("g").topics[0].lag == 0


# -- ordering="topic" -----------------------------------------------------------------


def test_topic_ordering_serves_one_member_and_fails_over_on_leave(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", None, b"a", b"c", b"d"])
    active = client.subscribe(TOPIC, group="g", ordering="topic")
    standby = client.subscribe(TOPIC, group="g", ordering="topic")
    got = active.poll(3, timeout=0)
    assert [d.offset for d in got] == [0, 1, 2]
    assert standby.poll(10, timeout=0) == []
    active.ack(got[:2])
    active.close()
    taken = standby.poll(10, timeout=0)
    assert [(d.offset, d.attempt) for d in taken] == [(2, 1), (3, 1), (4, 1), (5, 1)]
    info = client.describe_group("g")
    assert [m.active for m in info.members] == [True]


def test_topic_ordering_fails_over_when_the_active_member_times_out(
    client: Any, append_keyed: Any, clock: Any
) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [f"k{i}".encode() for i in range(6)])
    active = client.subscribe(TOPIC, group="g", ordering="topic", ack_timeout=5)
    standby = client.subscribe(TOPIC, group="g", ordering="topic", ack_timeout=5)
    got = active.poll(4, timeout=0)
    active.ack(got[0])
    assert standby.poll(10, timeout=0) == []
    clock.advance(6)
    taken = standby.poll(10, timeout=0)
    # Only the earliest unsettled record counts the failure; the rest are rewound.
    assert [(d.offset, d.attempt) for d in taken] == [(1, 2), (2, 1), (3, 1), (4, 1), (5, 1)]
    stale = active.ack(got[1:])
    assert stale.settled == 0


def test_topic_ordering_rewinds_after_a_nack(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [None] * 5)
    consumer = client.subscribe(TOPIC, group="g", ordering="topic")
    got = consumer.poll(5, timeout=0)
    consumer.ack(got[0])
    consumer.nack(got[1])
    again = consumer.poll(10, timeout=0)
    assert [(d.offset, d.attempt) for d in again] == [(1, 2), (2, 1), (3, 1), (4, 1)]
    assert {r.status for r in consumer.ack(got[2:]).rejected} == {"stale"}
    assert consumer.ack(again).ok


def test_ordering_none_ignores_keys(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"] * 6)
    first = client.subscribe(TOPIC, group="g", ordering="none")
    second = client.subscribe(TOPIC, group="g", ordering="none")
    assert len(first.poll(3, timeout=0)) == 3 and len(second.poll(10, timeout=0)) == 3


# -- topics, patterns and starts ------------------------------------------------------


def test_pattern_picks_up_topics_created_later_from_their_start(client: Any, append_keyed: Any) -> None:
    client.create_topic("orders.eu")
    append_keyed(client, "orders.eu", [b"a"])
    consumer = client.subscribe("orders.>", group="g", start="latest")
    assert consumer.poll(10, timeout=0) == []
    client.create_topic("orders.us")
    append_keyed(client, "orders.us", [b"x", b"y"])
    append_keyed(client, "orders.eu", [b"b"])
    got = consumer.poll(10, timeout=2)
    while len(got) < 3:
        more = consumer.poll(10, timeout=2)
        assert more, f"only {got}"
        got += more
    assert sorted((d.topic, d.offset) for d in got) == [("orders.eu", 1), ("orders.us", 0), ("orders.us", 1)]


def test_poll_waits_for_new_records(client: Any) -> None:
    client.create_topic(TOPIC)
    consumer = client.subscribe(TOPIC, group="g")

    def later() -> None:
        time.sleep(0.1)
        client.append(TOPIC, [{"key": b"a", "value": b"v"}])

    writer = threading.Thread(target=later)
    writer.start()
    got = consumer.poll(10, timeout=30)
    writer.join()
    assert [d.value for d in got] == [b"v"]


def test_start_at_a_timestamp(client: Any) -> None:
    client.create_topic(TOPIC)
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    client.append(
        TOPIC,
        [{"key": f"k{i}", "value": b"v", "timestamp": base + datetime.timedelta(hours=i)} for i in range(5)],
    )
    consumer = client.subscribe(TOPIC, group="g", start=base + datetime.timedelta(hours=2, minutes=30))
    assert [d.offset for d in consumer.poll(10, timeout=0)] == [3, 4]
    iso = client.subscribe(TOPIC, group="h", start="2024-01-01T01:00:00+00:00")
    assert [d.offset for d in iso.poll(10, timeout=0)] == [1, 2, 3, 4]


def test_the_groups_own_dead_letter_topic_is_not_consumed(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a"])
    consumer = client.subscribe(">", group="all", max_deliveries=1)
    consumer.nack(consumer.poll(10, timeout=0))
    assert "dlq.all" in client.list_topics()
    assert consumer.poll(10, timeout=0) == []


def test_deleted_topic_is_dropped_from_the_group(client: Any, append_keyed: Any) -> None:
    client.create_topic("orders.a")
    client.create_topic("orders.b")
    append_keyed(client, "orders.a", [b"a"])
    append_keyed(client, "orders.b", [b"b"])
    consumer = client.subscribe("orders.>", group="g")
    assert len(consumer.poll(10, timeout=0)) == 2
    client.delete_topic("orders.a")
    consumer.poll(10, timeout=0.6)  # a refresh notices
    assert [t.topic for t in client.describe_group("g").topics] == ["orders.b"]


def test_describe_and_list_groups(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a", b"b"])
    consumer = client.subscribe(TOPIC, group="metrics")
    consumer.poll(10, timeout=0)
    info = client.describe_group("metrics")
    assert info.group == "metrics" and info.pattern == TOPIC
    (member,) = info.members
    assert member.in_flight == 2 and member.member == consumer.member_id
    (topic,) = info.topics
    assert (topic.committed, topic.next_offset, topic.lag, topic.in_flight, topic.waiting) == (0, 3, 3, 2, 1)
    assert info.counters["delivered"] == 2
    assert odradek.groups.GroupInfo.from_json(info.to_json()) == info
    assert client.list_groups() == ["metrics"]
    with pytest.raises(odradek.InvalidRequest, match="member"):
        client.delete_group("metrics")
    consumer.close()
    client.delete_group("metrics")
    assert client.list_groups() == []


def test_an_idle_group_frees_its_windows_and_keeps_its_progress(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"a", b"c", b"b"])
    consumer = client.subscribe(TOPIC, group="g")
    got = consumer.poll(10, timeout=0)
    consumer.ack([d for d in got if d.key != b"b"])  # b's first record stays unsettled
    consumer.close()
    group = client.node.groups._groups["g"]
    assert not group._cursors, "a group without members kept its windows"
    (topic,) = client.describe_group("g").topics
    assert (topic.committed, topic.next_offset, topic.lag) == (1, 5, 3)
    again = client.subscribe(TOPIC, group="g")
    rest = again.poll(10, timeout=0)
    assert [(d.key, d.version) for d in rest] == [(b"b", 1), (b"a", 2)]


def test_attempts_keep_counting_when_the_only_member_keeps_dying(
    client: Any, append_keyed: Any, clock: Any
) -> None:
    """A record that kills its consumer every time must still reach the dead-letter
    topic when the group has a single member that dies and comes back, even though the
    group frees its windows while it has no member."""
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"poison", b"poison"])
    for attempt in (1, 2, 3):
        consumer = client.subscribe(TOPIC, group="g", ack_timeout=1, max_deliveries=3)
        (delivery,) = consumer.poll(10, timeout=0)
        assert (delivery.offset, delivery.attempt) == (0, attempt)
        clock.advance(5)  # the consumer "crashed": silent, never closed
        client.describe_group("g")
        clock.advance(5)
        client.describe_group("g")  # empty for longer than ack_timeout: windows freed
        dead_letter_pending = attempt == 3  # windows stay until it is written
        assert bool(client.node.groups._groups["g"]._cursors) == dead_letter_pending
    consumer = client.subscribe(TOPIC, group="g", ack_timeout=1, max_deliveries=3)
    assert [(d.offset, d.attempt) for d in consumer.poll(10, timeout=0)] == [(1, 1)]
    assert client.describe_group("g").dead_lettered == 1


# -- subscriptions that are lists, and deliveries given back -------------------------


def test_a_group_may_subscribe_to_a_list_of_patterns(client: Any, append_keyed: Any) -> None:
    for topic in ("jobs.a", "jobs.b", "other"):
        client.create_topic(topic)
        append_keyed(client, topic, [b"k"])
    groups = client.node.groups
    first = groups.join("g", ["jobs.b", "jobs.a", "jobs.b"], ordering="none", start="earliest")
    assert groups.describe_group("g").pattern == "jobs.a,jobs.b"  # sorted, distinct
    second = groups.join("g", ("jobs.a", "jobs.b"), ordering="none")  # the same list
    with pytest.raises(odradek.InvalidRequest, match="subscribes to"):
        groups.join("g", ["jobs.a"], ordering="none")
    with pytest.raises(odradek.InvalidRequest, match="invalid pattern"):
        groups.join("h", "jobs.a,other")  # a string is one pattern: no list through it
    with pytest.raises(odradek.InvalidRequest, match="at least one pattern"):
        groups.join("h", [])
    batches = groups.poll_batches("g", first, 10, 0.0) + groups.poll_batches("g", second, 10, 0.0)
    assert sorted(b.topic for b in batches) == ["jobs.a", "jobs.b"]


def test_released_deliveries_come_back_without_counting(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"c"])
    groups = client.node.groups
    member = groups.join("g", TOPIC, ordering="none", start="earliest")
    (batch,) = groups.poll_batches("g", member, 10, 0.0)
    result = groups.release("g", member, batch)
    assert result.ok and result.settled == 3
    (again,) = groups.poll_batches("g", member, 10, 0.0)
    assert again.records.column("attempt").to_pylist() == [1, 1, 1]
    assert groups.describe_group("g").counters["released"] == 3
