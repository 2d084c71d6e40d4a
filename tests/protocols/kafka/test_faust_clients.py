"""Faust on the Kafka door: exactly-once processing, topic creation, static members.

Goal: the features of faust-streaming (0.15.3, on aiokafka) beyond a word count
(test_stream_processors.py) work against `odradek serve`:

* ``processing_guarantee="exactly_once"``: Faust sends its output, its Table's
  changelog and its input offsets through one transaction per input partition
  (transactional ids ``forward-<group>-<partition>``). Stopped while transactions
  holding forwarded records are open, the app's output as a read_committed consumer
  sees it is what its committed offsets account for, none of the open transactions'
  records (but for one record Faust itself lets through: faust_forward.py); resumed,
  it forwards every input exactly once.
* Topic creation (Faust's admin use): a topic the app declares is created at start with
  the partitions, retention, cleanup policy and extra config the app asks for.
* Static membership (``consumer_group_instance_id``): of two workers, one killed with
  SIGKILL and restarted with the same instance id gets its partition back without a
  rebalance: the generation does not move and each partition is still processed by
  the worker that had it (the killed member's 30 s session is not waited for: a
  rebalance would first wait for the dead member, then move the generation).

Method: a real `odradek serve` process; the app (faust_forward.py) runs as
subprocesses and prints a line per record it forwarded; inputs are produced with
confluent-kafka; the door's transactions are listed and described with raw requests
(ListTransactions, DescribeTransactions); the group is described with `odradek group
describe`. Conditions are awaited with generous deadlines, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))

from odradek_process import Server, run
from wire import Wire
from word_apps import WatchedApp

from odradek.ports import free_port
from odradek.protocols.kafka.codec import messages_txn as t
from odradek.protocols.kafka.codec.api import ApiKey

pytest.importorskip("faust")
kafka = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("confluent_kafka.admin")

APP = Path(__file__).with_name("faust_forward.py")
SENT_LINE = re.compile(rb"SENT (\S+) (\d+)")
DEADLINE_SECONDS = 60.0


class ForwardApp(WatchedApp):
    """faust_forward.py as a subprocess; ``sent`` holds (value, partition) per record it
    forwarded, in order."""

    def __init__(
        self,
        bootstrap: str,
        data_dir: Path,
        guarantee: str,
        instance: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        command = [sys.executable, str(APP), bootstrap, str(data_dir), guarantee]
        super().__init__(
            command + ([instance] if instance else []),
            SENT_LINE,
            DEADLINE_SECONDS,
            {**os.environ, **(env or {})},
        )

    @property
    def sent(self) -> list[tuple[str, int]]:
        return self.lines


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    started = Server(tmp_path / "data", "--kafka-listen", f"127.0.0.1:{port}")
    started.kafka_port = port  # type: ignore[attr-defined]
    started.kafka = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield started
    if started.process.poll() is None:
        started.stop()


def create_topics(bootstrap: str, **partitions: int) -> None:
    admin = kafka_admin.AdminClient({"bootstrap.servers": bootstrap})
    topics = [kafka_admin.NewTopic(name, count, 1) for name, count in partitions.items()]
    for future in admin.create_topics(topics).values():
        future.result(30)


def produce_letters(bootstrap: str, values: list[str], partitions: list[int] | None = None) -> None:
    """``values`` to topic ``letters``, keyed by the value: to ``partitions`` (one per
    value) if given, else where Faust's own producer would put the key (murmur2, the
    Java client's partitioner, which aiokafka uses)."""
    producer = kafka.Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for index, value in enumerate(values):
        chosen = {} if partitions is None else {"partition": partitions[index]}
        producer.produce("letters", key=value.encode(), value=value.encode(), **chosen)
    assert producer.flush(30) == 0


