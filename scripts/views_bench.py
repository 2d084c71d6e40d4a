"""Measure materialized views and synchronous commit (docs/snapshots-and-views.md).

    python scripts/views_bench.py [--appends 2000] [--records 1000000] [--keys 100000] [--remote]
                                  [--typed-records 0]

* **Synchronous-commit overhead**: single-record appends one after another (fsync on),
  alternating a plain append and one with ``wait_for=["view:v"]``, to the same topic,
  with a view (``odradek.views.reducers:latest``) on it in the same process; p50 and
  p99 of each, and the difference. ``--remote`` does the same through the remote client
  of an in-process Flight server.
* **Apply throughput**: ``--records`` keyed records over ``--keys`` keys are appended
  first; then a view is created and timed until it has applied all of them (an append
  with ``wait_for`` returns), in records/s, for the ``latest`` and ``count`` reducers.
* **Reads**: ``view_get`` of random keys (p50, p99) and a ``view_scan`` of a prefix.
* **Typed values** (``--typed-records N``): N records on a schema'd topic (a customer
  and an amount), then views with ``count`` and ``latest`` applied with
  ``value_format="typed"`` and ``"json"``, in records/s.

Prints one line per figure. Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import odradek
from odradek.node import Node
from odradek.protocols.flight.server import FlightService


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def synchronous_commit(client: Any, appends: int) -> None:
    client.create_topic("latency")
    client.create_view("latency_view", "latency", "odradek.views.reducers:latest")
    plain: list[float] = []
    waiting: list[float] = []
    for number in range(appends + 200):  # the first 200 warm up
        record = [{"key": b"k%d" % (number % 1000), "value": b"v" * 100}]
        started = time.perf_counter()
        if number % 2:
            client.append("latency", record, wait_for=["view:latency_view"])
            elapsed, target = time.perf_counter() - started, waiting
        else:
            client.append("latency", record)
            elapsed, target = time.perf_counter() - started, plain
        if number >= 200:
            target.append(elapsed * 1000)
    for name, values in (("plain append", plain), ("append wait_for view", waiting)):
        print(
            f"{name:>24}: p50 {percentile(values, 0.5):.3f} ms  "
            f"p99 {percentile(values, 0.99):.3f} ms  ({len(values)})"
        )
    print(
        f"{'overhead':>24}: p50 +{percentile(waiting, 0.5) - percentile(plain, 0.5):.3f} ms  "
        f"p99 +{percentile(waiting, 0.99) - percentile(plain, 0.99):.3f} ms"
    )


def apply_throughput(client: Any, records: int, keys: int) -> None:
    client.create_topic("bulk")
    batch_size = 10_000
    for start in range(0, records, batch_size):
        client.append(
            "bulk",
            [{"key": b"key-%d" % ((start + n) % keys), "value": b"x" * 100} for n in range(batch_size)],
        )
    for reducer in ("latest", "count"):
        name = f"bulk_{reducer}"
        started = time.perf_counter()
        client.create_view(name, "bulk", f"odradek.views.reducers:{reducer}")
        client.append("bulk", [{"key": b"marker", "value": b"m"}], wait_for=[f"view:{name}"], timeout=300.0)
        seconds = time.perf_counter() - started
        info = client.describe_view(name)
        print(
            f"{'apply ' + reducer:>24}: {records / seconds:,.0f} records/s  "
            f"({records:,} records, {info['keys']:,} keys, "
            f"{info['bytes'] / 2**20:.1f} MiB table, {seconds:.2f} s)"
        )
    gets: list[float] = []
    for _ in range(5000):
        key = b"key-%d" % random.randrange(keys)
        started = time.perf_counter()
        client.view_get("bulk_latest", key)
        gets.append((time.perf_counter() - started) * 1000)
    print(f"{'view_get':>24}: p50 {percentile(gets, 0.5):.3f} ms  p99 {percentile(gets, 0.99):.3f} ms")
    started = time.perf_counter()
    rows = client.view_scan("bulk_latest", b"key-1").num_rows
    print(f"{'view_scan prefix':>24}: {rows:,} rows in {(time.perf_counter() - started) * 1000:.1f} ms")


def typed_apply(client: Any, records: int, keys: int) -> None:
    """A view over a schema'd topic given typed values (dicts) or their JSON text."""
    schema = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["customer", "amount"],
    }
    client.create_topic("typed", schema=schema)
    batch_size = 10_000
    for start in range(0, records, batch_size):
        client.append(
            "typed",
            [
                {
                    "key": b"key-%d" % ((start + n) % keys),
                    "value": {"customer": f"c-{n % 97}", "amount": n},
                }
                for n in range(batch_size)
            ],
        )
    for reducer in ("count", "latest"):
        for value_format in ("typed", "json"):
            name = f"typed_{reducer}_{value_format}"
            started = time.perf_counter()
            client.create_view(name, "typed", f"odradek.views.reducers:{reducer}", value_format=value_format)
            client.append(
                "typed",
                [{"key": b"marker", "value": {"customer": "m", "amount": 0}}],
                wait_for=[f"view:{name}"],
                timeout=300.0,
            )
            seconds = time.perf_counter() - started
            label = f"apply {reducer} {value_format}"
            print(f"{label:>24}: {records / seconds:,.0f} records/s  ({seconds:.2f} s)")
            client.delete_view(name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--remote", action="store_true", help="through the remote client of a Flight server")
    parser.add_argument(
        "--typed-records",
        type=int,
        default=0,
        help="also apply views over a schema'd topic of N records, typed values against JSON text",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "data"
        if args.remote:
            node = Node.open(data)
            server = FlightService(node, "grpc://127.0.0.1:0")
            client: Any = odradek.connect(f"grpc://127.0.0.1:{server.port}")
        else:
            client = odradek.open(data)
        try:
            synchronous_commit(client, args.appends)
            if args.records:
                apply_throughput(client, args.records, args.keys)
            if args.typed_records:
                typed_apply(client, args.typed_records, args.keys)
        finally:
            client.close()
            if args.remote:
                server.drain(5.0)
                node.close()


if __name__ == "__main__":
    main()
