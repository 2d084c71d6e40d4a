"""Fetch sessions (KIP-227) as the Kafka door keeps them.

Goal: a full request with epoch 0 opens a session and is answered in full with its id;
an incremental request (the session's next epoch) names only what changed and is
answered with only the partitions that changed (records, high watermark, log start,
errors); forgotten topics leave the session; a request with epoch -1 is served without
a session and closes the one it names; an unknown session is FETCH_SESSION_ID_NOT_FOUND
and a wrong epoch INVALID_FETCH_SESSION_EPOCH, both reading nothing. Of the Python
clients, kafka-python fetches in sessions (full, then incremental requests) and reads a
topic to its end through them, and forgets a topic it stops reading (incremental
requests with forgotten topics); librdkafka (confluent-kafka) sends sessionless
requests and reads as before.

Method: raw Fetch requests (wire.py, Fetch v12 by topic name and v13 by topic id)
against an in-process listener (conftest); kafka-python and confluent-kafka consumers
read a topic to its end while a spy on the door's session cache records the epochs of
the requests it served.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from wire import Wire

from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode

if TYPE_CHECKING:
    from odradek.protocols.kafka.fetch_sessions import FetchPlan

kafka = pytest.importorskip("kafka")
confluent_kafka = pytest.importorskip("confluent_kafka")


@pytest.fixture
def wire(kafka_door: Any) -> Iterator[Wire]:
    connection = Wire(kafka_door.listener.port)
    try:
        yield connection
    finally:
        connection.close()


def partitions(topic: str, *offsets: int, topic_id: uuid.UUID | None = None) -> m.FetchTopic:
    return m.FetchTopic(
        topic=topic,
        topic_id=topic_id or uuid.UUID(int=0),
        partitions=tuple(
            m.FetchPartition(partition=index, fetch_offset=offset, partition_max_bytes=1 << 20)
            for index, offset in enumerate(offsets)
        ),
    )


def fetch(
    wire: Wire,
    session_id: int,
    epoch: int,
    *topics: m.FetchTopic,
    forgotten: tuple[m.ForgottenTopic, ...] = (),
    version: int = 12,
) -> m.FetchResponse:
    request = m.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=topics,
        forgotten_topics_data=forgotten,
    )
    response: m.FetchResponse = wire.call(ApiKey.FETCH, version, request)
    return response


def answered(response: m.FetchResponse) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (error code, high watermark) of every partition answered."""
    return {
        (topic.topic, p.partition_index): (p.error_code, p.high_watermark)
        for topic in response.responses
        for p in topic.partitions
    }


def test_sessionless_requests_are_answered_in_full_without_a_session(
    kafka_door: Any, topic_name: str, wire: Wire
) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"a"}, {"value": b"b"}])
    for session_id in (0, 7):
        response = fetch(wire, session_id, -1, partitions(topic_name, 0))
        assert (response.error_code, response.session_id) == (ErrorCode.NONE, 0)
        assert answered(response) == {(topic_name, 0): (ErrorCode.NONE, 2)}
        assert response.responses[0].partitions[0].records


def test_a_session_answers_only_what_changed(kafka_door: Any, topic_name: str, wire: Wire) -> None:
    engine = kafka_door.engine
    other = topic_name + ".other"
    for name in (topic_name, other):
        engine.create_topic(name)
        engine.append(name, [{"value": b"a"}, {"value": b"b"}])
    opened = fetch(wire, 0, 0, partitions(topic_name, 0), partitions(other, 0))
    session = opened.session_id
    assert opened.error_code == ErrorCode.NONE and session != 0
    assert answered(opened) == {(topic_name, 0): (ErrorCode.NONE, 2), (other, 0): (ErrorCode.NONE, 2)}
    # The client moved both fetch offsets to 2 (the end): nothing new, nothing changed.
    quiet = fetch(wire, session, 1, partitions(topic_name, 2), partitions(other, 2))
    assert (quiet.error_code, quiet.session_id, answered(quiet)) == (ErrorCode.NONE, session, {})
    # New records in one topic: only its partition is answered, though the request names none.
    engine.append(other, [{"value": b"c"}])
    changed = fetch(wire, session, 2)
    assert (changed.session_id, answered(changed)) == (session, {(other, 0): (ErrorCode.NONE, 3)})
    assert changed.responses[0].partitions[0].records
    # The session kept the fetch offset the client gave last (2): the same record again.
    again = fetch(wire, session, 3)
    assert answered(again) == {(other, 0): (ErrorCode.NONE, 3)}
    assert fetch(wire, session, 4, partitions(other, 3)).responses == ()