def read_committed(bootstrap: str, topic: str, expected: int) -> list[str]:
    """Every value of ``topic`` a read_committed consumer gets, read until ``expected``
    arrived and every partition is at its end."""
    consumer = kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",  # from the start every time
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    partitions = len(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.subscribe([topic])
    values: list[str] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while not (len(at_end) == partitions and len(values) >= expected):
            assert time.monotonic() < deadline, f"{topic}: {len(values)} values, {expected} expected"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == kafka.KafkaError._PARTITION_EOF, message.error()
                at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            values.append(message.value().decode())
    finally:
        consumer.close()
    return values


def transactions(port: int) -> dict[str, t.DescribedTransaction]:
    """The door's transactional ids, described."""
    wire = Wire(port)
    try:
        listed = wire.call(ApiKey.LIST_TRANSACTIONS, 0, t.ListTransactionsRequest())
        ids = tuple(sorted(x.transactional_id for x in listed.transaction_states))
        described = wire.call(
            ApiKey.DESCRIBE_TRANSACTIONS, 0, t.DescribeTransactionsRequest(transactional_ids=ids)
        )
    finally:
        wire.close()
    return {x.transactional_id: x for x in described.transaction_states}


def open_transactions(port: int) -> dict[str, tuple[str, ...]]:
    """The transactions open now: transactional id -> the topics added to it."""
    return {
        name: tuple(sorted(topic.topic for topic in x.topics))
        for name, x in transactions(port).items()
        if x.transaction_state == "Ongoing"
    }


def letter_positions(bootstrap: str, count: int) -> dict[str, tuple[int, int]]:
    """value -> (partition, offset) of the ``count`` records of ``letters``."""
    consumer = kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "positions"})
    consumer.assign([kafka.TopicPartition("letters", partition, 0) for partition in (0, 1)])
    positions: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while len(positions) < count:
            assert time.monotonic() < deadline, f"letters: {len(positions)} of {count} records"
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                positions[message.value().decode()] = (message.partition(), message.offset())
    finally:
        consumer.close()
    return positions


def committed(server: Server, topic: str) -> dict[int, int]:
    """Group ``forward``'s committed offsets of ``topic``: partition -> offset."""
    described = json.loads(run("group", "describe", "forward", "--format", "json", server=server).stdout)
    rows = [t for t in described["topics"] if t["topic"] == topic]
    return {p["partition"]: p["committed"] for row in rows for p in row["partitions"]}


def settled(server: Server, port: int) -> tuple[dict[int, int], list[str]]:
    """Group ``forward``'s committed offsets of ``letters`` and the values of
    ``forwarded`` a read_committed consumer sees, once two readings a moment apart
    agree and no transaction is between its decision and its end (a commit's records
    and offsets are applied after EndTxn is answered: decision 0016)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last: tuple[dict[int, int], list[str]] | None = None
    while True:
        states = {name: x.transaction_state for name, x in transactions(port).items()}
        reading = (
            committed(server, "letters"),
            sorted(read_committed(server.kafka, "forwarded", 0)),  # type: ignore[attr-defined]
        )
        if reading == last and not any(state.startswith("Prepare") for state in states.values()):
            return reading
        last = reading
        assert time.monotonic() < deadline, f"the transactions never settled: {states}"
        time.sleep(0.2)


@pytest.mark.compat("faust", "transactions")
def test_faust_exactly_once_output_is_seen_as_its_transactions_commit(server: Server, tmp_path: Path) -> None:
    """The app is stopped (SIGSTOP) while a transaction holding forwarded records is
    open: a read_committed consumer then sees the outputs of the inputs whose offsets
    Faust committed (outputs and offsets commit together), none of the open
    transaction's; resumed, the app commits the rest and each input is seen once."""
    bootstrap, port = server.kafka, server.kafka_port  # type: ignore[attr-defined]
    create_topics(bootstrap, letters=2, forwarded=2)
    inputs = [f"v{i}" for i in range(200)]
    produce_letters(bootstrap, inputs)
    positions = letter_positions(bootstrap, len(inputs))
    app = ForwardApp(bootstrap, tmp_path / "faust", "exactly_once")
    try:
        app.wait_until(lambda: len(app.sent) >= 60, "60 records forwarded")
        # Faust commits every 0.5 s; between a commit and its next send no transaction
        # holds records, so stop it again until one does.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            app.process.send_signal(signal.SIGSTOP)
            opened = open_transactions(port)
            if any("forwarded" in topics for topics in opened.values()):
                break
            app.process.send_signal(signal.SIGCONT)
            assert time.monotonic() < deadline and app.process.poll() is None, app.tail()
            time.sleep(0.05)
        # One transaction per input partition, named after the group and the partition.
        assert set(opened) <= {"forward-1-0", "forward-1-1"}, opened
        sent = {value for value, _ in app.sent}
        # What the app sent before it stopped may still be on its way (an EndTxn among
        # it): read once the door's transactions and offsets no longer change.
        offsets, visible = settled(server, port)
        done = {
            value for value, (partition, offset) in positions.items() if offset < offsets.get(partition, 0)
        }
        # Faust commits from a task of its own, while its agent processes a record: the
        # record at a partition's committed offset may have its output in the committed
        # transaction already (faust_forward.py); nothing else may differ.
        current = {
            value for value, (partition, offset) in positions.items() if offset == offsets.get(partition)
        }
        assert len(visible) == len(set(visible))  # nothing twice
        assert done <= set(visible) <= done | current, (offsets, sorted(set(visible) ^ done))
        assert done < sent  # the open transactions' records are sent, and not seen
        app.process.send_signal(signal.SIGCONT)
        app.wait_until(lambda: {value for value, _ in app.sent} >= set(inputs), "every input forwarded")
        forwarded = read_committed(bootstrap, "forwarded", len(inputs))
        assert sorted(forwarded) == sorted(inputs)
        assert len(app.sent) == len(inputs)  # no crash, no rebalance: each input processed once
    finally:
        app.kill()


