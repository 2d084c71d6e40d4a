"""A noisy tenant against a quiet one, with and without a tenant quota (a figure, not a test).

One `odradek serve --auth` with a Kafka listener and two tenants (decision 0028): the
quiet tenant's user produces one 100-byte record every ``--interval-ms`` to its topic
``orders`` (confluent-kafka, SCRAM-SHA-256, acks=all, no batching delay); its produce
latency is the time from produce() to the delivery report. The noisy tenant's users (two
processes, each its own user, so only a quota on the tenant bounds them together) produce
1 KiB records flat out to their tenant's ``orders``. Three phases, each ``--seconds``:

1. the quiet tenant alone;
2. the noisy tenant beside it, no quota;
3. the noisy tenant beside it with ``tenant=noisy`` bounded by ``--quota`` bytes/s
   (`odradek quota set tenant=noisy --producer-byte-rate`), its users throttled together.

Prints the quiet tenant's p50/p99/max per phase, the noisy tenant's rate (its users
together), and the ratio of the quiet p99 with the noisy tenant throttled to the quiet
p99 alone (target: at most 2).

    python scripts/tenant_quota_bench.py [--seconds 10] [--interval-ms 10] [--quota 1048576] [--rounds 3]

The phases are taken in turn, ``--rounds`` times; each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import confluent_kafka

sys.path.insert(0, str(Path(__file__).parent))
from tls_bench import start

TOPIC = "orders"
PASSWORD = "bench-secret"
NOISY_USERS = ("noisy-1", "noisy-2")
CLI = [sys.executable, "-m", "odradek.cli.main"]


def settings(port: int, user: str, **more: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORD,
        "acks": "all",
        **more,
    }


def noisy(port: int, user: str, seconds: float) -> None:
    """Produce 1 KiB records flat out for ``seconds``; print what was acknowledged."""
    acknowledged = [0]

    def delivered(error: object, _message: object) -> None:
        if error is None:
            acknowledged[0] += 1

    producer = confluent_kafka.Producer(settings(port, user, **{"linger.ms": 5}))
    record = b"n" * 1024
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            for _ in range(1000):
                producer.produce(TOPIC, record, on_delivery=delivered)
            producer.poll(0)
        except BufferError:  # the client's queue is full: wait for room, as a blocking client does
            producer.poll(0.05)
    producer.flush(30)
    elapsed = time.monotonic() - started
    print(json.dumps({"records": acknowledged[0], "bytes_per_second": acknowledged[0] * 1024 / elapsed}))


def quiet(port: int, seconds: float, interval: float) -> list[float]:
    """Produce one record per ``interval`` for ``seconds``; each one's latency (s)."""
    latencies: list[float] = []
    producer = confluent_kafka.Producer(settings(port, "quiet", **{"linger.ms": 0}))
    producer.produce(TOPIC, b"warm-up")
    producer.flush(30)
    started = time.monotonic()
    next_send = started
    while time.monotonic() - started < seconds:
        sent = time.perf_counter()

        def delivered(error: object, _message: object, sent: float = sent) -> None:
            if error is None:
                latencies.append(time.perf_counter() - sent)

        producer.produce(TOPIC, b"q" * 100, on_delivery=delivered)
        next_send += interval
        while (wait := next_send - time.monotonic()) > 0:
            producer.poll(wait)
    producer.flush(30)
    return latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    at = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000  # noqa: E731
    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def phase(port: int, seconds: float, interval: float, with_noisy: bool) -> dict[str, object]:
    neighbours = []
    if with_noisy:
        for user in NOISY_USERS:
            command = [
                sys.executable,
                __file__,
                "--noisy",
                str(port),
                "--user",
                user,
                "--seconds",
                str(seconds + 2),
            ]
            neighbours.append(subprocess.Popen(command, stdout=subprocess.PIPE))
        time.sleep(1.0)  # let them reach their pace (and, with a quota, its throttle)
    result: dict[str, object] = percentiles(quiet(port, seconds, interval))
    if neighbours:
        rate = 0.0
        for neighbour in neighbours:
            out, _ = neighbour.communicate(timeout=seconds + 60)
            rate += json.loads(out)["bytes_per_second"]
        result["noisy_bytes_per_second"] = rate
    return result


