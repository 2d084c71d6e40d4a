"""TLS against plaintext in one run: produce throughput (Flight and Kafka doors, 100-byte
records) and the cost of a connection (handshakes per second).

Starts two `odradek serve --no-fsync` processes side by side, one plain and one with
--tls-cert/--tls-key (a CA and certificate made here with `cryptography`), so the
figures differ by the transport only.

    python scripts/tls_bench.py [--records 500000] [--connections 200]
"""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import odradek

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cluster"))
from etcd_certificates import make_certificates

from odradek.ports import free_port

RECORD = b"x" * 100
BATCH = 10_000


def start(directory: Path, flags: list[str]) -> tuple[subprocess.Popen[bytes], str, int]:
    kafka = free_port()
    command = [sys.executable, "-m", "odradek.cli.main", "serve", "--no-fsync", "--data-dir", str(directory),
               "--listen", "127.0.0.1:0", "--kafka-listen", f"127.0.0.1:{kafka}", "--registry-listen", "off",
               *flags]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"url=(\S+)", line)
    assert match, line
    return process, match.group(1), kafka


def flight_produce(url: str, records: int, tls: dict[str, str]) -> float:
    with odradek.connect(url, **tls) as client:
        client.create_topic("bench", exist_ok=True)
        batch = [{"value": RECORD}] * BATCH
        started = time.perf_counter()
        for _ in range(records // BATCH):
            client.append("bench", batch)
        return records / (time.perf_counter() - started)


def ssl_settings(ca: str | None) -> dict[str, str]:
    """A Kafka client's settings for the SSL listener trusting ``ca`` (none: plaintext)."""
    return {} if ca is None else {"security.protocol": "SSL", "ssl.ca.location": ca}


def kafka_produce(port: int, records: int, secure: dict[str, str]) -> float:
    """Records/s of producing ``records`` 100-byte records with confluent-kafka, with
    ``secure`` (security.protocol and its settings) added to the producer's settings."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 5, "acks": "all", **secure})
    producer.produce("kbench", RECORD)
    producer.flush(30)
    started = time.perf_counter()
    for number in range(records):
        while True:
            try:
                producer.produce("kbench", RECORD)
                break
            except BufferError:
                producer.poll(0.01)
        if number % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return records / (time.perf_counter() - started)


def flight_connections(url: str, count: int, tls: dict[str, str]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with odradek.connect(url, **tls) as client:
            client.list_topics()
    return count / (time.perf_counter() - started)


def kafka_connections(port: int, count: int, ca: str | None) -> float:
    context = ssl.create_default_context(cafile=ca) if ca is not None else None
    started = time.perf_counter()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            if context is not None:
                context.wrap_socket(raw, server_hostname="127.0.0.1").close()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        files = make_certificates(root / "certificates")
        ca = str(files.ca)
        plain, plain_url, plain_kafka = start(root / "plain", [])
        secure, tls_url, tls_kafka = start(
            root / "tls", ["--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)]
        )
        try:
            rows = [
                ("Flight produce, records/s", flight_produce(plain_url, args.records, {}),
                 flight_produce(tls_url, args.records, {"tls_ca": ca})),
                ("Kafka produce (confluent-kafka), records/s", kafka_produce(plain_kafka, args.records, {}),
                 kafka_produce(tls_kafka, args.records, ssl_settings(ca))),
                ("Flight connect + call, connections/s", flight_connections(plain_url, args.connections, {}),
                 flight_connections(tls_url, args.connections, {"tls_ca": ca})),
                ("Kafka TCP (+TLS handshake), connections/s",
                 kafka_connections(plain_kafka, args.connections, None),
                 kafka_connections(tls_kafka, args.connections, ca)),
            ]  # fmt: skip
        finally:
            for process in (plain, secure):
                process.terminate()
                process.wait(30)
    print(f"{'measure':45} {'plain':>12} {'TLS':>12} {'TLS/plain':>10}")
    for name, without, with_tls in rows:
        print(f"{name:45} {without:12,.0f} {with_tls:12,.0f} {with_tls / without:10.0%}")


if __name__ == "__main__":
    main()
