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
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import confluent_kafka

sys.path.insert(0, str(Path(__file__).parent))
from quota_bench import noisy, phase, report, rounds_of
from tls_bench import start

TOPIC = "orders"
PASSWORD = "bench-secret"
NOISY_USERS = ("noisy-1", "noisy-2")
CLI = [sys.executable, "-m", "odradek.cli.main"]


def settings(port: int, user: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": PASSWORD,
        "acks": "all",
    }


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
        noisy(settings(args.noisy, args.user), TOPIC, args.seconds)
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
            neighbours = [
                [
                    sys.executable,
                    __file__,
                    "--noisy",
                    str(port),
                    "--user",
                    user,
                    "--seconds",
                    str(args.seconds + 2),
                ]
                for user in NOISY_USERS
            ]
            quota_name = f"noisy, quota {args.quota:g} B/s"
            rounds = rounds_of(
                args.rounds,
                quota_name,
                lambda noisy: phase(
                    settings(port, "quiet"), TOPIC, args.seconds, interval, neighbours if noisy else []
                ),
                lambda bounded: set_quota(url, token, args.quota if bounded else None),
            )
        finally:
            process.terminate()
            process.wait(30)
    report(rounds, quota_name, "noisy tenant")


if __name__ == "__main__":
    main()
