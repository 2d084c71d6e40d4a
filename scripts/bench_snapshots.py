"""Measure ``read_key`` from a snapshot against a full replay, on a key with 100,000 events.

Usage: python scripts/bench_snapshots.py [--events N] [--after M] [--runs R] [--value-bytes B]

A topic gets one key with N events (default 100,000, values of B bytes, in batches of
10,000) and a snapshot of the key as of version N - M (default M = 0: the snapshot is
the key's latest state; ``--after 1000`` leaves 1,000 events after it). Then, through
the embedded client and through the remote client (an in-process Flight server on a
loopback port), R runs each (default 200, after 10 not counted) of:

* ``full replay``: ``read_key(topic, key)``, the key's N events;
* ``from snapshot``: ``read_key(topic, key, from_snapshot=True)``, the snapshot and the
  events after it.

Prints p50, p99 and mean in milliseconds per row. Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import odradek
from odradek.node import Node
from odradek.protocols.flight.server import FlightService

TOPIC = "accounts"
KEY = b"acct-7"


def _load(client: Any, events: int, value_bytes: int, after: int) -> None:
    client.create_topic(TOPIC)
    value = b"x" * value_bytes
    batch = 10_000
    for start in range(0, events, batch):
        count = min(batch, events - start)
        client.append(TOPIC, [{"key": KEY, "value": value} for _ in range(count)])
    client.snapshot(TOPIC, KEY, b"s" * value_bytes, version=events - after)


def _time(call: Callable[[], Any], runs: int) -> list[float]:
    for _ in range(10):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _row(door: str, what: str, rows: int, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"| {door} | {what} | {rows:,} | {statistics.median(times):.3f} | {p99:.3f} | "
        f"{statistics.fmean(times):.3f} |"
    )


def _measure(door: str, client: Any, runs: int) -> list[str]:
    full = client.read_key(TOPIC, KEY)
    snapshot = client.read_key(TOPIC, KEY, from_snapshot=True)
    return [
        _row(door, "full replay", full.num_rows, _time(lambda: client.read_key(TOPIC, KEY), runs)),
        _row(
            door,
            "from snapshot",
            snapshot.num_rows,
            _time(lambda: client.read_key(TOPIC, KEY, from_snapshot=True), runs),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--after", type=int, default=0)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args(argv)
    rows = ["| door | read | rows | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as directory:
        node = Node.open(directory)
        server = FlightService(node, "grpc://127.0.0.1:0")
        try:
            embedded = odradek.EmbeddedClient.__new__(odradek.EmbeddedClient)
            embedded.node, embedded.engine = node, node.engine  # the server's node, in-process
            _load(embedded, args.events, args.value_bytes, args.after)
            rows += _measure("embedded", embedded, args.runs)
            with odradek.connect(f"grpc://127.0.0.1:{server.port}") as remote:
                rows += _measure("remote", remote, args.runs)
        finally:
            server.drain(5.0)
            node.close()
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
