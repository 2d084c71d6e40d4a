"""Command-line options and the two size profiles (default: ~10 minutes, --quick: ~1)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from odradek.bench.units import KIB, MIB

# In this order: appends (latency, closed loops) are measured before any consumer group exists (after
# Odradek's groups ran, its appends' fdatasync was seen to slow down run after run,
# which belongs in a bug report, not in the latency figure); key replay runs last and
# loads its own large topic once the others are dropped.
WORKLOADS = (
    "ingest_100b",
    "ingest_64k",
    "append_latency",
    "append_closed_loop",
    "append_concurrent",
    "catchup_read",
    "consumer_group",
    "key_replay",
)
SYSTEMS = (
    "odradek",
    "odradek-remote",
    "odradek-kafka",
    "redis-always",
    "redis-everysec",
    "nats",
    "nats-sync",
)
# Odradek's object-store agents (issue 13) and their workloads: run only when named
# (``--systems odradek,odradek-store,... --workloads ...,store_requests,store_restart``),
# beside the directory row they are compared with.
STORE_SYSTEMS = ("odradek-store", "odradek-store-10ms", "odradek-store-60ms")
STORE_WORKLOADS = ("store_requests", "store_restart")
# Derived state (issue 17, bench/state_workloads.py): compaction and its effect on
# appends, read_key from a snapshot, synchronous commit; run only when named, on
# Odradek's rows.
STATE_WORKLOADS = ("compaction", "snapshot_replay", "sync_commit")
# Cluster mode (issue 14): three ``odradek serve --etcd`` agents on a 3-member etcd and
# moto's S3 server, and its workloads (bench/cluster_workloads.py); run only when named
# (``--systems odradek-cluster --workloads cluster_etcd,...``). In this order: etcd's
# load is measured on a cluster that nothing has disturbed yet, the kills come last;
# cluster_spread runs on a cluster of its own, whose agents spread the topics over cells.
CLUSTER_SYSTEMS = ("odradek-cluster",)
CLUSTER_WORKLOADS = (
    "cluster_etcd",
    "cluster_produce",
    "cluster_ingest",
    "cluster_failover",
    "cluster_spread",
    "cluster_reads",
)
runs_min = 1


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    runs: int
    #: Warm-up runs are this fraction of a run's size (latency: of its duration).
    warmup_fraction: float
    #: An ingest run predicted (from its warm-up) to take longer is shortened, with a note.
    run_seconds_max: float
    ingest_records: int
    distinct_keys: int
    small_value_bytes: int
    large_value_bytes: int
    large_total_bytes: int
    group_records: int
    latency_rate_per_second: float
    latency_seconds: float
    #: Closed-loop single appends: each run's length, and the concurrent workload's shape.
    closed_loop_seconds: float
    concurrent_processes: int
    concurrent_threads: int
    replay_topic_records: int
    replay_key_records: int
    fsync_probe_bytes: int
    fsync_latency_samples: int
    tcp_probe_bytes: int
    #: store_restart: the large topic an agent restarts on (10M records: issue 13's
    #: figure), and its segment size (the --quick topic is smaller than a default segment).
    store_restart_records: int = 10_000_000
    store_restart_segment_bytes: int = 256 * MIB
    #: cluster_failover: kill -9 failovers and SIGTERM handovers of the owner (the issue
    #: asks for >= 20 kills); the agents' lease TTL (serve's default).
    cluster_kills: int = 20
    cluster_handovers: int = 10
    cluster_lease_ttl_seconds: float = 3.0
    #: The S3 server of the cluster rows (bench/s3server.py SERVERS; --s3-server).
    s3_server: str = "moto"
    #: cluster_produce: single appends at a fixed rate, open loop; each run's length, and
    #: the kill -9 failovers the appends then run across.
    cluster_produce_rate_per_second: float = 200.0
    cluster_produce_seconds: float = 10.0
    cluster_produce_kills: int = 5
    #: cluster_etcd: each window over which etcd's own counters are read (idle, then busy).
    cluster_etcd_seconds: float = 60.0
    #: compaction: single appends per second beside the round, below what one appender
    #: sustains on a busy disk (fsync p50 over 1 ms), so that what the p99 shows is the
    #: round's effect, not a queue behind a saturated appender.
    compaction_append_rate_per_second: float = 200.0
    #: snapshot_replay: the events of each of its two keys, the events after the second
    #: key's snapshot, and the reads of each kind per run (issue 17: 100,000 events).
    snapshot_key_events: int = 100_000
    snapshot_after: int = 1000
    snapshot_reads: int = 200
    #: sync_commit: appends of each kind (plain, waiting for a view) per run.
    sync_commit_appends: int = 1000


DEFAULT = Profile(
    name="default",
    runs=5,
    warmup_fraction=0.2,
    run_seconds_max=30.0,
    ingest_records=500_000,
    distinct_keys=100_000,
    small_value_bytes=100,
    large_value_bytes=64 * KIB,
    large_total_bytes=256 * MIB,
    group_records=200_000,
    latency_rate_per_second=1000.0,
    latency_seconds=3.0,
    closed_loop_seconds=3.0,
    concurrent_processes=4,
    concurrent_threads=4,
    replay_topic_records=1_000_000,
    replay_key_records=1000,
    fsync_probe_bytes=256 * MIB,
    fsync_latency_samples=1000,
    tcp_probe_bytes=2048 * MIB,
)

QUICK = Profile(
    name="quick",
    runs=3,
    warmup_fraction=0.2,
    run_seconds_max=5.0,
    ingest_records=50_000,
    distinct_keys=100_000,
    small_value_bytes=100,
    large_value_bytes=64 * KIB,
    large_total_bytes=16 * MIB,
    group_records=20_000,
    latency_rate_per_second=1000.0,
    latency_seconds=1.0,
    closed_loop_seconds=0.5,
    concurrent_processes=4,
    concurrent_threads=4,
    replay_topic_records=50_000,
    replay_key_records=1000,
    fsync_probe_bytes=32 * MIB,
    fsync_latency_samples=200,
    tcp_probe_bytes=256 * MIB,
    store_restart_records=500_000,
    store_restart_segment_bytes=16 * MIB,
    cluster_kills=3,
    cluster_handovers=2,
    cluster_produce_seconds=3.0,
    cluster_produce_kills=1,
    cluster_etcd_seconds=30.0,
    snapshot_key_events=10_000,
    snapshot_reads=50,
    sync_commit_appends=200,
)


@dataclasses.dataclass(frozen=True)
class Options:
    profile: Profile
    systems: tuple[str, ...]
    workloads: tuple[str, ...]
    out: Path
    scratch: Path | None
    allow_install: bool
    charts: bool


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="odradek bench",
        description="Measure Odradek against Redis Streams, NATS JetStream and this machine's limits "
        "in one run; write JSON, a Markdown table and PNG charts.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and fewer runs: about a minute instead of about ten"
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems to run (default: all of {', '.join(SYSTEMS)}; "
        f"also {', '.join(STORE_SYSTEMS)}: object-store agents, and {', '.join(CLUSTER_SYSTEMS)}: "
        "three agents in cluster mode, run only when named)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads (default: all of {', '.join(WORKLOADS)}; "
        f"also {', '.join(STORE_WORKLOADS)}, for the object-store agents, "
        f"{', '.join(STATE_WORKLOADS)}, for compaction, snapshots and views, and "
        f"{', '.join(CLUSTER_WORKLOADS)}, for cluster mode, run only when named)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="measured runs per figure after the warm-up; the figure is their median (default 5, --quick 3)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="directory for results.json, results.md and charts (default bench-results/)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="where data directories go (default: the system temp dir); its disk is the one measured",
    )
    parser.add_argument(
        "--replay-records",
        type=int,
        default=None,
        help="records in the key-replay topic (default 1,000,000; --quick 50,000)",
    )
    parser.add_argument(
        "--restart-records",
        type=int,
        default=None,
        help="records in the store_restart topic (default 10,000,000; --quick 500,000)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get install a missing server: skip that system instead",
    )
    parser.add_argument(
        "--s3-server",
        choices=("moto", "seaweedfs"),
        default="moto",
        help="the S3 server of the cluster rows: moto (default) or seaweedfs (SeaweedFS's gateway, in Go: "
        "its own CPU weighs less in what a takeover measures)",
    )
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)

    profile = QUICK if args.quick else DEFAULT
    profile = dataclasses.replace(profile, s3_server=args.s3_server)
    if args.runs is not None:
        if args.runs < runs_min:
            parser.error(f"--runs must be at least {runs_min}")
        profile = dataclasses.replace(profile, runs=args.runs)
    if args.replay_records is not None:
        if args.replay_records < profile.replay_key_records:
            parser.error(f"--replay-records must be at least {profile.replay_key_records}")
        profile = dataclasses.replace(profile, replay_topic_records=args.replay_records)
    if args.restart_records is not None:
        if args.restart_records < 1:
            parser.error("--restart-records must be at least 1")
        profile = dataclasses.replace(profile, store_restart_records=args.restart_records)
    return Options(
        profile=profile,
        systems=_choices(parser, "--systems", args.systems, SYSTEMS + STORE_SYSTEMS + CLUSTER_SYSTEMS),
        workloads=_choices(
            parser,
            "--workloads",
            args.workloads,
            WORKLOADS + STORE_WORKLOADS + STATE_WORKLOADS + CLUSTER_WORKLOADS,
        ),
        out=args.out,
        scratch=args.scratch,
        allow_install=not args.no_install,
        charts=not args.no_charts,
    )


def _choices(
    parser: argparse.ArgumentParser, flag: str, text: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in allowed]
    if unknown or not chosen:
        parser.error(f"{flag}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return tuple(name for name in allowed if name in chosen)