def test_forgotten_topics_leave_the_session(kafka_door: Any, topic_name: str, wire: Wire) -> None:
    engine = kafka_door.engine
    other = topic_name + ".other"
    for name in (topic_name, other):
        engine.create_topic(name)
    session = fetch(wire, 0, 0, partitions(topic_name, 0), partitions(other, 0)).session_id
    forget = (m.ForgottenTopic(topic=topic_name, partitions=(0,)),)
    assert fetch(wire, session, 1, forgotten=forget).responses == ()
    engine.append(topic_name, [{"value": b"a"}])
    engine.append(other, [{"value": b"b"}])
    assert answered(fetch(wire, session, 2)) == {(other, 0): (ErrorCode.NONE, 1)}
    # Added back by an incremental request: answered (its high watermark is new to it).
    assert answered(fetch(wire, session, 3, partitions(topic_name, 0))) == {
        (topic_name, 0): (ErrorCode.NONE, 1),
        (other, 0): (ErrorCode.NONE, 1),
    }


def test_sessions_by_topic_id(kafka_door: Any, topic_name: str, wire: Wire) -> None:
    kafka_door.engine.create_topic(topic_name)
    metadata = wire.call(
        ApiKey.METADATA, 12, m.MetadataRequest(topics=(m.MetadataRequestTopic(name=topic_name),))
    )
    topic_id = metadata.topics[0].topic_id
    wanted = partitions("", 0, topic_id=topic_id)
    opened = fetch(wire, 0, 0, wanted, version=13)
    assert opened.session_id != 0 and len(opened.responses[0].partitions) == 1
    assert fetch(wire, opened.session_id, 1, version=13).responses == ()
    kafka_door.engine.append(topic_name, [{"value": b"a"}])
    changed = fetch(wire, opened.session_id, 2, version=13)
    assert [(t.topic_id, [p.high_watermark for p in t.partitions]) for t in changed.responses] == [
        (topic_id, [1])
    ]
    # The same session asked by topic name: not a session of that kind.
    assert fetch(wire, opened.session_id, 3).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_unknown_sessions_and_wrong_epochs_are_refused(kafka_door: Any, topic_name: str, wire: Wire) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"a"}])
    unknown = fetch(wire, 7, 1, partitions(topic_name, 0))
    assert (unknown.error_code, unknown.responses) == (ErrorCode.FETCH_SESSION_ID_NOT_FOUND, ())
    session = fetch(wire, 0, 0, partitions(topic_name, 0)).session_id
    for epoch in (2, 5):
        wrong = fetch(wire, session, epoch)
        assert (wrong.error_code, wrong.responses) == (ErrorCode.INVALID_FETCH_SESSION_EPOCH, ())
    assert fetch(wire, session, 1).error_code == ErrorCode.NONE  # the session stayed
    assert fetch(wire, session, 1).error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH  # a replay
    # A sessionless request naming the session closes it.
    assert fetch(wire, session, -1, partitions(topic_name, 0)).session_id == 0
    assert fetch(wire, session, 2).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    # So does a full request opening a new one.
    first = fetch(wire, 0, 0, partitions(topic_name, 0)).session_id
    second = fetch(wire, first, 0, partitions(topic_name, 0)).session_id
    assert second not in (0, first)
    assert fetch(wire, first, 1).error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert fetch(wire, second, 1).error_code == ErrorCode.NONE


