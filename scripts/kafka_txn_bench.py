"""Kafka transactions' throughput through the door with librdkafka (confluent-kafka).

Starts ``odradek serve --kafka-listen`` on a fresh data directory (its own process, as
scripts/kafka_bench.py does), then, in the same run, 100-byte keyless records:

* idempotent: an idempotent producer (``enable.idempotence``, acks=all, linger 5 ms)
  producing N records until ``flush`` returns -> records/s;
* transactional: a transactional producer producing N records in transactions of
  ``--transaction-records`` (1,000), each ``begin_transaction``, the records,
  ``commit_transaction`` -> records/s, and its ratio to the idempotent figure;
* read_committed: a consumer with ``isolation.level=read_committed`` reading the
  transactional topic's N records from the beginning -> records/s.

With ``--door-times``, the door's own time per request of the transactional phase
(AddPartitionsToTxn, Produce, EndTxn: the mean of ``odradek_door_request_seconds`` on
the server's ``/metrics``, scraped before and after it), in milliseconds.

With ``--rounds N`` the two producing phases alternate N times on fresh topics and
each figure is the median over the rounds (the ratio: the median of each round's
ratio of back-to-back phases), with every round's ratio listed; the machine's spread
then shows in the rounds instead of in one run's ratio.

Usage: python scripts/kafka_txn_bench.py [--records N] [--transaction-records N]
       [--no-fsync] [--door-times] [--rounds N] [--json]
Numbers depend on the machine; the measured figures go in the docs, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kafka_bench import consume, start_server

from odradek.ports import free_port

VALUE = b"v" * 100
PRODUCER = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "compression.type": "none",
}


def _produce(producer: Any, topic: str, count: int, failures: list[str]) -> None:
    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=VALUE, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)


def idempotent(bootstrap: str, topic: str, count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **PRODUCER})
    failures: list[str] = []
    started = time.perf_counter()
    _produce(producer, topic, count, failures)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left or failures:
        raise SystemExit(f"{left} records were not delivered; refusals: {failures[:3]}")
    return count / elapsed


def transactional(bootstrap: str, topic: str, count: int, per_transaction: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "bench-txn", **PRODUCER})
    producer.init_transactions(30)
    failures: list[str] = []
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(per_transaction, count - done)
        producer.begin_transaction()
        _produce(producer, topic, size, failures)
        producer.commit_transaction(120)
        done += size
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"refusals: {failures[:3]}")
    return count / elapsed


DOOR_OPERATIONS = ("add_partitions_to_txn", "produce", "end_txn")
_DOOR_SERIES = re.compile(
    r'^odradek_door_request_seconds_(sum|count)\{door="kafka",operation="([a-z_]+)"\} (\S+)$', re.M
)


def door_totals(metrics_url: str) -> dict[tuple[str, str], float]:
    """(operation, "sum" or "count") -> the door's request seconds so far."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    return {(operation, kind): float(value) for kind, operation, value in _DOOR_SERIES.findall(text)}


def door_times(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    """Mean milliseconds per request between two scrapes, per operation."""
    times = {}
    for operation in DOOR_OPERATIONS:
        count = after.get((operation, "count"), 0.0) - before.get((operation, "count"), 0.0)
        seconds = after.get((operation, "sum"), 0.0) - before.get((operation, "sum"), 0.0)
        if count:
            times[f"door_{operation}_ms"] = seconds / count * 1000
    return times


def read_committed(bootstrap: str, topic: str, count: int) -> float:
    settings = {"group.id": "bench-read-committed", "isolation.level": "read_committed"}
    return consume(bootstrap, topic, count, settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--transaction-records", type=int, default=1_000)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--door-times", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the idempotent and transactional phases this many times (fresh topics "
        "each round) and report each figure's median; on a busy machine the ratio of "
        "back-to-back phases is steadier than one run's",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    data_dir = tempfile.mkdtemp(prefix="odradek-kafka-txn-bench-")
    metrics_url = None
    extra: tuple[str, ...] = ()
    if args.door_times:
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        extra = ("--metrics-listen", f"127.0.0.1:{metrics_port}")
    server, bootstrap, _ = start_server(data_dir, fsync=not args.no_fsync, extra=extra)
    results: dict[str, Any] = {
        "records": args.records,
        "transaction_records": args.transaction_records,
        "value_bytes": len(VALUE),
        "fsync": not args.no_fsync,
    }
    try:
        rounds: list[dict[str, float]] = []
        for number in range(1, args.rounds + 1):
            suffix = "" if args.rounds == 1 else f".{number}"
            figures = {
                "idempotent_records_per_s": idempotent(bootstrap, f"bench.idempotent{suffix}", args.records)
            }
            before = door_totals(metrics_url) if metrics_url else {}
            figures["transactional_records_per_s"] = transactional(
                bootstrap, f"bench.transactional{suffix}", args.records, args.transaction_records
            )
            if metrics_url:
                figures.update(door_times(before, door_totals(metrics_url)))
            figures["transactional_vs_idempotent"] = (
                figures["transactional_records_per_s"] / figures["idempotent_records_per_s"]
            )
            rounds.append(figures)
            if args.rounds > 1:
                print(
                    f"round {number}/{args.rounds}: idempotent {figures['idempotent_records_per_s']:,.0f}, "
                    f"transactional {figures['transactional_records_per_s']:,.0f} records/s, "
                    f"ratio {figures['transactional_vs_idempotent']:.0%}",
                    file=sys.stderr,
                )
        # One round: its figures. Several: each figure's median over the rounds (the
        # ratio's is the median of the rounds' ratios, each from back-to-back phases).
        for name in rounds[0]:
            results[name] = statistics.median(figures[name] for figures in rounds)
        if args.rounds > 1:
            results["rounds"] = args.rounds
            results["ratio_per_round"] = [
                round(figures["transactional_vs_idempotent"], 3) for figures in rounds
            ]
        results["read_committed_records_per_s"] = read_committed(
            bootstrap, f"bench.transactional{'' if args.rounds == 1 else '.1'}", args.records
        )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    for name, value in results.items():
        if isinstance(value, float):
            print(f"{name:32} {value:,.2f}" if value < 10 else f"{name:32} {value:,.0f}")
        else:
            print(f"{name:32} {value}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
