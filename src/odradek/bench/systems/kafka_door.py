"""Odradek through its Kafka door: ``odradek serve`` with its Kafka listener, driven by
confluent-kafka (librdkafka), the client most Kafka users run from Python.

Kafka's client API takes one record per ``produce`` call, so the write loop is the
client's own idiom, as it is for the Redis and NATS rows; librdkafka batches underneath
(``linger.ms``, ``batch.size``). Topics have one virtual partition. Kafka has no read by
key, so key replay is left to the native door.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import odradek
from odradek.bench import servers, timing
from odradek.bench.datasets import Dataset
from odradek.bench.outcomes import Skipped
from odradek.bench.systems.base import Progress, System, check_count, package_version
from odradek.bench.systems.odradek import _serve_command, topic_name
from odradek.ports import free_port

_PRODUCER = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "none",
    "socket.nagle.disable": True,
}
_CONSUMER = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 10_485_760,
    "fetch.wait.max.ms": 100,
    # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s by default) once its
    # local queue is full; a short backoff keeps the pipe full.
    "fetch.queue.backoff.ms": 10,
}
_CONSUME_BATCH = 10_000
_DEADLINE_SECONDS = 300.0


class OdradekKafka(System):
    name = "odradek-kafka"
    title = "Odradek Kafka door"
    durability = "fsync before ack (group commit), then the Produce response over loopback (acks=all)"
    durability_label = "fsync before ack"
    is_odradek = True
    tuning = (
        "confluent-kafka (librdkafka): acks=all, linger.ms 5 (0 for single-record latency), "
        "batch.size 1 MB, no compression, Nagle off; "
        "consumers fetch up to 50 MB with fetch.queue.backoff.ms 10; one virtual partition per topic"
    )
    skipped_workloads = {
        "key_replay": "Kafka has no read by key (the native door's read_key serves it)",
        "append_closed_loop": "the native door's row measures Odradek's single appends",
        "append_concurrent": "the native door's row measures Odradek's single appends",
    }

    def __init__(self) -> None:
        self._server: servers.ServerProcess | None = None
        self._bootstrap = ""
        self._admin_client: Any = None

    def prepare(self, allow_install: bool, progress: Progress) -> None:
        if importlib.util.find_spec("confluent_kafka") is None:
            raise Skipped("confluent-kafka is not installed (pip install -e '.[kafka]')")
        if not _serve_command():
            raise Skipped("the odradek CLI (odradek serve) is not available")

    def start(self, scratch: Path, progress: Progress) -> None:
        kafka_port = free_port()
        argv = [
            *_serve_command(),
            "serve",
            "--data-dir",
            str(scratch / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--kafka-listen",
            f"127.0.0.1:{kafka_port}",
        ]
        self._server = servers.ServerProcess("odradek serve", argv, scratch / "server.log")
        self._server.start()
        self._server.wait_for_line("ready")
        self._bootstrap = f"127.0.0.1:{kafka_port}"

    def stop(self) -> None:
        self._admin_client = None
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def versions(self) -> dict[str, str]:
        return {"odradek": odradek.__version__, "confluent-kafka": package_version("confluent-kafka")}

    # -- helpers ----------------------------------------------------------------------

    def _admin(self) -> Any:
        """One admin client for the run: its futures fail if the client is collected."""
        if self._admin_client is None:
            from confluent_kafka.admin import AdminClient

            self._admin_client = AdminClient({"bootstrap.servers": self._bootstrap})
        return self._admin_client

    def _producer(self, **overrides: object) -> Any:
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self._bootstrap, **_PRODUCER, **overrides})

    def _consumer(self, group: str) -> Any:
        from confluent_kafka import Consumer

        return Consumer({"bootstrap.servers": self._bootstrap, "group.id": group, **_CONSUMER})

    def _consume(self, consumer: Any, count: int, commit: bool) -> int:
        seen = 0
        deadline = timing.now() + _DEADLINE_SECONDS
        while seen < count and timing.now() < deadline:
            messages = consumer.consume(num_messages=min(_CONSUME_BATCH, count - seen), timeout=1.0)
            good = [m for m in messages if m.error() is None]
            seen += len(good)
            if commit and good:
                consumer.commit(message=good[-1], asynchronous=True)
        return seen

    # -- operations -------------------------------------------------------------------

    def write(self, stream: str, data: Dataset) -> float:
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        topic = topic_name(stream)
        for future in self._admin().create_topics([NewTopic(topic, 1, 1)]).values():
            future.result(timeout=30)
        keys, values = data.key_list, data.value_list
        producer = self._producer()
        produce, poll = producer.produce, producer.poll
        started = timing.now()
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            while True:
                try:
                    produce(topic, value=value, key=key)
                    break
                except BufferError:
                    poll(0.01)
            if index % 10_000 == 0:
                poll(0)
        left = producer.flush(_DEADLINE_SECONDS)
        elapsed = timing.now() - started
        if left:
            raise RuntimeError(f"{left} records were not acknowledged")
        return elapsed

    def drop(self, stream: str) -> None:
        for future in self._admin().delete_topics([topic_name(stream)]).values():
            future.result(timeout=30)

    def read_all(self, stream: str, expected: int) -> float:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self._consumer(f"bench-read-{uuid.uuid4().hex}")
        try:
            consumer.assign([TopicPartition(topic_name(stream), 0, OFFSET_BEGINNING)])
            started = timing.now()
            seen = self._consume(consumer, expected, commit=False)
            elapsed = timing.now() - started
        finally:
            consumer.close()
        check_count("read", seen, expected)
        return elapsed

    def append_latencies(self, stream: str, data: Dataset, rate_per_second: float) -> list[float]:
        topic = topic_name(stream)
        producer = self._producer(**{"linger.ms": 0})
        pairs = list(zip(data.key_list, data.value_list, strict=True))
        send_times = timing.schedule(len(pairs), rate_per_second)
        latencies: list[float] = []
        for (key, value), send_at in zip(pairs, send_times, strict=True):
            timing.wait_until(send_at)
            producer.produce(topic, value=value, key=key)
            if producer.flush(30):
                raise RuntimeError("a single-record produce was not acknowledged")
            latencies.append(timing.now() - send_at)
        return latencies

    def replay_key(self, stream: str, key: bytes, expected: int) -> float:
        raise Skipped(self.skipped_workloads["key_replay"])

    def consume_group(self, stream: str, group: str, count: int) -> float:
        consumer = self._consumer(group)
        try:
            consumer.subscribe([topic_name(stream)])
            started = timing.now()
            seen = self._consume(consumer, count, commit=True)
            elapsed = timing.now() - started
        finally:
            consumer.close()
        check_count("consumer group", seen, count)
        return elapsed
