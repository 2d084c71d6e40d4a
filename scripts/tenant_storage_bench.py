"""What a tenant's storage_bytes quota costs an append, and what summing the usage costs.

    python scripts/tenant_storage_bench.py [--appends 20000] [--rounds 5] [--topics 1000]

An embedded engine (no fsync, so that the check is not hidden behind a disk) appends
one 100-byte record at a time to a tenant's topic, in rounds alternating between no quota
and a quota far above what is written (every append checked, none refused); the report
gives each's median time per append over the rounds and their difference, and the time
of the check and the count alone (no append around them). Then the time
to sum every tenant's usage (one pass over the open topics' segment sizes, what the
engine does at most every ``limits.tenant_storage_refresh_seconds``) with ``--topics``
topics spread over ten tenants.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from odradek.engine.engine import Engine, _frame_size


def _per_append(engine: Engine, topic: str, appends: int) -> float:
    record = [{"value": b"v" * 100}]
    started = time.perf_counter()
    for _ in range(appends):
        engine.append(topic, record)
    return (time.perf_counter() - started) / appends


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--topics", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        engine = Engine(directory, fsync=False)
        try:
            engine.create_topic("_t.acme.orders")
            times: dict[str, list[float]] = {"no quota": [], "quota": []}
            for _ in range(args.rounds):
                for phase in times:
                    engine.tenant_storage.quota = (lambda tenant: 1e15) if phase == "quota" else None
                    times[phase].append(_per_append(engine, "_t.acme.orders", args.appends))
            medians = {phase: statistics.median(found) * 1e6 for phase, found in times.items()}
            for phase, median in medians.items():
                print(f"append, {phase}: {median:.2f} us median of {args.rounds} rounds of {args.appends}")
            print(f"difference: {medians['quota'] - medians['no quota']:+.2f} us per append")
            # The check and the count alone, as submit_append does them (no append around).
            storage = engine.tenant_storage
            topic = engine._topic("_t.acme.orders")
            ticket = topic.log.next_offset
            calls = 100_000
            started = time.perf_counter()
            for _ in range(calls):
                tenant = storage.check("_t.acme.orders")
                assert tenant is not None
                storage.added(tenant, _frame_size(topic, ticket))
            alone = (time.perf_counter() - started) / calls * 1e6
            print(f"the check and the count alone: {alone:.2f} us per append (one run of {calls})")
            for number in range(args.topics):
                engine.create_topic(f"_t.tenant{number % 10}.t{number}")
            sums = []
            for _ in range(20):
                engine.tenant_storage.stale()
                started = time.perf_counter()
                engine.tenant_storage.usage("acme")
                sums.append(time.perf_counter() - started)
            count = len(engine.list_topics())
            summed = statistics.median(sums) * 1e3
            print(f"summing the usage over {count} topics: {summed:.3f} ms median of 20")
        finally:
            engine.close()


if __name__ == "__main__":
    main()
