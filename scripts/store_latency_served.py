"""Single-append latency of an object-store agent served as a process (issue 13).

``odradek bench``'s ``odradek-store-10ms`` and ``odradek-store-60ms`` rows run the
engine embedded in the bench's own process, beside 256 producer threads: the load
generator and the agent share one interpreter. Here the agent is what production runs,
``odradek serve --store`` in its own process, and the appends come from another process
through the native client (Flight), open-loop at a fixed rate from a pool of threads.

The store is the bench rows' store: a memory store wrapped in the fault-injecting store
with a fixed latency per request kind (PUT and DELETE ``--put-ms``; GET, HEAD and LIST
5 ms beside 10 ms PUTs and 20 ms beside 60 ms, as the rows, else a third of the PUT's),
the same path a real store's requests take plus the delay. The server process installs
it by wrapping ``open_store`` (the engine's and the CLI's) before ``serve`` runs
(``--serve-on-latency``: this script's own child mode).

Each latency is timed from the append's scheduled send to its acknowledgement (waiting
for a free producer thread counts); a warm-up run first, then ``--runs`` runs, each
reported with its p50, p99 and p99.9 (no run is dropped, nothing is tuned per run).

Usage::

    python scripts/store_latency_served.py                      # 10 and 60 ms PUTs, 3 runs
    python scripts/store_latency_served.py --put-ms 60 --runs 5 --rate 1000 --seconds 3
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

import odradek
from odradek.bench import servers, timing
from odradek.ports import free_port

PRODUCER_THREADS = 256
# The bench rows' reads beside their PUTs (bench/systems/odradek_store.py), in ms.
READ_MS = {10.0: 5.0, 60.0: 20.0}
TOPIC = "latency"


def serve_on_latency(put_seconds: float, read_seconds: float, serve_argv: list[str]) -> int:
    """The child: ``odradek serve`` whose store requests take the given time."""
    from odradek.cli import main as cli
    from odradek.cli import serve
    from odradek.engine import attachment
    from odradek.storage.objectfaults import FaultyObjectStore
    from odradek.storage.objects import DELETE, GET, HEAD, LIST, PUT, ObjectStore, open_store

    def slow_store(url: str, *, options: Mapping[str, str | bool] | None = None) -> ObjectStore:
        store = FaultyObjectStore(open_store(url, options=options), seed=1)
        for kind in (PUT, DELETE):
            store.set_latency(kind, put_seconds)
        for kind in (GET, HEAD, LIST):
            store.set_latency(kind, read_seconds)
        return store

    serve.open_store = slow_store  # with --store-option
    attachment.open_store = slow_store  # without: the engine opens the URL itself
    code: int = cli.main(["serve", *serve_argv])
    return code


def one_run(
    client: odradek.RemoteClient, pool: concurrent.futures.ThreadPoolExecutor, count: int, rate: float
) -> list[float]:
    """``count`` single appends at ``rate``/s, open loop; their latencies in seconds."""
    batch = pa.RecordBatch.from_pydict({"key": [b"key"], "value": [b"v" * 100]})
    latencies = [0.0] * count

    def one(index: int, send_at: float) -> None:
        client.append(TOPIC, batch)
        latencies[index] = timing.now() - send_at

    sent = []
    for index, send_at in enumerate(timing.schedule(count, rate)):
        timing.wait_until(send_at)
        sent.append(pool.submit(one, index, send_at))
    for future in sent:
        future.result()
    return latencies


def measure(put_ms: float, runs: int, rate: float, seconds: float, scratch: Path) -> None:
    put_seconds = put_ms / 1000
    port = free_port()
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--serve-on-latency",
        str(put_seconds),
        str(READ_MS.get(put_ms, put_ms / 3) / 1000),
        "--",
        "--data-dir",
        str(scratch / f"data-{put_ms:g}"),
        "--listen",
        f"127.0.0.1:{port}",
        "--kafka-listen",
        "off",
        "--store",
        f"memory://served-{put_ms:g}",
    ]
    server = servers.ServerProcess("odradek serve --store", argv, scratch / f"server-{put_ms:g}.log")
    server.start()
    try:
        server.wait_for_line("ready")
        client = odradek.connect(f"grpc://127.0.0.1:{port}")
        client.create_topic(TOPIC)
        pool = concurrent.futures.ThreadPoolExecutor(PRODUCER_THREADS, thread_name_prefix="producer")
        started = threading.Barrier(PRODUCER_THREADS + 1)
        for _ in range(PRODUCER_THREADS):
            pool.submit(started.wait)
        started.wait()
        count = max(1, round(rate * seconds))
        one_run(client, pool, count // 3, rate)  # warm-up: not reported
        for run in range(1, runs + 1):
            latencies = one_run(client, pool, count, rate)
            p50, p99, p999 = (timing.percentile(latencies, q) * 1000 for q in (0.5, 0.99, 0.999))
            print(
                f"served agent, {put_ms:g} ms PUTs, run {run}/{runs}: {count:,} appends at {rate:g}/s, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, p99.9 {p999:.1f} ms "
                f"(target p99 <= {put_ms + 30:g} ms)",
                flush=True,
            )
        pool.shutdown(wait=True)
        client.close()
    finally:
        server.stop()


def main() -> int:
    if sys.argv[1:2] == ["--serve-on-latency"]:
        put_seconds, read_seconds = float(sys.argv[2]), float(sys.argv[3])
        return serve_on_latency(put_seconds, read_seconds, sys.argv[5:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--put-ms", default="10,60", help="comma-separated PUT latencies (default 10,60)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per latency (default 3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="appends per second (default 1,000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a run (default 3 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-latency-") as scratch:
        for put_ms in (float(value) for value in args.put_ms.split(",")):
            measure(put_ms, args.runs, args.rate, args.seconds, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
