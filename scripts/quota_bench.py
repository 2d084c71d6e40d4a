"""A noisy neighbour against a quiet one, with and without a quota (a figure, not a test).

One `odradek serve` with a Kafka listener. A quiet producer (confluent-kafka, client.id
``quiet``, acks=all, no batching delay) produces one 100-byte record every
``--interval-ms``; its produce latency is the time from produce() to the delivery
report. A noisy producer (another process, client.id ``noisy``) produces 1 KiB records
flat out. Three phases, each ``--seconds`` long:

1. the quiet producer alone;
2. the noisy one beside it, no quota;
3. the noisy one beside it with ``client-id=noisy`` bounded by ``--quota`` bytes/s
   (`odradek quota set`), so the door throttles it (KIP-219).

Prints the quiet producer's p50/p99/max per phase, the noisy one's rate, and the ratio
of the quiet p99 with the noisy one throttled to the quiet p99 alone (target: at most 2).

    python scripts/quota_bench.py [--seconds 10] [--interval-ms 10] [--quota 1048576] [--rounds 3]

The phases are taken in turn, ``--rounds`` times; each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import confluent_kafka.admin

sys.path.insert(0, str(Path(__file__).parent))
from tls_bench import start

TOPIC = "quota.bench"
Config = dict[str, Any]


def plain(port: int, client_id: str) -> Config:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "client.id": client_id, "acks": "all"}


def noisy(config: Config, topic: str, seconds: float) -> None:
    """Produce 1 KiB records flat out for ``seconds``; print what was acknowledged."""
    acknowledged = [0]

    def delivered(error: object, _message: object) -> None:
        if error is None:
            acknowledged[0] += 1

    producer = confluent_kafka.Producer({**config, "linger.ms": 5})
    record = b"n" * 1024
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            for _ in range(1000):
                producer.produce(topic, record, on_delivery=delivered)
            producer.poll(0)
        except BufferError:  # the client's queue is full: wait for room, as a blocking client does
            producer.poll(0.05)
    producer.flush(30)
    elapsed = time.monotonic() - started
    print(json.dumps({"records": acknowledged[0], "bytes_per_second": acknowledged[0] * 1024 / elapsed}))


def quiet(config: Config, topic: str, seconds: float, interval: float) -> list[float]:
    """Produce one record per ``interval`` for ``seconds``; each one's latency (s)."""
    latencies: list[float] = []
    producer = confluent_kafka.Producer({**config, "linger.ms": 0})
    producer.produce(topic, b"warm-up")
    producer.flush(30)
    started = time.monotonic()
    next_send = started
    while time.monotonic() - started < seconds:
        sent = time.perf_counter()

        def delivered(error: object, _message: object, sent: float = sent) -> None:
            if error is None:
                latencies.append(time.perf_counter() - sent)

        producer.produce(topic, b"q" * 100, on_delivery=delivered)
        next_send += interval
        while (wait := next_send - time.monotonic()) > 0:
            producer.poll(wait)
    producer.flush(30)
    return latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    at = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000  # noqa: E731
    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def phase(
    config: Config, topic: str, seconds: float, interval: float, neighbours: list[list[str]]
) -> dict[str, object]:
    """The quiet producer's latencies while the ``neighbours`` (commands printing what
    they produced, see :func:`noisy`) run beside it."""
    running = [subprocess.Popen(command, stdout=subprocess.PIPE) for command in neighbours]
    if running:
        time.sleep(1.0)  # let them reach their pace (and, with a quota, its throttle)
    result: dict[str, object] = percentiles(quiet(config, topic, seconds, interval))
    if running:
        result["noisy_bytes_per_second"] = sum(
            json.loads(process.communicate(timeout=seconds + 60)[0])["bytes_per_second"]
            for process in running
        )
    return result


def median_of(results: list[dict[str, object]]) -> dict[str, object]:
    """Each figure's median over the rounds."""
    return {key: statistics.median(float(r[key]) for r in results) for key in results[0]}  # type: ignore[arg-type]


def rounds_of(
    count: int,
    quota_name: str,
    measure: Callable[[bool], dict[str, object]],
    set_quota: Callable[[bool], None],
) -> dict[str, list[dict[str, object]]]:
    """The three phases in turn, ``count`` times, so that the machine's load falls on each."""
    rounds: dict[str, list[dict[str, object]]] = {}
    for _ in range(count):
        rounds.setdefault("alone", []).append(measure(False))
        set_quota(False)
        rounds.setdefault("noisy, no quota", []).append(measure(True))
        set_quota(True)
        rounds.setdefault(quota_name, []).append(measure(True))
        set_quota(False)
    return rounds


def report(rounds: dict[str, list[dict[str, object]]], quota_name: str, noisy_name: str) -> None:
    figures = {name: median_of(results) for name, results in rounds.items()}
    for name, figure in figures.items():
        noisy_rate = figure.get("noisy_bytes_per_second")
        extra = f"  {noisy_name} {noisy_rate / 1e6:.1f} MB/s" if isinstance(noisy_rate, float) else ""
        print(
            f"{name:<28} quiet p50 {figure['p50_ms']:7.2f} ms  p99 {figure['p99_ms']:7.2f} ms  "
            f"max {figure['max_ms']:7.2f} ms  ({figure['count']:.0f} records){extra}"
        )
    alone = figures["alone"]["p99_ms"]
    throttled = figures[quota_name]["p99_ms"]
    unbounded = figures["noisy, no quota"]["p99_ms"]
    assert isinstance(alone, float) and isinstance(throttled, float) and isinstance(unbounded, float)
    print(f"quiet p99 with the {noisy_name} throttled / alone: {throttled / alone:.2f}x (target <= 2x)")
    print(f"quiet p99 with the {noisy_name} unbounded / alone: {unbounded / alone:.2f}x")


def set_quota(url: str, rate: float | None) -> None:
    """Bound the noisy client id to ``rate`` bytes/s (None: remove its quota)."""
    command = [sys.executable, "-m", "odradek.cli.main", "--server", url, "quota"]
    if rate is None:
        command += ["remove", "client-id=noisy"]
    else:
        command += ["set", "client-id=noisy", "--producer-byte-rate", str(rate)]
    subprocess.run(command, check=rate is not None, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases (medians)")
    parser.add_argument("--quota", type=float, default=1024 * 1024, help="the noisy client's bytes/s")
    parser.add_argument("--noisy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noisy is not None:
        noisy(plain(args.noisy, "noisy"), TOPIC, args.seconds)
        return
    interval = args.interval_ms / 1000
    with tempfile.TemporaryDirectory() as directory:
        process, url, port = start(Path(directory) / "data", [])
        try:
            admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
            admin.create_topics([confluent_kafka.admin.NewTopic(TOPIC, 1)])[TOPIC].result(30)
            neighbour = [sys.executable, __file__, "--noisy", str(port), "--seconds", str(args.seconds + 2)]
            quota_name = f"noisy, quota {args.quota:g} B/s"
            rounds = rounds_of(
                args.rounds,
                quota_name,
                lambda noisy: phase(
                    plain(port, "quiet"), TOPIC, args.seconds, interval, [neighbour] if noisy else []
                ),
                lambda bounded: set_quota(url, args.quota if bounded else None),
            )
        finally:
            process.terminate()
            process.wait(30)
    report(rounds, quota_name, "noisy one")


if __name__ == "__main__":
    main()