@pytest.mark.compat("faust", "admin")
def test_faust_creates_the_topics_it_declares_with_their_config(server: Server, tmp_path: Path) -> None:
    bootstrap = server.kafka  # type: ignore[attr-defined]
    create_topics(bootstrap, letters=2, forwarded=2)
    app = ForwardApp(bootstrap, tmp_path / "faust", "at_least_once")
    try:
        produce_letters(bootstrap, ["a0", "a1"])
        app.wait_until(lambda: len(app.sent) >= 2, "the records forwarded")  # the app is up
    finally:
        app.kill()
    admin = kafka_admin.AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=30)
    assert len(metadata.topics["declared"].partitions) == 3
    resource = kafka_admin.ConfigResource(kafka_admin.ResourceType.TOPIC, "declared")
    configs = admin.describe_configs([resource])[resource].result(30)
    wanted = {
        "retention.ms": str(6 * 3600 * 1000),  # retention=timedelta(hours=6)
        "cleanup.policy": "compact,delete",  # compacting=True, deleting=True
        "segment.ms": "3600000",  # config=
        "min.compaction.lag.ms": "60000",
    }
    assert {name: configs[name].value for name in wanted} == wanted
    # And the Odradek topic behaves so (the Kafka names map to its settings).
    described = json.loads(run("topic", "describe", "declared", server=server).stdout)["config"]
    assert described["retention_seconds"] == 6 * 3600 and described["cleanup"] == "compact,delete"
    assert described["segment_seconds"] == 3600 and described["min_compaction_lag_seconds"] == 60
    # Faust's Table changelog (created by Faust too) is compacted, with the input's partitions.
    assert len(metadata.topics["forward-forwarded_count-changelog"].partitions) == 2


def group_state(server: Server) -> tuple[int, str]:
    described = json.loads(run("group", "describe", "forward", "--format", "json", server=server).stdout)
    return described["options"]["generation"], described["state"]


@pytest.mark.compat("faust", "static groups")
def test_a_restarted_static_faust_worker_gets_its_partition_back(server: Server, tmp_path: Path) -> None:
    bootstrap = server.kafka  # type: ignore[attr-defined]
    create_topics(bootstrap, letters=2, forwarded=2)
    apps = {
        name: ForwardApp(bootstrap, tmp_path / f"faust-{name}", "at_least_once", f"forward-{name}")
        for name in ("a", "b")
    }
    rounds = iter(range(1_000_000))

    def owners() -> dict[int, str]:
        """Produce a probe to each partition until both were forwarded; who forwarded each."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            probe = [f"p{next(rounds)}-0", f"p{next(rounds)}-1"]
            produce_letters(bootstrap, probe, [0, 1])
            seen: dict[int, str] = {}
            until = time.monotonic() + 2.0
            while time.monotonic() < until and len(seen) < 2:
                for name, app in apps.items():
                    seen.update({partition: name for value, partition in app.sent if value in probe})
                    assert app.process.poll() is None, app.tail()
                time.sleep(0.05)
            if len(seen) == 2:
                return seen
            assert time.monotonic() < deadline, f"probes not forwarded: {[a.tail() for a in apps.values()]}"

    try:
        before = owners()
        assert sorted(before.values()) == ["a", "b"]  # one partition each
        generation, state = group_state(server)
        assert state == "Stable"
        victim = before[1]
        apps[victim].kill()
        apps[victim] = ForwardApp(
            bootstrap, tmp_path / f"faust-{victim}", "at_least_once", f"forward-{victim}"
        )
        assert owners() == before
        assert group_state(server) == (generation, "Stable")
    finally:
        for app in apps.values():
            app.kill()
