"""Measure what a program's first remote append costs, against a ping and the second append.

    python scripts/first_append_bench.py [--runs 9] [--url grpc://HOST:PORT]

Without ``--url`` it starts an ``odradek serve`` of its own (a temporary data directory,
free loopback ports) and stops it at the end. Each run is a fresh Python process (a
program's first append is only the first once per process) that times, in order:
``import odradek``, ``odradek.connect`` (its lazy import of pyarrow and the Flight
client), a first ``ping`` (the channel's connection), the first single-record append
(the append stream's opening and its greeting, then the append), a second append and a
second ping. Prints the median and the highest of each over the runs, in ms, and
whether the process had imported pandas after its first append.

Not a test: figures depend on the machine's load; run it more than once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

PROBE = """
import json, sys, time
started = time.perf_counter()
import odradek
steps = {"import": time.perf_counter() - started}
def timed(name, call):
    begun = time.perf_counter()
    result = call()
    steps[name] = time.perf_counter() - begun
    return result
client = timed("connect", lambda: odradek.connect(sys.argv[1]))
timed("ping", client.ping)
timed("first append", lambda: client.append("first.append", [{"key": b"k", "value": b"one"}]))
pandas = "pandas" in sys.modules
timed("second append", lambda: client.append("first.append", [{"key": b"k", "value": b"two"}]))
timed("second ping", client.ping)
client.close()
print(json.dumps({"ms": {k: v * 1000 for k, v in steps.items()}, "pandas": pandas}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    args = parser.parse_args()
    server: subprocess.Popen[bytes] | None = None
    url = args.url
    with tempfile.TemporaryDirectory() as data:
        if url is None:
            from odradek.ports import free_ports

            flight, metrics = free_ports(2)
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "odradek.cli.main",
                    "serve",
                    "--data-dir",
                    data,
                    "--listen",
                    f"127.0.0.1:{flight}",
                    "--kafka-listen",
                    "off",
                    "--registry-listen",
                    "off",
                    "--metrics-listen",
                    f"127.0.0.1:{metrics}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"grpc://127.0.0.1:{flight}"
        try:
            import odradek

            deadline = time.monotonic() + 30
            while True:
                try:
                    with odradek.connect(url) as client:
                        client.create_topic("first.append", exist_ok=True)
                    break
                except odradek.OdradekError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            runs = []
            for _ in range(args.runs):
                ran = subprocess.run([sys.executable, "-c", PROBE, url], capture_output=True, check=True)
                runs.append(json.loads(ran.stdout))
        finally:
            if server is not None:
                server.terminate()
                server.wait(30)
    print(f"{args.runs} fresh processes against {url if args.url else 'a server of its own'}")
    for step in runs[0]["ms"]:
        values = [run["ms"][step] for run in runs]
        print(f"{step:>14}: median {statistics.median(values):8.1f} ms   max {max(values):8.1f} ms")
    imported = sum(run["pandas"] for run in runs)
    print(f"pandas imported by the first append in {imported} of {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
