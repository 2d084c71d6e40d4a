"""The chaos run's Kafka-door worker records what a Kafka client can know, and a correct
door passes the checker.

Goal: each produce becomes one append of the ``kafka`` door with its producer instance
and number: ``ok`` at the offset of its delivery report (none if the report gives
none), ``fail`` only when ``produce()`` refused it (never queued), ``info`` for a
delivery error and for what is purged at the end; a fatal client error replaces the
producer (a new instance, numbers from 0) after the old one was flushed within a bound,
purged and closed; no more produces than ``in_flight_max`` await their report; the
client's own log never reaches the terminal. Against a real Kafka door (in-process, over
an embedded node, 2 virtual partitions) whose listener is restarted mid-run, so that the
client reconnects and retries what was in flight, the history checks clean: every
acknowledged record once, at its acknowledged offset. When the door moves to another
address (a new owner: every agent's door is node 1 at its own address), the producer
finds it through its bootstrap list and goes on, also when the old owner, paused past
its lease, wakes and answers the requests it had received, naming itself the broker,
before it steps down and its port relays to the new owner (what the chaos run's
``pause_owner`` does; ``frozen_door.py`` plays the paused owner without a cluster).

Method: a fake producer with a scripted answer per produce for the outcomes; the real
``confluent-kafka`` client for the door and for a refused port. Every wait is a
condition with a generous deadline.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from frozen_door import METADATA, FrozenDoor

import odradek
from odradek.chaos.checker import check
from odradek.chaos.history import History
from odradek.chaos.kafka_workload import (
    KAFKA_TOPICS,
    TOPIC_KAFKA,
    KafkaSettings,
    KafkaWorker,
    create_kafka_topic,
)
from odradek.chaos.processes import wait_until
from odradek.chaos.workload import read_back
from odradek.client.embedded import EmbeddedClient
from odradek.errors import InvalidRequest
from odradek.ports import free_ports
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.relay import start_kafka_relay

pytest.importorskip("confluent_kafka")

DEADLINE_SECONDS = 120.0


class FakeError:
    def __init__(self, name: str, text: str, *, fatal: bool = False) -> None:
        self._name, self._text, self._fatal = name, text, fatal

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


TIMED_OUT = FakeError("_MSG_TIMED_OUT", "Local: Message timed out")


class FakeProducer:
    """Answers each produce as ``plan(number)`` says (numbers across all producers):
    ``ok``, ``no_offset``, ``error`` (a delivery error), ``raise`` (produce() refuses),
    ``fatal`` (a fatal client error, then a delivery error), ``hold`` (never answered
    until purged)."""

    def __init__(self, config: dict[str, Any], plan: Callable[[int], str], numbers: Iterator[int]) -> None:
        self.config = config
        self.plan = plan
        self.numbers = numbers
        self.pending: list[tuple[str, Callable[[Any, Any], None]]] = []
        self.offsets = itertools.count()
        self.flushes: list[float] = []
        self.purged = self.closed = False
        self.polls_full = 0  # polls while in_flight produces were pending
        self.in_flight_seen = 0

    def produce(
        self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]
    ) -> None:
        action = self.plan(next(self.numbers))
        if action == "raise":
            raise BufferError("Local: Queue full")
        self.pending.append((action, on_delivery))
        self.in_flight_seen = max(self.in_flight_seen, len(self.pending))

    def poll(self, timeout: float) -> int:
        held = [(action, callback) for action, callback in self.pending if action == "hold"]
        if held and len(held) == len(self.pending):
            self.polls_full += 1
        due, self.pending = [entry for entry in self.pending if entry[0] != "hold"], held
        for action, callback in due:
            if action == "ok":
                callback(None, FakeMessage(next(self.offsets)))
            elif action == "no_offset":
                callback(None, FakeMessage(-1001))
            elif action == "fatal":
                self.config["error_cb"](FakeError("_FATAL", "Fatal error: idempotence", fatal=True))
                callback(FakeError("_FATAL", "Fatal error: idempotence"), None)
            else:
                callback(TIMED_OUT, None)
        return len(due)

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        self.poll(0)
        return len(self.pending)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.purged = True
        self.pending = [("purged", callback) for _, callback in self.pending]

    def close(self) -> None:
        self.closed = True


class Fakes:
    def __init__(self, plan: Callable[[int], str]) -> None:
        self.plan = plan
        self.numbers = itertools.count()
        self.made: list[FakeProducer] = []

    def __call__(self, config: dict[str, Any]) -> FakeProducer:
        producer = FakeProducer(config, self.plan, self.numbers)
        self.made.append(producer)
        return producer


def _run(worker: KafkaWorker, until: Callable[[], bool], what: str) -> None:
    worker.start()
    try:
        wait_until(until, DEADLINE_SECONDS, what)
    finally:
        worker.stop.set()
        worker.thread.join(DEADLINE_SECONDS)
    assert not worker.thread.is_alive()
    assert worker.error is None, worker.error


def _rows(history: History) -> list[dict[str, Any]]:
    return history.table().to_pylist()


def test_each_produce_is_recorded_as_what_the_client_can_know() -> None:
    plan = {0: "ok", 1: "error", 2: "no_offset", 3: "raise", 4: "hold"}
    fakes = Fakes(lambda number: plan.get(number, "ok"))
    history = History()
    settings = KafkaSettings(rate_per_second=5000.0, in_flight_max=8)
    worker = KafkaWorker(0, history, "127.0.0.1:1", settings, seed=1, make_producer=fakes, close_seconds=7.0)
    _run(worker, lambda: len(history) >= 20, "20 produces")
    rows = _rows(history)
    assert {row["door"] for row in rows} == {"kafka"} and {row["topic"] for row in rows} == {TOPIC_KAFKA}
    assert [row["sequence"] for row in rows[:5]] == [0, 1, 2, 3, 4]
    assert {row["producer"] for row in rows} == {"k0-p0"}
    ok, error, no_offset, refused, held = rows[:5]
    assert (ok["outcome"], ok["offset"], ok["version"]) == ("ok", 0, None)
    assert (error["outcome"], error["error"]) == ("info", "kafka _MSG_TIMED_OUT: Local: Message timed out")
    assert (no_offset["outcome"], no_offset["offset"]) == ("ok", None)
    assert refused["outcome"] == "fail" and refused["error"].startswith("BufferError")
    assert held["outcome"] == "info" and held["error"].startswith("kafka")  # purged at the end
    assert {row["outcome"] for row in rows[5:]} == {"ok"}
    assert len({row["value"] for row in rows}) == len(rows), "every value is a produce's own"
    (producer,) = fakes.made
    assert producer.flushes[0] == 7.0 and producer.purged and producer.closed
    config = producer.config
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["partitioner"] == "murmur2_random" and config["bootstrap.servers"] == "127.0.0.1:1"
    assert worker.figures() == {
        "producers": 1,
        "fatal_errors": [],
        "client_errors": 0,
        "acks_without_offset": 1,
    }


def test_a_fatal_error_replaces_the_producer() -> None:
    fakes = Fakes(lambda number: "fatal" if number == 5 else "ok")
    history = History()
    settings = KafkaSettings(rate_per_second=5000.0, in_flight_max=4)
    worker = KafkaWorker(3, history, "127.0.0.1:1", settings, seed=1, make_producer=fakes)
    _run(worker, lambda: len(fakes.made) == 2 and len(history) >= 20, "a second producer at work")
    rows = _rows(history)
    first, second = fakes.made
    assert first.closed and first.purged is False and first.flushes, "flushed (nothing left), closed"
    fatal = rows[5]
    assert fatal["producer"] == "k3-p0" and fatal["outcome"] == "info" and "_FATAL" in fatal["error"]
    after = [row for row in rows if row["producer"] == "k3-p1"]
    assert after and [row["sequence"] for row in after[:3]] == [0, 1, 2]
    assert min(row["id"] for row in after) > fatal["id"]
    assert worker.figures()["producers"] == 2 and worker.figures()["client_errors"] == 1
    assert worker.figures()["fatal_errors"] == ["kafka _FATAL: Fatal error: idempotence"]
    assert second.closed


def test_no_more_produces_than_in_flight_max_await_their_report() -> None:
    fakes = Fakes(lambda number: "hold")
    history = History()
    settings = KafkaSettings(rate_per_second=5000.0, in_flight_max=8)
    worker = KafkaWorker(0, history, "127.0.0.1:1", settings, seed=1, make_producer=fakes, close_seconds=0.0)
    _run(worker, lambda: bool(fakes.made) and fakes.made[0].polls_full >= 50, "50 polls with the window full")
    assert len(history) == 8 and fakes.made[0].in_flight_seen == 8
    assert {row["outcome"] for row in _rows(history)} == {"info"}  # purged unanswered


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers": -1}, "0 or more"),
        ({"partitions": 0}, "1 to 1024 partitions"),
        ({"rate_per_second": 0.0}, "positive number"),
        ({"rate_per_second": float("nan")}, "positive number"),
        ({"in_flight_max": 5000}, "1 to 1024 produces in flight"),
    ],
)
def test_impossible_kafka_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        KafkaSettings(**settings)


# -- the real client ------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedClient]:
    client = odradek.open(tmp_path / "data", fsync=False)
    yield client
    client.close()


def test_a_door_restarted_under_the_producer_writes_every_acknowledged_record_once(
    embedded: EmbeddedClient, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    listener = start_kafka_listener(embedded.node, "127.0.0.1", port)
    try:
        create_kafka_topic(listener.bootstrap, 2)
        history = History()
        settings = KafkaSettings(rate_per_second=2000.0, in_flight_max=256)
        worker = KafkaWorker(0, history, listener.bootstrap, settings, seed=5, log_path=tmp_path / "k0.log")
        worker.start()
        restarted = threading.Event()

        def acknowledged() -> int:
            return history.counts()["ok"]

        try:
            wait_until(lambda: acknowledged() >= 500, DEADLINE_SECONDS, "500 produces acknowledged")
            listener.close()  # the connection drops with produces in flight
            listener = start_kafka_listener(embedded.node, "127.0.0.1", port)
            restarted.set()
            before = acknowledged()
            wait_until(lambda: acknowledged() >= before + 500, DEADLINE_SECONDS, "500 more acknowledged")
        finally:
            worker.stop.set()
            worker.thread.join(DEADLINE_SECONDS)
        assert restarted.is_set() and worker.error is None and not worker.thread.is_alive()
    finally:
        listener.close()
    assert embedded.node.engine.describe_topic(TOPIC_KAFKA).incarnation  # one topic, made by the door
    logs, bounds = read_back(embedded, KAFKA_TOPICS)
    table = history.table()
    report = check(table, logs, bounds=bounds)
    assert report.valid, report.to_text()
    acked = table.filter(pc.equal(table.column("outcome"), "ok"))
    assert acked.num_rows >= 1000 and acked.column("offset").null_count == 0
    log = logs[TOPIC_KAFKA]
    assert pc.count_distinct(log.column("value")).as_py() == log.num_rows >= acked.num_rows
    assert report.doors["kafka"]["anomalies"] == {}


def test_the_producer_follows_the_door_to_another_agent(embedded: EmbeddedClient, tmp_path: Path) -> None:
    """As after a failover: the door of the first agent closes (its port refuses), the
    same data is served by a door on the second agent's port, which names itself node 1
    as the first did. The client's bootstrap list has both; it must find the second."""
    first, second = free_ports(2)
    listener = start_kafka_listener(embedded.node, "127.0.0.1", first)
    history = History()
    try:
        create_kafka_topic(listener.bootstrap, 2)
        settings = KafkaSettings(rate_per_second=500.0, in_flight_max=64)
        bootstrap = f"127.0.0.1:{first},127.0.0.1:{second}"
        worker = KafkaWorker(0, history, bootstrap, settings, seed=2, log_path=tmp_path / "k0.log")
        worker.start()
        try:
            wait_until(lambda: history.counts()["ok"] >= 2000, DEADLINE_SECONDS, "2000 produces acknowledged")
            listener.close()
            listener = start_kafka_listener(embedded.node, "127.0.0.1", second)
            before = history.counts()["ok"]
            wait_until(
                lambda: history.counts()["ok"] >= before + 200,
                DEADLINE_SECONDS,
                "200 more produces acknowledged through the door on the second port",
            )
        finally:
            worker.stop.set()
            worker.thread.join(DEADLINE_SECONDS)
        assert worker.error is None and not worker.thread.is_alive()
    finally:
        listener.close()
    logs, bounds = read_back(embedded, KAFKA_TOPICS)
    report = check(history.table(), logs, bounds=bounds)
    assert report.valid, report.to_text()