def run(url: str | None, *args: str, stdin: bytes = b"") -> None:
    server = ["--server", url] if url is not None else []
    subprocess.run([*CLI, *server, *args], input=stdin, check=True, capture_output=True)


def set_quota(url: str, token: str, rate: float | None) -> None:
    """Bound the noisy tenant to ``rate`` bytes/s (None: remove its quota)."""
    command = [*CLI, "--server", url, "quota"]
    command += (
        ["remove", "tenant=noisy"]
        if rate is None
        else ["set", "tenant=noisy", "--producer-byte-rate", str(rate)]
    )
    environment = {**os.environ, "ODRADEK_TOKEN": token}
    subprocess.run(command, check=rate is not None, capture_output=True, env=environment)


def median_of(results: list[dict[str, object]]) -> dict[str, object]:
    """Each figure's median over the rounds."""
    return {key: statistics.median(float(r[key]) for r in results) for key in results[0]}  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases (medians)")
    parser.add_argument("--quota", type=float, default=1024 * 1024, help="the noisy tenant's bytes/s")
    parser.add_argument("--noisy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--user", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noisy is not None:
        noisy(args.noisy, args.user, args.seconds)
        return
    interval = args.interval_ms / 1000
    with tempfile.TemporaryDirectory() as directory:
        data = str(Path(directory) / "data")
        run(None, "user", "add", "root", "--admin", "--data-dir", data, stdin=PASSWORD.encode() + b"\n")
        for tenant, users in (("calm", ("quiet",)), ("noisy", NOISY_USERS)):
            run(None, "tenant", "create", tenant, "--data-dir", data)
            for user in users:
                run(
                    None,
                    "user",
                    "add",
                    user,
                    "--tenant",
                    tenant,
                    "--data-dir",
                    data,
                    stdin=PASSWORD.encode() + b"\n",
                )
        token = (
            subprocess.run(
                [*CLI, "token", "create", "root", "--data-dir", data], check=True, capture_output=True
            )
            .stdout.decode()
            .strip()
        )
        process, url, port = start(Path(data), ["--auth"])
        try:
            for user in ("quiet", NOISY_USERS[0]):  # each tenant's own orders, made through Metadata
                producer = confluent_kafka.Producer(settings(port, user))
                producer.produce(TOPIC, b"make")
                producer.flush(30)
            rounds: dict[str, list[dict[str, object]]] = {}
            quota_name = f"noisy, quota {args.quota:g} B/s"
            for _ in range(args.rounds):  # the phases in turn, so that the machine's load falls on each
                rounds.setdefault("alone", []).append(phase(port, args.seconds, interval, False))
                set_quota(url, token, None)
                rounds.setdefault("noisy, no quota", []).append(phase(port, args.seconds, interval, True))
                set_quota(url, token, args.quota)
                rounds.setdefault(quota_name, []).append(phase(port, args.seconds, interval, True))
                set_quota(url, token, None)
        finally:
            process.terminate()
            process.wait(30)
    figures = {name: median_of(results) for name, results in rounds.items()}
    for name, figure in figures.items():
        noisy_rate = figure.get("noisy_bytes_per_second")
        extra = f"  noisy tenant {noisy_rate / 1e6:.1f} MB/s" if isinstance(noisy_rate, float) else ""
        print(
            f"{name:<28} quiet p50 {figure['p50_ms']:7.2f} ms  p99 {figure['p99_ms']:7.2f} ms  "
            f"max {figure['max_ms']:7.2f} ms  ({figure['count']:.0f} records){extra}"
        )
    alone = figures["alone"]["p99_ms"]
    throttled = figures[quota_name]["p99_ms"]
    unbounded = figures["noisy, no quota"]["p99_ms"]
    assert isinstance(alone, float) and isinstance(throttled, float) and isinstance(unbounded, float)
    print(f"quiet p99 with the noisy tenant throttled / alone: {throttled / alone:.2f}x (target <= 2x)")
    print(f"quiet p99 with the noisy tenant unbounded / alone: {unbounded / alone:.2f}x")


if __name__ == "__main__":
    main()
