"""A kill -9 of a real `odradek serve` in the middle of Kafka transactions.

Goal: after the restart, every transaction whose commit was acknowledged is there
whole, in both topics it wrote; any other is there whole in both or in neither (a
commit decided but not applied when the process died is finished by the restart);
a transaction that was open (produced and flushed, never committed) is nowhere; nothing
appears twice; and the open transaction's producer id is fenced. Read by read_committed
consumers and checked record by record.

Method: `odradek serve` as a subprocess (fsync on, its Kafka door on a fixed free port);
one thread commits transactions of 20 records to each of two topics in a loop and
notes each commit acknowledged; a second producer leaves a transaction open; once five
commits are acknowledged the server is killed with SIGKILL wherever the committing
thread is, then started again on the same data directory and port.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from odradek.ports import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from odradek_process import Server  # noqa: E402

RECORDS = 20
TIMEOUT = 60.0
FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


def serve(data_dir: Path, port: int) -> Server:
    return Server(data_dir, "--kafka-listen", f"127.0.0.1:{port}")


def read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "checker",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            **FAST,
        }
    )
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        position = 0
        deadline = time.monotonic() + TIMEOUT
        while position < end and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            values.append(message.value())
            position = message.offset() + 1
        assert position >= end, f"read {position} of {end} records of {topic}"
        return values
    finally:
        consumer.close()


def test_kill_9_mid_transaction(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    bootstrap = f"127.0.0.1:{port}"
    server = serve(data_dir, port)
    try:
        first, second = "crash.a", "crash.b"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(first, 1), NewTopic(second, 1)]).values():
            future.result(timeout=TIMEOUT)

        acknowledged: list[int] = []
        progress = threading.Condition()
        stop = threading.Event()

        def commit_in_a_loop() -> None:
            producer = Producer(
                {"bootstrap.servers": bootstrap, "transactional.id": "committer", "linger.ms": 2, **FAST}
            )
            try:
                producer.init_transactions(TIMEOUT)
                number = 0
                while not stop.is_set():
                    producer.begin_transaction()
                    for i in range(RECORDS):
                        producer.produce(first, value=f"{number}:{i}".encode())
                        producer.produce(second, value=f"{number}:{i}".encode())
                    producer.commit_transaction(TIMEOUT)
                    with progress:
                        acknowledged.append(number)
                        progress.notify_all()
                    number += 1
            except KafkaException:
                pass  # the server died under it

        committer = threading.Thread(target=commit_in_a_loop, daemon=True)
        committer.start()
        left_open = Producer({"bootstrap.servers": bootstrap, "transactional.id": "left-open", **FAST})
        left_open.init_transactions(TIMEOUT)
        left_open.begin_transaction()
        for _ in range(RECORDS):
            left_open.produce(first, value=b"open")
            left_open.produce(second, value=b"open")
        left_open.flush(TIMEOUT)
        with progress:
            assert progress.wait_for(lambda: len(acknowledged) >= 5, TIMEOUT)
        stop.set()
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.communicate(timeout=TIMEOUT)
        with progress:
            acknowledged_before = list(acknowledged)

        server = serve(data_dir, port)
        committer.join(TIMEOUT)
        assert not committer.is_alive()
        with progress:
            acknowledged_all = list(acknowledged)
        contents = {topic: read_committed(bootstrap, topic) for topic in (first, second)}
        for topic, values in contents.items():
            assert b"open" not in values, f"{topic} shows the open transaction's records"
            assert len(values) == len(set(values)), f"{topic} holds a record twice"
        counts = {
            topic: collections.Counter(int(value.split(b":")[0]) for value in values)
            for topic, values in contents.items()
        }
        assert counts[first] == counts[second], "a transaction is visible in one topic only"
        assert set(counts[first].values()) <= {RECORDS}, "a transaction is visible in part"
        assert set(acknowledged_all) <= set(counts[first]), "an acknowledged commit is missing"
        assert len(acknowledged_before) >= 5

        # The open transaction's producer was fenced by the restart: a new producer of
        # the id starts cleanly and its commit is the only thing of it to appear.
        successor = Producer({"bootstrap.servers": bootstrap, "transactional.id": "left-open", **FAST})
        successor.init_transactions(TIMEOUT)
        successor.begin_transaction()
        successor.produce(first, value=b"successor")
        successor.commit_transaction(TIMEOUT)
        after = read_committed(bootstrap, first)
        assert after.count(b"successor") == 1 and b"open" not in after
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def test_kill_9_right_after_a_transaction_is_opened_or_first_acknowledged(tmp_path: Path) -> None:
    """A transaction's number reaches its staging slot after AddPartitionsToTxn is
    answered, before anything of it is acknowledged (decision 0016). Killed right after
    the first Produce of a transaction was answered (an id's first transaction, on a
    fresh slot; an id's second, on the slot emptied ahead after its first commit) or
    after its TxnOffsetCommit was answered, the restart finds the transaction open: it
    is aborted and its producer fenced. Killed right after AddPartitionsToTxn's answer,
    before any Produce, the producer is fenced or its transaction is unknown: its
    records are refused and it commits nothing. Only the committed transaction is read."""
    from test_kafka_transactions_wire import TxnWire

    from odradek.protocols.kafka.codec import messages_txn as t
    from odradek.protocols.kafka.codec.api import ApiKey
    from odradek.protocols.kafka.codec.errors import ErrorCode

    data_dir, port = tmp_path / "data", free_port()
    bootstrap = f"127.0.0.1:{port}"
    topic = "opened.a"
    server = serve(data_dir, port)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(topic, 1)]).values():
            future.result(timeout=TIMEOUT)
        wire = TxnWire(port, timeout=TIMEOUT)
        producers = {}
        for name in ("first", "second", "offsets", "added"):
            init = wire.init(name)
            assert init.error_code == ErrorCode.NONE
            producers[name] = (init.producer_id, init.producer_epoch)
        pid, epoch = producers["second"]
        assert wire.add("second", pid, epoch, {topic: [0]}) == {(topic, 0): ErrorCode.NONE}
        assert wire.produce("second", topic, [b"committed"], pid, epoch, 0)[0] == ErrorCode.NONE
        assert wire.end("second", pid, epoch, True) == ErrorCode.NONE
        for name, sequence in (("first", 0), ("second", 1)):
            pid, epoch = producers[name]
            assert wire.add(name, pid, epoch, {topic: [0]}) == {(topic, 0): ErrorCode.NONE}
            assert wire.produce(name, topic, [name.encode()], pid, epoch, sequence)[0] == ErrorCode.NONE
        pid, epoch = producers["offsets"]
        added = t.AddOffsetsToTxnRequest(
            transactional_id="offsets", producer_id=pid, producer_epoch=epoch, group_id="g"
        )
        assert wire.call(ApiKey.ADD_OFFSETS_TO_TXN, 3, added).error_code == ErrorCode.NONE
        offsets = t.TxnOffsetCommitRequest(
            transactional_id="offsets",
            group_id="g",
            producer_id=pid,
            producer_epoch=epoch,
            topics=(
                t.TxnOffsetCommitRequestTopic(
                    name=topic,
                    partitions=(t.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=1),),
                ),
            ),
        )
        answer = wire.call(ApiKey.TXN_OFFSET_COMMIT, 3, offsets)
        assert answer.topics[0].partitions[0].error_code == ErrorCode.NONE
        pid, epoch = producers["added"]
        assert wire.add("added", pid, epoch, {topic: [0]}) == {(topic, 0): ErrorCode.NONE}
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.communicate(timeout=TIMEOUT)
        wire.close()

        server = serve(data_dir, port)
        wire = TxnWire(port, timeout=TIMEOUT)
        try:
            for name in ("first", "second", "offsets"):
                pid, epoch = producers[name]
                assert wire.describe(name).producer_epoch == epoch + 1, f"{name} was not fenced"
                assert wire.end(name, pid, epoch, True) == ErrorCode.PRODUCER_FENCED
            pid, epoch = producers["added"]
            refused = wire.produce("added", topic, [b"added"], pid, epoch, 0)[0]
            assert refused in (ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.INVALID_TXN_STATE)
            assert wire.end("added", pid, epoch, True) in (
                ErrorCode.PRODUCER_FENCED,
                ErrorCode.INVALID_TXN_STATE,
            )
        finally:
            wire.close()
        assert read_committed(bootstrap, topic) == [b"committed"]
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()
