"""Authorization's cost in one run: Kafka produce throughput with --authorize against
without, and the cost of one check.

Starts two `odradek serve --no-fsync --auth` processes side by side (SASL_PLAINTEXT with
SCRAM-SHA-512, no TLS, so that the two differ by authorization alone), the second with
--authorize and ``--bindings`` bindings in its data directory (one allowing the
benchmark's user everything on its topic, the rest for other principals and topics),
and produces with confluent-kafka to each in turn; each figure is the median of
``--rounds`` rounds. Then, in process, the cost of one check: a remembered decision
(what a request pays once its principal asked the same before) and a first decision
over the same bindings (a first decision scans the bindings of its principal and of
``User:*`` on one resource type: the benchmark user has one).

    python scripts/acl_bench.py [--records 500000] [--rounds 3] [--bindings 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from tls_bench import kafka_produce, start

from odradek.security import CredentialStore
from odradek.security.acl import Acl, Binding, Decider, binding
from odradek.security.acl_store import AclStore
from odradek.security.principal import Principal

PASSWORD = "bench-password"


def bindings(count: int) -> list[Binding]:
    """The benchmark user's binding and ``count - 1`` of 50 other users (other topics)."""
    made = [binding("User:bench", "topic", "literal", "kbench", "all", "allow")]
    for number in range(count - 1):
        made.append(
            binding(f"User:user{number % 50}", "topic", "prefixed", f"team{number}.", "write", "allow")
            if number % 2
            else binding(f"User:user{number % 50}", "topic", "match", f"other{number}.>", "read", "deny")
        )
    return made


def check_costs(count: int) -> tuple[float, float]:
    """Microseconds per remembered and per first decision over ``count`` bindings."""
    acl = Acl.of(bindings(count))
    principal = Principal("bench")
    decider = Decider(acl)
    decider.allowed(principal, "write", "topic", "kbench")
    loops = 200_000
    remembered = timeit.timeit(lambda: decider.allowed(principal, "write", "topic", "kbench"), number=loops)
    first_loops = 2_000
    first = timeit.timeit(lambda: acl.decide(principal, "write", "topic", "kbench"), number=first_loops)
    return remembered / loops * 1e6, first / first_loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bindings", type=int, default=1000, help="bindings of the authorizing server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name in ("open", "authorizing"):
            CredentialStore.open(str(root / name)).add_user("bench", PASSWORD)
        AclStore.open(str(root / "authorizing")).add(bindings(args.bindings))
        without, _, without_kafka = start(root / "open", ["--auth"])
        with_acls, _, with_kafka = start(root / "authorizing", ["--auth", "--authorize"])
        sasl = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "bench",
            "sasl.password": PASSWORD,
        }
        try:
            taken: list[list[float]] = [[], []]
            for _ in range(args.rounds):
                taken[0].append(kafka_produce(without_kafka, args.records, sasl))
                taken[1].append(kafka_produce(with_kafka, args.records, sasl))
        finally:
            for process in (without, with_acls):
                process.terminate()
                process.wait(30)
    plain, authorized = (statistics.median(found) for found in taken)
    print(f"Kafka produce, SCRAM-SHA-512, records/s: without {plain:,.0f}, with --authorize "
          f"({args.bindings} bindings) {authorized:,.0f}: {authorized / plain:.0%}")  # fmt: skip
    remembered, first = check_costs(args.bindings)
    print(f"one check over {args.bindings} bindings: remembered {remembered:.3f} us, first {first:.1f} us")


if __name__ == "__main__":
    main()
