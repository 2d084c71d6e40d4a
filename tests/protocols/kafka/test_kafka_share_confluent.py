"""Share groups (KIP-932) with a real client: confluent-kafka's ShareConsumer.

Goal: librdkafka's share consumer (confluent-kafka 2.16, a preview there) joins a share
group through the Kafka door, gets every record once across two consumers, settles
them with its implicit acknowledgements, and with explicit ones releases a record that
comes back with a higher delivery count and rejects one that never comes back.

Method: a real in-process listener (conftest); records appended natively into a topic;
two ShareConsumer instances polled in turn from the test's thread (an instance is not
thread-safe, two instances are independent). The group's records are read back from
the Odradek group (``node.groups``): a share group is one of its groups. Waits are
conditions with generous deadlines.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
if not hasattr(confluent_kafka, "ShareConsumer"):  # before 2.16
    pytest.skip("this confluent-kafka has no ShareConsumer", allow_module_level=True)

DEADLINE_SECONDS = 30.0


def share_consumer(door: Any, group: str, topic: str, **config: str) -> Any:
    consumer = confluent_kafka.ShareConsumer(
        {"bootstrap.servers": door.bootstrap, "group.id": group, **config}
    )
    consumer.subscribe([topic])
    return consumer


def messages(consumer: Any, timeout: float = 0.5) -> list[Any]:
    polled = consumer.poll(timeout)
    errors = [m.error() for m in polled if m.error() is not None]
    assert not errors, errors
    return list(polled)


@pytest.mark.compat("confluent-kafka", "share groups")
def test_two_share_consumers_get_every_record_once(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    groups = kafka_door.node.groups
    groups.leave("queue", groups.join("queue", topic_name, ordering="none", start="earliest"))
    kafka_door.engine.append(topic_name, [{"key": b"k%d" % (i % 4), "value": b"v%d" % i} for i in range(60)])
    first = share_consumer(kafka_door, "queue", topic_name, **{"max.poll.records": "10"})
    second = share_consumer(kafka_door, "queue", topic_name, **{"max.poll.records": "10"})
    seen: dict[int, list[str]] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 60 and time.monotonic() < deadline:
        for name, consumer in (("first", first), ("second", second)):
            for message in messages(consumer):
                seen.setdefault(message.offset(), []).append(name)
    assert sorted(seen) == list(range(60))
    assert all(len(names) == 1 for names in seen.values()), "a record was delivered twice"
    # The next polls accept what the last ones returned (implicit acknowledgement).
    deadline = time.monotonic() + DEADLINE_SECONDS
    while groups.committed("queue", topic_name)[1] != 60 and time.monotonic() < deadline:
        assert messages(first, 0.1) == [] and messages(second, 0.1) == []
    assert groups.committed("queue", topic_name)[1] == 60
    first.close()
    second.close()


@pytest.mark.compat("confluent-kafka", "share groups")
def test_explicit_release_redelivers_and_reject_archives(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    groups = kafka_door.node.groups
    groups.leave("explicit", groups.join("explicit", topic_name, ordering="none", start="earliest"))
    kafka_door.engine.append(topic_name, [{"value": b"v%d" % i} for i in range(3)])
    consumer = share_consumer(
        kafka_door, "explicit", topic_name, **{"share.acknowledgement.mode": "explicit"}
    )
    polled: list[Any] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(polled) < 3 and time.monotonic() < deadline:
        fresh = messages(consumer)
        polled.extend(fresh)
        for message in fresh:
            if message.offset() == 0:
                consumer.acknowledge(message, confluent_kafka.AcknowledgeType.RELEASE)
            elif message.offset() == 1:
                consumer.acknowledge(message, confluent_kafka.AcknowledgeType.REJECT)
            else:
                consumer.acknowledge(message)
    assert sorted(m.offset() for m in polled) == [0, 1, 2]
    consumer.commit_sync()
    again: list[Any] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not again and time.monotonic() < deadline:
        again = messages(consumer)
    assert [(m.offset(), m.delivery_count()) for m in again] == [(0, 2)]  # rejected: archived
    consumer.acknowledge(again[0])
    consumer.commit_sync()
    assert groups.committed("explicit", topic_name)[1] == 3
    counters = groups.describe_group("explicit").counters
    assert (counters["delivered"], counters["redelivered"]) == (4, 1)
    consumer.close()


@pytest.mark.compat("confluent-kafka", "share groups")
def test_a_share_consumer_of_two_topics_gets_both(kafka_door: Any, topic_name: str) -> None:
    other_name = topic_name + "-b"
    for name in (topic_name, other_name):
        kafka_door.engine.create_topic(name)
    groups = kafka_door.node.groups
    groups.leave("both", groups.join("both", [topic_name, other_name], ordering="none", start="earliest"))
    kafka_door.engine.append(topic_name, [{"value": b"a%d" % i} for i in range(5)])
    kafka_door.engine.append(other_name, [{"value": b"b%d" % i} for i in range(7)])
    consumer = confluent_kafka.ShareConsumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "both"})
    consumer.subscribe([topic_name, other_name])
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 12 and time.monotonic() < deadline:
        seen.update((m.topic(), m.offset()) for m in messages(consumer))
    assert seen == {(topic_name, o) for o in range(5)} | {(other_name, o) for o in range(7)}
    # The next polls accept them (implicit acknowledgement), in both topics.
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (groups.committed("both", topic_name)[1], groups.committed("both", other_name)[1]) != (5, 7):
        assert messages(consumer, 0.1) == []
        assert time.monotonic() < deadline
    consumer.close()


@pytest.mark.compat("confluent-kafka", "share groups")
def test_fetch_max_bytes_bounds_what_each_fetch_brings(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    groups = kafka_door.node.groups
    groups.leave("small", groups.join("small", topic_name, ordering="none", start="earliest"))
    kafka_door.engine.append(topic_name, [{"value": bytes([i]) * 1000} for i in range(20)])
    # librdkafka sends fetch.max.bytes as ShareFetch's MaxBytes.
    consumer = share_consumer(kafka_door, "small", topic_name, **{"fetch.max.bytes": "3000"})
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 20 and time.monotonic() < deadline:
        polled = messages(consumer)
        assert sum(len(m.value()) for m in polled) <= 3000
        seen.extend((m.offset(), m.delivery_count()) for m in polled)
    # Every record once, none counted twice: what a fetch could not carry went back
    # to the group uncounted.
    assert sorted(seen) == [(offset, 1) for offset in range(20)]
    consumer.close()
