"""A consumer group over cells (decision 0038): what a pattern subscription costs.

Starts a cluster as the chaos run does (a 3-member etcd, an S3 server, three agents
with ``odradek serve --cells 3``: odradek.chaos.cluster), creates three topics
``bench.g.0`` to ``bench.g.2``, one in each cell, then measures two consumers:

* one-topic: group ``bench-one`` subscribing to ``bench.g.0`` through a client given
  every agent (it follows the topic to the agent serving its cell);
* pattern: group ``bench-pattern`` subscribing to ``bench.g.*`` through a client given
  one agent, the one serving the home cell: that agent joins its own cell's group and
  asks the two other agents for their cells' parts.

For each phase:

* delivery latency: a producer (a thread, a client per topic) appends one small keyed
  record at a time at ``--rate`` records/s (to ``bench.g.0``; for the pattern, to the
  three topics in turn), ``--records`` of them after five to warm up, while the
  consumer loops ``poll(100, timeout=1)`` and acks. The consumer is mostly idle and
  waiting when a record arrives: the case where a pattern's poll waits in rounds of
  one slice (0.2 s) over every cell. A record's latency is from just before its append
  was called to the poll that returned it; printed: p50, p99 and the largest, in ms;
* throughput: ``--burst`` 100-byte records, each with a key of its own (a key has one
  record in flight at a time: a few keys would cap what a poll can return), are appended
  (1,000 an append) to the phase's topic or topics while the consumer waits, then the
  consumer loops ``poll(1000, timeout=1)`` and acks until it has every one: records per
  second.

Usage: python scripts/cells_group_bench.py [--records 200] [--rate 50] [--burst 20000]
       [--store seaweedfs|moto] [--json]
Numbers depend on the machine; the measured figures go in the docs, not in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import odradek
from odradek.chaos.cluster import ChaosCluster, ChaosSettings
from odradek.chaos.stores import SERVERS

TOPICS = [f"bench.g.{index}" for index in range(3)]
PATTERN = "bench.g.*"
VALUE = b"v" * 100
BATCH_RECORDS = 1000
WARM_RECORDS = 5
KEYS = 16
# Past the time the appends should take, how long a phase may wait for its records.
SLACK_SECONDS = 60.0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200, help="records timed a phase (200)")
    parser.add_argument("--rate", type=float, default=50.0, help="records appended a second (50)")
    parser.add_argument("--burst", type=int, default=20000, help="records of the throughput run (20000)")
    parser.add_argument("--store", choices=SERVERS, default="seaweedfs", help="the S3 server (seaweedfs)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.records < 1 or args.burst < 1 or not args.rate > 0:
        parser.error("--records and --burst are at least 1, --rate is above 0")
    return args


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in (0, 1]) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latencies(
    consumer: Any, producers: dict[str, odradek.RemoteClient], records: int, rate: float
) -> list[float]:
    """Seconds from just before each measured append to the poll that returned it."""
    topics = list(producers)
    total = WARM_RECORDS + records
    sent: dict[bytes, float] = {}
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            started = time.perf_counter()
            for index in range(total):
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                topic = topics[index % len(topics)]
                value = b"latency-%d" % index
                sent[value] = time.perf_counter()
                producers[topic].append(topic, [{"key": b"k%d" % (index % KEYS), "value": value}])
        except BaseException as exc:  # noqa: BLE001 - reported by the consumer's loop
            errors.append(exc)

    producer = threading.Thread(target=produce, name="bench-producer", daemon=True)
    received: set[bytes] = set()
    measured: list[float] = []
    deadline = time.monotonic() + total / rate + SLACK_SECONDS
    producer.start()
    try:
        while len(measured) < records:
            if errors:
                raise RuntimeError(f"the producer failed: {errors[0]!r}") from errors[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(measured)} of {records} timed records came back in time")
            deliveries = consumer.poll(100, timeout=1)
            now = time.perf_counter()
            for delivery in deliveries:
                value = bytes(delivery.value or b"")
                if value not in sent or value in received:  # a redelivery counts once
                    continue
                received.add(value)
                if int(value.removeprefix(b"latency-")) >= WARM_RECORDS:
                    measured.append(now - sent[value])
            if deliveries:
                consumer.ack(deliveries)
    finally:
        producer.join(SLACK_SECONDS)
    return measured


def burst_batches(count: int) -> Iterator[list[dict[str, bytes]]]:
    for first in range(0, count, BATCH_RECORDS):
        yield [
            {"key": b"burst-%d" % index, "value": VALUE}
            for index in range(first, min(count, first + BATCH_RECORDS))
        ]


def throughput(consumer: Any, producers: dict[str, odradek.RemoteClient], burst: int) -> float:
    """Records a second the consumer polls and acks, of ``burst`` appended before."""
    topics = list(producers)
    for number, topic in enumerate(topics):
        count = burst // len(topics) + (1 if number < burst % len(topics) else 0)
        if count:
            results = producers[topic].append_many(topic, burst_batches(count))
            written = sum(result.count for result in results)
            if written != count:
                raise RuntimeError(f"{topic}: {count} records appended, {written} written")
    seen: set[tuple[str, int]] = set()
    started = time.perf_counter()
    deadline = time.monotonic() + SLACK_SECONDS
    while len(seen) < burst:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(seen)} of {burst} records came back in time")
        deliveries = consumer.poll(1000, timeout=1)
        if deliveries:
            consumer.ack(deliveries)
            seen.update((delivery.topic, delivery.offset) for delivery in deliveries)
    return burst / (time.perf_counter() - started)


def measure(
    client: odradek.RemoteClient,
    pattern: str,
    group: str,
    producers: dict[str, odradek.RemoteClient],
    args: argparse.Namespace,
) -> dict[str, float]:
    with client.subscribe(pattern, group=group, start="latest") as consumer:
        seconds = latencies(consumer, producers, args.records, args.rate)
        records_per_second = throughput(consumer, producers, args.burst)
    return {
        "count": len(seconds),
        "p50_ms": statistics.median(seconds) * 1000,
        "p99_ms": percentile(seconds, 0.99) * 1000,
        "max_ms": max(seconds) * 1000,
        "records_per_second": records_per_second,
    }


def main(argv: list[str]) -> int:
    args = parse(argv)
    settings = ChaosSettings(cells=3, store_server=args.store, cycles=0)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="odradek-cells-group-") as scratch:
        print(f"starting 3 etcd members, {args.store} and 3 agents with --cells 3", file=sys.stderr)
        with ChaosCluster(Path(scratch), settings) as cluster:
            placed = cluster.one_topic_per_cell(TOPICS)
            home = cluster.owner(cluster.cells[0])
            if home is None:
                raise RuntimeError(f"no agent serves the home cell: {cluster.statuses()}")
            print(f"topics: {placed}; the pattern's consumer talks to {home}", file=sys.stderr)
            producers = {topic: odradek.connect(cluster.url) for topic in TOPICS}
            try:
                phases = (
                    ("one-topic", cluster.url, TOPICS[0], "bench-one", {TOPICS[0]: producers[TOPICS[0]]}),
                    ("pattern", cluster.agents[home].url, PATTERN, "bench-pattern", producers),
                )
                for label, url, pattern, group, writers in phases:
                    with odradek.connect(url) as client:
                        figures = measure(client, pattern, group, writers, args)
                    results[label] = figures
                    print(
                        f"{label}: latency p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                        f"max {figures['max_ms']:.1f} ms ({figures['count']:.0f} records); "
                        f"{figures['records_per_second']:,.0f} records/s",
                        file=sys.stderr,
                    )
            finally:
                for producer in producers.values():
                    producer.close()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'phase':<10} {'records':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'records/s':>11}")
        for label, figures in results.items():
            print(
                f"{label:<10} {figures['count']:>7.0f} {figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f} "
                f"{figures['max_ms']:>8.1f} {figures['records_per_second']:>11,.0f}"
            )
        print(
            f"latency: one record at a time at {args.rate:g}/s to an idle consumer; "
            f"records/s: {args.burst:,} records appended before, polled 1,000 at a time and acked"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
