"""Consumer-group benchmark: throughput of a 4-member group and redelivery latency.

Usage: python scripts/group_bench.py [--records N] [--keys K] [--members M]
                                     [--batch B] [--no-fsync] [--data-dir DIR]

1. **Throughput**: N records (100-byte values, keys drawn uniformly from K) are
   appended in 10,000-record batches; then M threads, each a member of one group over
   the embedded client, loop ``poll(B)`` → ``ack(all)`` until every record is settled.
   Reported twice: with per-record ``Delivery`` objects (``poll``) and with Arrow
   batches (``poll_batches``), each the median and best of ``--repeat`` runs (fresh
   groups over the same records): on a shared machine single runs vary by 2x, so the
   records per CPU-second of the process (all threads) are reported too. Per-key
   order is checked afterwards from what each member received (every offset exactly
   once; within a member, a key's versions strictly increase).
2. **Redelivery latency**: with ``ack_timeout`` T, one member polls records and then
   goes silent (a dead process); another keeps polling. Reported: the time from the
   silent member's poll until the other receives its records, minus T (the cost of the
   mechanism itself), and the same after a clean ``close()`` (no timeout to wait for).

Figures are for the machine it runs on; it is a script, never a timed test.
"""

from __future__ import annotations

import argparse
import operator
import os
import shutil
import statistics
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

import odradek

TOPIC = "bench.group"
OFFSET = operator.attrgetter("offset")


def populate(client: odradek.EmbeddedClient, records: int, keys: int, batch: int = 10_000) -> float:
    client.create_topic(TOPIC, retention=None, exist_ok=True)
    rng = np.random.default_rng(7)
    value = pa.array([b"x" * 100] * batch, pa.binary())
    started = time.perf_counter()
    for first in range(0, records, batch):
        count = min(batch, records - first)
        key_numbers = rng.integers(0, keys, count)
        key_array = pa.array([b"key-%d" % k for k in key_numbers.tolist()], pa.binary())
        client.append(TOPIC, pa.RecordBatch.from_arrays([key_array, value.slice(0, count)], ["key", "value"]))
    return time.perf_counter() - started


def consume(
    client: odradek.EmbeddedClient, group: str, members: int, records: int, batch: int, arrow: bool
) -> tuple[float, float, list[list[np.ndarray]]]:
    """Returns the elapsed seconds, the CPU seconds of the process (all threads) and,
    per member, the offsets it received, in order."""
    settled = [0]
    lock = threading.Lock()
    seen: list[list[np.ndarray]] = [[] for _ in range(members)]
    start = threading.Barrier(members + 1)
    errors: list[BaseException] = []

    def member(index: int) -> None:
        try:
            consumer = client.subscribe(TOPIC, group=group, ack_timeout=60.0)
            start.wait()
            idle = 0
            while idle < 20:
                with lock:
                    if settled[0] >= records:
                        break
                if arrow:
                    batches = consumer.poll_batches(batch, timeout=0.2)
                    count = sum(b.records.num_rows for b in batches)
                    for delivered in batches:
                        seen[index].append(delivered.records.column("offset").to_numpy())
                        consumer.ack(delivered)
                else:
                    deliveries = consumer.poll(batch, timeout=0.2)
                    count = len(deliveries)
                    seen[index].append(np.fromiter(map(OFFSET, deliveries), np.int64, count))
                    if deliveries:
                        consumer.ack(deliveries)
                idle = 0 if count else idle + 1
                with lock:
                    settled[0] += count
            consumer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
    for thread in threads:
        thread.start()
    start.wait()
    began, cpu_began = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    if errors:
        raise errors[0]
    if settled[0] != records:
        raise SystemExit(f"settled {settled[0]} of {records} records")
    return elapsed, cpu, seen


