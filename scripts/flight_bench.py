"""Figures through the network door: one `odradek serve` process, one client process.

    python scripts/flight_bench.py [--records 1000000] [--latency-seconds 5] [--no-fsync]

Measures (DESIGN §5 targets in brackets):
  * keyed ingest: 100-byte values, 100k distinct keys, 10k-record batches   [>= 1M records/s]
    one append at a time, then pipelined over one stream (append_many, --window)
  * catch-up read of the whole topic from the earliest offset              [>= 2M records/s]
  * single-record append latency at ~1,000 appends/s, p50, p99, p99.9     [<= 2 ms, <= 10 ms]
    (open loop, timed from each append's scheduled start), and one at a time

The server runs with fsync on unless --no-fsync, on a temporary data directory (or
--data-dir) on a free loopback port. Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

import odradek

BATCH_RECORDS = 10_000
DISTINCT_KEYS = 100_000
VALUE_BYTES = 100


def start_server(data_dir: str, fsync: bool) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "odradek.cli.main",
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
    ]
    if not fsync:
        command.append("--no-fsync")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"ready url=(\S+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit("odradek serve exited before it was ready")


def keyed_batches() -> list[pa.RecordBatch]:
    """Batches that together cycle through DISTINCT_KEYS keys, built once up front."""
    keys = pa.array([b"key-%08d" % i for i in range(DISTINCT_KEYS)], pa.binary())
    value = pa.array([os.urandom(VALUE_BYTES // 2).hex().encode()] * BATCH_RECORDS, pa.binary())
    return [
        pa.RecordBatch.from_arrays([keys.slice(start, BATCH_RECORDS), value], names=["key", "value"])
        for start in range(0, DISTINCT_KEYS, BATCH_RECORDS)
    ]


def ingest(client: odradek.RemoteClient, records: int) -> float:
    batches = keyed_batches()
    client.append("bench.warmup", batches[0])
    started = time.perf_counter()
    for index in range(records // BATCH_RECORDS):
        client.append("bench.keyed", batches[index % len(batches)])
    return (records // BATCH_RECORDS) * BATCH_RECORDS / (time.perf_counter() - started)


def ingest_pipelined(client: odradek.RemoteClient, records: int, window: int) -> float:
    """The same batches over one DoPut stream, ``window`` of them ahead of their results."""
    batches = keyed_batches()
    count = records // BATCH_RECORDS
    started = time.perf_counter()
    client.append_many(
        "bench.keyed", (batches[index % len(batches)] for index in range(count)), window=window
    )
    return count * BATCH_RECORDS / (time.perf_counter() - started)


def catch_up(client: odradek.RemoteClient) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(batch.num_rows for batch in client.read("bench.keyed", start="earliest", wait=0))
    return count / (time.perf_counter() - started), count


def latency(client: odradek.RemoteClient, seconds: float, rate: float = 1000.0) -> dict[str, float]:
    """Open loop: appends are issued on a fixed schedule by a small thread pool (so a slow
    one does not delay the next) and each is timed from its scheduled start, which
    counts any queueing behind a slow append as latency too."""
    record = pa.RecordBatch.from_pydict({"key": [b"latency"], "value": [b"x" * VALUE_BYTES]})
    samples: list[float] = []

    def one(scheduled: float) -> None:
        client.append("bench.latency", record)
        samples.append(time.perf_counter() - scheduled)

    interval = 1.0 / rate
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        scheduled = started
        while scheduled - started < seconds:
            now = time.perf_counter()
            if now < scheduled:
                time.sleep(scheduled - now)
            pool.submit(one, scheduled)
            scheduled += interval
    elapsed = time.perf_counter() - started
    milliseconds = np.array(samples) * 1000
    return {
        "appends": len(samples),
        "appends_per_second": round(len(samples) / elapsed, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 3),
        "p999_ms": round(float(np.percentile(milliseconds, 99.9)), 3),
        "max_ms": round(float(milliseconds.max()), 3),
    }


def sequential_latency(client: odradek.RemoteClient, appends: int = 2000) -> dict[str, float]:
    """Closed loop: one append at a time, each timed alone (no queueing behind others)."""
    record = pa.RecordBatch.from_pydict({"key": [b"sequential"], "value": [b"x" * VALUE_BYTES]})
    samples = []
    for _ in range(appends):
        started = time.perf_counter()
        client.append("bench.latency", record)
        samples.append(time.perf_counter() - started)
    milliseconds = np.array(samples) * 1000
    return {
        "appends": appends,
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=8, help="batches in flight for append_many")
    parser.add_argument("--data-dir")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.data_dir) as data_dir:
        process, url = start_server(data_dir, fsync=not args.no_fsync)
        try:
            with odradek.connect(url) as client:
                for topic in ("bench.warmup", "bench.keyed", "bench.latency"):
                    client.create_topic(topic)
                ingest_rate = ingest(client, args.records)
                # An older client (to compare against) may not have append_many.
                pipelined_rate = (
                    ingest_pipelined(client, args.records, args.window)
                    if hasattr(client, "append_many")
                    else None
                )
                read_rate, read_count = catch_up(client)
                latencies = latency(client, args.latency_seconds)
                sequential = sequential_latency(client)
        finally:
            process.terminate()
            process.wait(timeout=30)
    figures = {
        "fsync": not args.no_fsync,
        "keyed_ingest_records_per_second": round(ingest_rate),
        f"keyed_ingest_pipelined_window_{args.window}_records_per_second": (
            round(pipelined_rate) if pipelined_rate is not None else None
        ),
        "catch_up_read_records_per_second": round(read_rate),
        "records_read": read_count,
        "single_append_latency_at_1000_per_second": latencies,
        "single_append_latency_one_at_a_time": sequential,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
