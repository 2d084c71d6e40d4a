"""Kafka transactions over cells (decision 0037): what writing topics of other cells costs.

Starts a cluster as the chaos run does (a 3-member etcd, an S3 server, three agents
with ``odradek serve --cells 3`` and a Kafka door per cell: odradek.chaos.cluster),
creates one topic per cell, then runs one transactional producer (librdkafka through
confluent-kafka, linger 5 ms) through rounds of transactions of ``--transaction-records``
100-byte keyed records:

* home: every record to the home cell's topic (the coordinator's own cell: no etcd
  request in the transaction);
* cells: the records spread over the three topics, one in each cell (the coordinator
  enlists the two other cells in etcd, they stage what they lead, etcd holds the
  decision).

Each phase runs ``--transactions`` transactions after three to warm up; per phase it
prints the median and the largest time of one transaction (begin, the records, the
commit) and the records per second. The phases alternate ``--rounds`` times.

Usage: python scripts/kafka_txn_cells_bench.py [--transactions 20] [--transaction-records 1000]
       [--rounds 2] [--store seaweedfs|moto] [--json]
Numbers depend on the machine (on one small machine etcd's own fsync is most of the
difference); the measured figures go in the docs, not in tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from odradek.chaos.cluster import ChaosCluster, ChaosSettings
from odradek.chaos.stores import SERVERS

VALUE = b"v" * 100
WARM_TRANSACTIONS = 3


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=20, help="measured transactions a phase (20)")
    parser.add_argument("--transaction-records", type=int, default=1000, help="records a transaction (1000)")
    parser.add_argument("--rounds", type=int, default=2, help="times the two phases alternate (2)")
    parser.add_argument("--store", choices=SERVERS, default="seaweedfs", help="the S3 server (seaweedfs)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.transactions < 1 or args.transaction_records < 1 or args.rounds < 1:
        parser.error("--transactions, --transaction-records and --rounds are at least 1")
    return args


def phase(producer: Any, topics: list[str], transactions: int, records: int) -> list[float]:
    """Seconds each measured transaction took (begin to commit answered)."""
    seconds = []
    for number in range(WARM_TRANSACTIONS + transactions):
        started = time.perf_counter()
        producer.begin_transaction()
        for index in range(records):
            producer.produce(topics[index % len(topics)], value=VALUE, key=str(index).encode())
            if index % 500 == 0:
                producer.poll(0)
        producer.commit_transaction(60)
        if number >= WARM_TRANSACTIONS:
            seconds.append(time.perf_counter() - started)
    return seconds


def main(argv: list[str]) -> int:
    args = parse(argv)
    from confluent_kafka import Producer

    settings = ChaosSettings(cells=3, store_server=args.store, cycles=0)
    results: dict[str, list[dict[str, float]]] = {"home": [], "cells": []}
    with tempfile.TemporaryDirectory(prefix="odradek-txn-cells-") as scratch:
        print(f"starting 3 etcd members, {args.store} and 3 agents with --cells 3", file=sys.stderr)
        with ChaosCluster(Path(scratch), settings) as cluster:
            names = [f"bench.txn-cells.{index}" for index in range(3)]
            placed = cluster.one_topic_per_cell(names)
            home = [name for name in names if placed[name] == "_cell"]
            producer = Producer(
                {"bootstrap.servers": cluster.kafka_bootstrap, "transactional.id": "bench", "linger.ms": 5}
            )
            producer.init_transactions(60)
            for round_number in range(1, args.rounds + 1):
                for label, topics in (("home", home), ("cells", names)):
                    seconds = phase(producer, topics, args.transactions, args.transaction_records)
                    figures = {
                        "p50_ms": statistics.median(seconds) * 1000,
                        "max_ms": max(seconds) * 1000,
                        "records_per_second": len(seconds) * args.transaction_records / sum(seconds),
                    }
                    results[label].append(figures)
                    print(
                        f"round {round_number} {label}: a transaction p50 {figures['p50_ms']:.1f} ms, "
                        f"max {figures['max_ms']:.1f} ms; {figures['records_per_second']:,.0f} records/s",
                        file=sys.stderr,
                    )
            producer.flush(10)
    summary = {
        label: {
            "p50_ms": statistics.median(run["p50_ms"] for run in runs),
            "records_per_second": statistics.median(run["records_per_second"] for run in runs),
        }
        for label, runs in results.items()
    }
    if args.json:
        print(json.dumps({"rounds": results, "median": summary}, indent=2))
    else:
        for label, figures in summary.items():
            print(
                f"{label}: a {args.transaction_records}-record transaction p50 {figures['p50_ms']:.1f} ms, "
                f"{figures['records_per_second']:,.0f} records/s (median of {args.rounds} rounds)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