def check_key_order(client: odradek.EmbeddedClient, seen: list[list[np.ndarray]]) -> None:
    """Every offset was received exactly once, and within each member the versions of
    a key increase (keys move between members only when settled, in order)."""
    table = pa.Table.from_batches(list(client.read(TOPIC, wait=0)))
    keys = table.column("key").to_pylist()
    versions = table.column("version").to_pylist()
    everything = np.concatenate([np.concatenate(parts) for parts in seen if parts])
    if len(everything) != len(keys) or len(np.unique(everything)) != len(keys):
        raise SystemExit(f"received {len(everything)} deliveries of {len(keys)} records")
    for parts in seen:
        last: dict[bytes, int] = {}
        for offset in np.concatenate(parts).tolist() if parts else []:
            key, version = keys[offset], versions[offset]
            if last.get(key, 0) >= version:
                raise SystemExit(f"key {key!r}: version {version} after {last[key]} in one member")
            last[key] = version


def redelivery_latency(
    client: odradek.EmbeddedClient, ack_timeout: float, records: int
) -> tuple[float, float]:
    """(seconds past ack_timeout until a silent member's records reach another member,
    seconds until a closing member's records reach another member)."""
    topic = "bench.redelivery"
    client.create_topic(topic, exist_ok=True)
    results = []
    for scenario in ("silent", "close"):
        group = f"redelivery-{scenario}"
        client.append(topic, [{"key": f"r-{scenario}-{i}", "value": b"v"} for i in range(records)])
        doomed = client.subscribe(topic, group=group, start="earliest", ack_timeout=ack_timeout)
        survivor = client.subscribe(topic, group=group, ack_timeout=ack_timeout)
        taken = doomed.poll(records, timeout=2.0)
        died = time.perf_counter()
        if scenario == "close":
            doomed.close()
        wanted = {d.offset for d in taken}
        received: set[int] = set()
        while not wanted <= received:
            deliveries = survivor.poll(records, timeout=ack_timeout * 3)
            received.update(d.offset for d in deliveries)
            survivor.ack(deliveries)
            if time.perf_counter() - died > ack_timeout * 10:
                raise SystemExit("redelivery never came")
        latency = time.perf_counter() - died
        results.append(latency - ack_timeout if scenario == "silent" else latency)
        survivor.close()
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="max_records of each poll")
    parser.add_argument("--no-fsync", action="store_true", help="no fsync of the log nor of acks")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ack-timeout", type=float, default=1.0, help="for the redelivery figure")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each throughput figure")
    args = parser.parse_args()
    directory = args.data_dir or tempfile.mkdtemp(prefix="odradek-group-bench-")
    fsync = not args.no_fsync
    try:
        with odradek.open(directory, fsync=fsync, retention_check_seconds=3600) as client:
            seconds = populate(client, args.records, args.keys)
            print(f"populated {args.records:,} records, {args.keys:,} keys: {seconds:.2f} s (fsync={fsync})")
            for arrow in (False, True):
                rates, cpu_rates = [], []
                for run in range(args.repeat):
                    group = f"bench-{'arrow' if arrow else 'objects'}-{run}"
                    elapsed, cpu, seen = consume(client, group, args.members, args.records, args.batch, arrow)
                    check_key_order(client, seen)
                    rates.append(args.records / elapsed)
                    cpu_rates.append(args.records / cpu)
                api = "poll_batches + ack(batch)" if arrow else "poll + ack(list)"
                median, per_cpu = statistics.median(rates), statistics.median(cpu_rates)
                print(
                    f"{args.members} members, {api:<26}: median {median:>9,.0f} records/s, "
                    f"best {max(rates):>9,.0f}; {per_cpu:>9,.0f} records per CPU second "
                    f"({args.repeat} runs; key order verified)"
                )
            silent, closed = redelivery_latency(client, args.ack_timeout, 500)
            timeout = args.ack_timeout
            print(f"redelivery after a silent member: ack_timeout ({timeout} s) + {silent * 1000:.1f} ms")
            print(f"redelivery after a member's close: {closed * 1000:.1f} ms")
    finally:
        if args.data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
