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

The load comes from ``--processes`` generator processes (default 2), each with its own
client (its own connection and append stream) and ``256 / processes`` producer threads.
One schedule at ``--rate`` is dealt out among them (append ``i`` goes to process ``i mod
processes``), from start times the parent fixes on the machine's monotonic clock
(``time.perf_counter``: CLOCK_MONOTONIC on Linux, the same in every process), so the
appends are as many and as evenly spaced as from one process. Each generator freezes
what it holds after its warm-up (``gc.freeze``) and collects garbage between runs, not
during one. Why: every append's time was traced stage by stage (docs/object-storage.md,
"Cost and performance"; decision 0027, "The served agent"). With one generator of 256
threads the slowest percent was made in the generator: a full garbage collection of its
own (29-76 ms; the futures, events and latencies of the appends in flight are what
trigger it) held its producer threads and the threads reading the answers, then the
appends it owed went out in one burst; the agent's own stages (read, submit, flush
window, PUT, commit, answer) stayed within a window and a PUT. Producers of a real
deployment are separate programs whose pauses do not line up. Alternated on the 2-core
machine, one and two processes (with collections between runs) did about as well, two
slightly better at 10 ms PUTs, and four worse (as many interpreters fighting for two
cores); ``--processes 1`` keeps a single generator. Nothing is dropped: every scheduled
append is sent and timed from its scheduled send.

Usage::

    python scripts/store_latency_served.py                      # 10 and 60 ms PUTs, 3 runs
    python scripts/store_latency_served.py --put-ms 60 --runs 5 --rate 1000 --seconds 3
    python scripts/store_latency_served.py --processes 1            # one generator process
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
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
    client: odradek.RemoteClient, pool: concurrent.futures.ThreadPoolExecutor, schedule: list[float]
) -> list[float]:
    """Single appends sent at the ``schedule``'s times, open loop; their latencies in seconds."""
    batch = pa.RecordBatch.from_pydict({"key": [b"key"], "value": [b"v" * 100]})
    latencies = [0.0] * len(schedule)

    def one(index: int, send_at: float) -> None:
        client.append(TOPIC, batch)
        latencies[index] = timing.now() - send_at

    sent = []
    for index, send_at in enumerate(schedule):
        timing.wait_until(send_at)
        sent.append(pool.submit(one, index, send_at))
    for future in sent:
        future.result()
    return latencies


def generate(port: int, index: int, processes: int, rate: float, counts: list[int]) -> int:
    """A generator process (``--generate``): its share of each run's appends.

    Says ``ready`` once connected, reads the runs' start times (``timing.now()`` values)
    from stdin, and writes each run's latencies as a JSON line."""
    client = odradek.connect(f"grpc://127.0.0.1:{port}")
    threads = max(1, PRODUCER_THREADS // processes)
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="producer")
    started = threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(started.wait)
    started.wait()
    print("ready", flush=True)
    starts = [float(value) for value in sys.stdin.readline().split()]
    for run, (start, count) in enumerate(zip(starts, counts, strict=True)):
        schedule = [float(t) for t in start + np.arange(index, count, processes) / rate]
        gc.disable()  # collected between runs, not during one
        latencies = one_run(client, pool, schedule)
        gc.enable()
        gc.collect()
        if run == 0:
            gc.freeze()  # what the warm-up left (modules, the client, the pool) is never scanned again
        print(json.dumps(latencies), flush=True)
    pool.shutdown(wait=True)
    client.close()
    return 0


def measure(put_ms: float, runs: int, rate: float, seconds: float, processes: int, scratch: Path) -> None:
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
    generators: list[subprocess.Popen[str]] = []
    try:
        server.wait_for_line("ready")
        with odradek.connect(f"grpc://127.0.0.1:{port}") as client:
            client.create_topic(TOPIC)
        count = max(1, round(rate * seconds))
        counts = [max(1, count // 3)] + [count] * runs  # the warm-up first: not reported
        for index in range(processes):
            generator = [sys.executable, os.path.abspath(__file__), "--generate", str(port), str(index)]
            generator += [str(processes), str(rate), ",".join(map(str, counts))]
            generators.append(
                subprocess.Popen(generator, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for generator in generators:
            if generator.stdout is None or generator.stdout.readline().strip() != "ready":
                raise RuntimeError("a load generator did not start")
        # Every run starts at a time fixed here, a little after the last one should end.
        starts = [timing.now() + 0.5]
        for run_count in counts[:-1]:
            starts.append(starts[-1] + run_count / rate + 0.2)
        for generator in generators:
            assert generator.stdin is not None
            generator.stdin.write(" ".join(repr(start) for start in starts) + "\n")
            generator.stdin.flush()
        for run in range(runs + 1):
            latencies: list[float] = []
            for generator in generators:
                assert generator.stdout is not None
                latencies += json.loads(generator.stdout.readline())
            if len(latencies) != counts[run]:
                raise RuntimeError(f"run {run}: {len(latencies)} latencies for {counts[run]} appends")
            if run == 0:
                continue  # the warm-up
            p50, p99, p999 = (timing.percentile(latencies, q) * 1000 for q in (0.5, 0.99, 0.999))
            print(
                f"served agent, {put_ms:g} ms PUTs, run {run}/{runs}: {counts[run]:,} appends at {rate:g}/s "
                f"from {processes} process(es), p50 {p50:.1f} ms, p99 {p99:.1f} ms, p99.9 {p999:.1f} ms "
                f"(target p99 <= {put_ms + 30:g} ms)",
                flush=True,
            )
        for generator in generators:
            if generator.wait(timeout=60) != 0:
                raise RuntimeError(f"a load generator exited with {generator.returncode}")
    finally:
        for generator in generators:
            if generator.poll() is None:
                generator.kill()
                generator.wait()
        server.stop()


def main() -> int:
    if sys.argv[1:2] == ["--generate"]:
        port, index, processes, rate = (
            int(sys.argv[2]),
            int(sys.argv[3]),
            int(sys.argv[4]),
            float(sys.argv[5]),
        )
        return generate(port, index, processes, rate, [int(value) for value in sys.argv[6].split(",")])
    if sys.argv[1:2] == ["--serve-on-latency"]:
        put_seconds, read_seconds = float(sys.argv[2]), float(sys.argv[3])
        return serve_on_latency(put_seconds, read_seconds, sys.argv[5:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--put-ms", default="10,60", help="comma-separated PUT latencies (default 10,60)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per latency (default 3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="appends per second (default 1,000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of a run (default 3 s)")
    parser.add_argument(
        "--processes", type=int, default=2, help="load generator processes, 256 threads in all (default 2)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-latency-") as scratch:
        for put_ms in (float(value) for value in args.put_ms.split(",")):
            measure(put_ms, args.runs, args.rate, args.seconds, args.processes, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
