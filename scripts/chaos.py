"""The chaos test of cluster mode (issue 14): a 3-member etcd, an S3 store (moto, or
SeaweedFS with ``--store seaweedfs``, behind a fault proxy) and 3 agents (``odradek
serve --etcd``) on loopback ports; workers append through
``odradek.connect("grpc://a1,a2,a3")`` (keyed appends, ``expect=`` races on hot keys,
idempotent retries) and through the Kafka door (an idempotent librdkafka
producer bootstrapped with every agent, keyed produces, ``acks=all``) while faults are
injected at random, one per cycle:
kill -9 of the owner (restarted, sometimes on an empty data directory), SIGSTOP of the
owner past its lease (then SIGCONT: a zombie), SIGTERM of the owner (a handover), kill
of an etcd member and of the etcd leader, store latency and 503s. After each fault the
time to the first successful append is measured; at the end every topic is read back
and the whole history is checked (src/odradek/chaos/checker.py).

With ``--cells N`` (above 1) the agents spread the topics over N cells (``odradek serve
--cells N``): the native workload gets topics in every cell, an owner fault hits the
agent serving a cell drawn at random and its recovery is timed on appends to that
cell's topics; the Kafka workers' topic lands in the cell of the broker that created it.
``--kafka-transactions N`` adds N threads running Kafka transactions that write a topic
in every cell (``chaos.kafka.tx.<n>``), one in five aborted on purpose; the checker
holds each transaction to all or none of its records.
``--group-members N`` adds N members of a consumer group reading the keyed appends'
topics (by the pattern ``chaos.keys.*`` over several cells: decision 0038), each
subscribing again after a failure; after the run they read until they got every record
read back, and the checker wants every record delivered at least once, none that is
not the log's, and none again after an ack settled it (odradek/chaos/group_workload.py).
``--store-readers N`` adds N threads fetching the keyed topics, each fetch through an
agent drawn at random, which answers from the store what the topic's cell sealed when
it does not serve the cell (decision 0042); the checker wants every fetched record to
be the log's at its offset (odradek/chaos/store_reads.py). ``--segment-bytes SIZE``
gives the workload's topics small segments, so that sealed ones exist to read.

The store is moto's S3 server by default. moto is Python: on a small machine the CPU
it takes to answer a takeover's fences, listings and downloads is a large part of what
a failover measures. ``--store seaweedfs`` runs SeaweedFS's S3 gateway (Go) instead,
which answers as a nearby object store's gateway would.

    python scripts/chaos.py [--cycles 100] [--agents 3] [--etcd-members 3] [--seed 0]
        [--report report.json] [--workdir DIR] [--workers 4] [--lease-ttl 3]
        [--faults kill_owner,pause_owner,...] [--steady SECONDS]
        [--kafka-workers 1] [--kafka-partitions 2] [--kafka-rate 200] [--kafka-transactions 0]
        [--cells 1] [--group-members 0] [--store-readers 0] [--segment-bytes SIZE]
        [--store moto|seaweedfs]

Progress (one line per cycle) goes to stderr, the report's text to stdout, the report as
JSON to ``--report`` (and ``WORKDIR/report.json``), the history to
``WORKDIR/history.jsonl``, the Kafka clients' logs to ``WORKDIR/kafka-k*.log``; the
report gives operations and anomalies per door. The exit status is 0 when the run found
no anomaly and every fault was recovered from, 1 otherwise, 2 if the cluster could not
be started. The work directory (temporary unless given) keeps every server's log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from odradek.chaos.cluster import ChaosSettings, report_text, run
from odradek.chaos.faults import FaultKind
from odradek.chaos.group_workload import GroupSettings
from odradek.chaos.kafka_workload import KafkaSettings
from odradek.chaos.processes import HarnessError
from odradek.chaos.store_reads import StoreReadSettings
from odradek.chaos.stores import SERVERS
from odradek.chaos.workload import WorkloadSettings
from odradek.errors import InvalidRequest


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=100, help="fault cycles (default 100)")
    parser.add_argument("--agents", type=int, default=3, help="cluster agents (default 3)")
    parser.add_argument("--etcd-members", type=int, default=3, help="etcd members (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults and the workload")
    parser.add_argument("--report", type=Path, help="write the report (JSON) here too")
    parser.add_argument(
        "--workdir", type=Path, help="servers' data and logs (default: a temporary directory)"
    )
    parser.add_argument("--workers", type=int, default=4, help="appending threads (default 4)")
    parser.add_argument(
        "--lease-ttl", type=float, default=3.0, help="agents' lease TTL in seconds (default 3)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(kind.value for kind in FaultKind),
        help="the kinds of faults to draw from, comma-separated (default all)",
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=2.0,
        help="seconds of steady traffic between faults, at most (default 2)",
    )
    parser.add_argument(
        "--kafka-workers", type=int, default=1, help="Kafka-door producing threads (default 1; 0: none)"
    )
    parser.add_argument(
        "--kafka-partitions",
        type=int,
        default=2,
        help="virtual partitions of the Kafka workers' topic (default 2)",
    )
    parser.add_argument(
        "--kafka-rate", type=float, default=200.0, help="produces per second per Kafka worker (default 200)"
    )
    parser.add_argument(
        "--kafka-transactions",
        type=int,
        default=0,
        help="Kafka-door threads running transactions over a topic in every cell (default 0)",
    )
    parser.add_argument(
        "--group-members",
        type=int,
        default=0,
        help="members of a consumer group reading the keyed topics, by pattern over cells (default 0)",
    )
    parser.add_argument(
        "--store-readers",
        type=int,
        default=0,
        help="threads fetching the keyed topics through agents drawn at random (default 0)",
    )
    parser.add_argument(
        "--segment-bytes",
        help="the workload topics' segment size, e.g. 64KiB (default: the topic default, 256 MiB)",
    )
    parser.add_argument(
        "--cells",
        type=int,
        default=1,
        help="cells the agents spread the topics over (odradek serve --cells; default 1)",
    )
    parser.add_argument(
        "--store",
        choices=SERVERS,
        default="moto",
        help="the S3 server behind the fault proxy (default moto; seaweedfs: SeaweedFS's gateway, in Go)",
    )
    parser.add_argument("--keep", action="store_true", help="keep a temporary work directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        kinds = tuple(FaultKind(name.strip()) for name in args.faults.split(",") if name.strip())
        settings = ChaosSettings(
            cycles=args.cycles,
            agents=args.agents,
            etcd_members=args.etcd_members,
            seed=args.seed,
            lease_ttl_seconds=args.lease_ttl,
            workload=WorkloadSettings(workers=args.workers),
            kafka=KafkaSettings(
                workers=args.kafka_workers,
                partitions=args.kafka_partitions,
                rate_per_second=args.kafka_rate,
                transactional=args.kafka_transactions,
            ),
            kinds=kinds,
            steady_seconds=(min(0.5, args.steady), args.steady),
            cells=args.cells,
            store_server=args.store,
            group=GroupSettings(members=args.group_members),
            store_reads=StoreReadSettings(readers=args.store_readers),
            segment_bytes=args.segment_bytes,
        )
    except (ValueError, InvalidRequest) as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="odradek-chaos-")) if temporary else args.workdir
    try:
        report = run(settings, workdir, progress)
    except HarnessError as exc:
        print(f"chaos: the cluster could not be run: {exc}\n(logs in {workdir})", file=sys.stderr)
        return 2
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(report_text(report))
    if temporary and not args.keep and report["valid"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        progress(f"work directory kept: {workdir}")
    return 0 if report["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
