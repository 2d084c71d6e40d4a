"""Throughput through the Kafka door with librdkafka (confluent-kafka), 100-byte records.

Starts ``odradek serve --kafka-listen`` on a fresh data directory (its own process, so
the client and the server do not share a GIL), then:

* producer: ``Producer.produce`` of N keyed records (100-byte values, 100k distinct
  keys, acks=all, linger 5 ms, no compression) until ``flush`` returns -> records/s;
* consumer: a group consumer reading the N records from the beginning with
  ``Consumer.consume`` in batches -> records/s;
* codec: the Kafka door's record batch decode (Produce path) and encode (Fetch path)
  of 10,000-record batches in-process, to separate codec cost from the rest.

Usage: python scripts/kafka_bench.py [--records N] [--no-fsync] [--json]
Numbers depend on the machine; the measured figures go in the report, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from odradek.ports import free_port


def start_server(
    data_dir: str, fsync: bool, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``odradek serve`` (with ``extra`` arguments); return it, the Kafka bootstrap
    address and the Flight URL."""
    kafka_port = free_port()
    command = [
        sys.executable,
        "-m",
        "odradek.cli.main",
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        "--log-level",
        "warning",
        *extra,
    ]
    if not fsync:
        command.append("--no-fsync")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if "ready" not in line:
        server.kill()
        raise SystemExit(f"odradek serve did not start: {line!r}")
    url = next(part[4:] for part in line.split() if part.startswith("url="))
    return server, f"127.0.0.1:{kafka_port}", url


def produce(bootstrap: str, topic: str, count: int, values: list[bytes] | None = None) -> float:
    """Records/s of producing ``count`` records (100-byte values and 100k keys, or the
    given ``values`` without keys) until every one is acknowledged; a refusal aborts."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "none",
        }
    )
    value = b"v" * 100
    keys = [f"key-{i:07d}".encode() for i in range(100_000)]
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                if values is None:
                    producer.produce(topic, value=value, key=keys[i % 100_000], on_delivery=delivered)
                else:
                    producer.produce(topic, value=values[i], on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left or failures:
        raise SystemExit(f"{left} records were not delivered; refusals: {failures[:3]}")
    return count / elapsed


def consume(bootstrap: str, topic: str, count: int, settings: dict[str, Any] | None = None) -> float:
    """Records/s of a consumer reading ``count`` records from the beginning (timed from
    the first batch); ``settings`` add to or replace the consumer's configuration."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "fetch.wait.max.ms": 100,
            # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s by default) once
            # its local queue holds queued.min.messages; a short backoff keeps the pipe full.
            "fetch.queue.backoff.ms": 10,
            **(settings or {}),
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started = None
    deadline = time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=10_000, timeout=1.0)
        if messages and started is None:
            started = time.perf_counter()
        seen += sum(1 for m in messages if m.error() is None)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    if seen < count:
        raise SystemExit(f"consumed only {seen} of {count} records")
    return count / elapsed if elapsed else float("inf")


def codec_figures(records: int = 10_000) -> dict[str, float]:
    import pyarrow as pa

    from odradek.protocols.kafka.codec.records import decode_batches, encode_batch
    from odradek.records import STORED_SCHEMA

    batch = pa.RecordBatch.from_pylist(
        [
            {
                "offset": i,
                "timestamp": 1_700_000_000_000_000 + i,
                "key": f"key-{i:07d}".encode(),
                "value": b"v" * 100,
                "headers": None,
                "version": 1,
            }
            for i in range(records)
        ],
        schema=STORED_SCHEMA,
    )
    encoded = encode_batch(batch)
    figures = {}
    for name, work in (("encode", lambda: encode_batch(batch)), ("decode", lambda: decode_batches(encoded))):
        rounds = 20
        started = time.perf_counter()
        for _ in range(rounds):
            work()
        figures[f"codec_{name}_records_per_s"] = records * rounds / (time.perf_counter() - started)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="odradek-kafka-bench-")
    server, bootstrap, _ = start_server(data_dir, fsync=not args.no_fsync)
    results: dict[str, Any] = {"records": args.records, "value_bytes": 100, "fsync": not args.no_fsync}
    try:
        topic = "bench.kafka.records"
        results["producer_records_per_s"] = produce(bootstrap, topic, args.records)
        results["consumer_records_per_s"] = consume(bootstrap, topic, args.records)
        results.update(codec_figures())
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    for name, value in results.items():
        print(f"{name:32} {value:,.0f}" if isinstance(value, float) else f"{name:32} {value}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