class _Spy:
    """The epochs of the Fetch requests the door's session cache planned, and whether
    each was served."""

    def __init__(self, broker: Any) -> None:
        self.epochs: list[tuple[int, ErrorCode]] = []
        self.forgotten: list[str] = []
        self._lock = threading.Lock()
        self._plan = broker.fetch_sessions.plan
        broker.fetch_sessions.plan = self.plan

    def plan(self, request: m.FetchRequest, by_id: bool) -> FetchPlan:
        plan: FetchPlan = self._plan(request, by_id)
        with self._lock:
            self.epochs.append((request.session_epoch, plan.error))
            self.forgotten.extend(topic.topic for topic in request.forgotten_topics_data)
        return plan

    def served(self) -> list[int]:
        with self._lock:
            return [epoch for epoch, error in self.epochs if error == ErrorCode.NONE]


@pytest.mark.compat("kafka-python", "consume")
def test_kafka_python_consumes_in_a_session(kafka_door: Any, topic_name: str) -> None:
    spy = _Spy(kafka_door.listener.listener.broker)
    kafka_door.engine.create_topic(topic_name)
    consumer = kafka.KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_door.bootstrap,
        group_id="kp-" + topic_name,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    values: list[bytes] = []
    try:
        for round_ in range(3):  # each round read by fetches after the previous round's
            kafka_door.engine.append(topic_name, [{"value": f"v{round_}.{i}".encode()} for i in range(10)])
            deadline = time.monotonic() + 30
            while len(values) < 10 * (round_ + 1) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=100).values():
                    values.extend(record.value for record in batch)
    finally:
        consumer.close()
    assert values == [f"v{r}.{i}".encode() for r in range(3) for i in range(10)]
    served = spy.served()
    assert served.count(0) == 1 and served[-1] > 0, spy.epochs  # one session throughout


def test_kafka_python_forgets_a_topic_it_no_longer_reads(kafka_door: Any, topic_name: str) -> None:
    spy = _Spy(kafka_door.listener.listener.broker)
    kept, dropped = topic_name + ".kept", topic_name + ".dropped"
    for name in (kept, dropped):
        kafka_door.engine.create_topic(name)
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=kafka_door.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    values: list[bytes] = []

    def read(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                values.extend(record.value for record in batch)

    try:
        consumer.assign([kafka.TopicPartition(kept, 0), kafka.TopicPartition(dropped, 0)])
        kafka_door.engine.append(kept, [{"value": b"k0"}])
        kafka_door.engine.append(dropped, [{"value": b"d0"}])
        read(2)
        consumer.assign([kafka.TopicPartition(kept, 0)])
        kafka_door.engine.append(dropped, [{"value": b"d1"}])
        kafka_door.engine.append(kept, [{"value": b"k1"}])
        read(3)
    finally:
        consumer.close()
    assert sorted(values) == [b"d0", b"k0", b"k1"]
    assert dropped in spy.forgotten, spy.epochs
    # One session throughout: the client found every incremental answer consistent with
    # what it asked (an answer naming the forgotten partition would make it start again).
    served = spy.served()
    assert served.count(0) == 1 and served[-1] > 0, spy.epochs
    # The door's session holds the kept partition only (the client closed the connection,
    # not the session: Kafka keeps it until it is evicted, too).
    held = [set(s.partitions) for s in kafka_door.listener.listener.broker.fetch_sessions.sessions()]
    assert {(kept, 0)} in held and not any((dropped, 0) in partitions for partitions in held)


@pytest.mark.compat("confluent-kafka", "consume")
def test_librdkafka_consumes_without_a_session(kafka_door: Any, topic_name: str) -> None:
    spy = _Spy(kafka_door.listener.listener.broker)
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": f"v{i}".encode()} for i in range(20)])
    rd = confluent_kafka.Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "rd-" + topic_name,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    rd.subscribe([topic_name])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        message = rd.poll(0.1)
        if message is not None and message.error() is None:
            values.append(message.value())
    rd.close()
    assert values == [f"v{i}".encode() for i in range(20)]
    assert spy.served() and set(spy.served()) == {-1}, spy.epochs