def test_a_woken_owner_answering_as_the_broker_does_not_strand_the_producer(
    embedded: EmbeddedClient, tmp_path: Path
) -> None:
    """The old owner, paused just after the producer sent it a Metadata request, wakes,
    answers what it had received (naming itself node 1) and closes every connection;
    then it stands by: its port relays Metadata to the new owner, whose door listens at
    another bootstrap address. The producer must go on there, every acknowledged record
    once. Such a late Metadata answer, arriving as the client finds every broker it
    knows down, can cancel librdkafka's (2.16) re-bootstrap for good (seen in chaos runs,
    and here at times: the race is narrow); the client then asks only the old owner's
    address, and the relay there is what leads it on. (One node serves one Kafka door at
    a time, so the new door opens just after the old one closed, where in a cluster it
    is already up.)"""
    old_port, new_port = free_ports(2)
    frozen = FrozenDoor(old_port)
    old = start_kafka_listener(embedded.node, "127.0.0.1", old_port, f"127.0.0.1:{frozen.port}")
    new = relay = None
    history = History()
    try:
        create_kafka_topic(f"127.0.0.1:{frozen.port}", 2)
        settings = KafkaSettings(rate_per_second=500.0, in_flight_max=64)
        bootstrap = f"127.0.0.1:{frozen.port},127.0.0.1:{new_port}"
        worker = KafkaWorker(0, history, bootstrap, settings, seed=4, log_path=tmp_path / "k0.log")
        worker.start()
        try:
            wait_until(lambda: history.counts()["ok"] >= 200, DEADLINE_SECONDS, "200 produces acknowledged")
            frozen.freeze_at(METADATA)  # the owner stops just after a Metadata request came
            wait_until(
                lambda: frozen.held(METADATA) >= 1,
                DEADLINE_SECONDS,
                "a Metadata request held",
                lambda: f"requests held by API key: {frozen.held_requests}",
            )
            frozen.wake_and_die()
            old.close()  # one door per node: the new owner's opens as the old one's closes
            new = start_kafka_listener(embedded.node, "127.0.0.1", new_port)
            relay = start_kafka_relay("127.0.0.1", frozen.port, lambda: ("127.0.0.1", new_port))
            before = history.counts()["ok"]
            wait_until(
                lambda: history.counts()["ok"] >= before + 200,
                DEADLINE_SECONDS,
                "200 more produces acknowledged through the new owner's door",
            )
        finally:
            worker.stop.set()
            worker.thread.join(DEADLINE_SECONDS)
        assert worker.error is None and not worker.thread.is_alive()
    finally:
        frozen.close()
        old.close()
        for door in (relay, new):
            if door is not None:
                door.close()
    logs, bounds = read_back(embedded, KAFKA_TOPICS)
    report = check(history.table(), logs, bounds=bounds)
    assert report.valid, report.to_text()


def test_the_clients_log_goes_to_its_file_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (port,) = free_ports(1)  # nothing listens there
    history = History()
    log = tmp_path / "k0.log"
    settings = KafkaSettings(rate_per_second=100.0, in_flight_max=4)
    worker = KafkaWorker(0, history, f"127.0.0.1:{port}", settings, seed=1, log_path=log, close_seconds=0.5)
    _run(worker, lambda: worker.client_errors >= 2, "the client reports the refused connection")
    assert capfd.readouterr().err == ""
    assert "Connection refused" in log.read_text()
    assert len(history) >= 1 and {row["outcome"] for row in _rows(history)} == {"info"}
    assert os.path.getsize(log) > 0
