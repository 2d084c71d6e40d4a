"""Cluster mode's rows (issue 14): three agents on etcd and an object store, on real
processes, measured from the outside the way a user would see them.

The system, ``odradek-cluster``, is a 3-member etcd, an S3 server (moto's, or
SeaweedFS's gateway with ``--s3-server seaweedfs``) and three
``odradek serve --store ... --etcd ...`` agents (bench/cluster_harness.py); clients are
``odradek.connect`` given every agent. The row runs only the workloads below (the
common ones are skipped on it, and these are skipped on every other row):

* ``cluster_etcd``: etcd's own Prometheus counters (every member's ``/metrics``:
  ``grpc_server_msg_received_total`` and ``grpc_server_started_total`` by method,
  ``etcd_server_proposals_committed_total``) read before and after a quiet window with
  the three agents idle, then again over a window with appends running; the deltas over
  all members (a client's request reaches exactly one member's gRPC server), divided by
  agents and seconds. Nothing else may ask etcd anything meanwhile: the harness asks
  the agents (``cluster_status``), never etcd.
* ``cluster_produce``: single keyed appends at a fixed rate (open loop, from a pool of
  producer threads, each append timed from its scheduled send to its answer; each
  thread an idempotent producer, so an append caught by a failover is retried by the
  client and written once): p50 / p99 per steady run; then, after a run's length more of
  them each time, the owner is killed (kill -9) while the appends go on, and the appends
  that were in flight at some moment between the kill and the first answer to an append
  sent after it are the failover window. Each kill's takeover (as the new owner reports
  it) is in the note: its length follows the journal left in the store.
* ``cluster_ingest``: batches of 1,000 keyed records through ``append_many``, a few
  client threads (a topic and a client each), with 3, then 2, then 1 agent running
  (standbys stopped with SIGTERM; the owner stays): in this version one owner serves
  everything, so the figure shows what standbys cost, not a scale-out.
* ``cluster_failover``: one thread appends in a closed loop as an idempotent producer
  all along; per cycle the owner is killed (kill -9), the time from the kill to the
  first successful append answered by another agent is recorded, and the killed agent
  is started again and waited for until the owner knows it (it joined as a standby).
  Then the same with SIGTERM (a handover). Failed appends are counted (target 0).
* ``cluster_spread``: on a cluster of its own whose agents run with ``--cells 3``
  (decision 0032), the scale-out figure: batches of 1,000 keyed records through
  ``append_many`` to 6 topics, two in each cell (where each went is checked and said),
  a client and a thread per topic, with 3, 2 and 1 agent running, the three cells
  spread over them (each agent's share waited for, read from every agent's
  ``cluster_status``). The runs go in rounds (3, 2, then 1 agent, the others stopped
  with SIGTERM so that their cells are handed over, then all started again), so that
  each count's runs are spread over the same stretch of time.
* ``cluster_reads``: a topic's whole history fetched from offset 0 by one client
  given its owner, then by one given another agent only, which answers the sealed
  segments from the store and leaves the owner's tail to the owner (decision 0042);
  then the same two with one read by pattern from earliest, which the other agent
  streams from the store and goes on with at the owner: records/s, every process's
  CPU, and the share answered from the store.

Two cores run all of it: etcd, the S3 server, three agents and the bench's clients share them,
so every figure includes that contention (the notes and BENCHMARKS.md say so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

import odradek
from odradek.bench import datasets, s3server, servers, timing
from odradek.bench.cluster_harness import (
    AGENTS,
    ETCD_MEMBERS,
    FLUSH_MS,
    SYSTEM,
    AppendLoop,
    BenchCluster,
    EtcdLoad,
    OpenLoop,
    Progress,
    Takeover,
    call_timeout_seconds,
    cpu_used,
    describe_cpu,
    etcd_load_between,
    keep_logs,
    producer_threads_max,
    recovery_seconds_max,
    takeover,
)
from odradek.bench.options import CLUSTER_WORKLOADS, Options, Profile
from odradek.bench.outcomes import Skipped
from odradek.bench.results import ERROR, OK, SKIPPED, Figure, Metric, SystemInfo
from odradek.bench.systems.base import check_count
from odradek.bench.units import format_value
from odradek.chaos.agents import Agent
from odradek.client.remote import FAILOVER_BACKOFF_MAX_SECONDS
from odradek.errors import OdradekError

WORKLOADS = CLUSTER_WORKLOADS
CELLS_WORKLOADS = ("cluster_spread",)  # run on a cluster of several cells of their own
# Before a kill, the appends must have been answered by the owner this long: the client
# settled on it, nothing of the previous cycle still in flight.
steady_seconds = 1.0
ingest_batch_records = 1000
ingest_threads = 4
ingest_window = 32  # batches in flight per stream: a flush window plus a PUT each
ingest_agents = (3, 2, 1)
spread_cells = 3  # serve --cells of cluster_spread's agents
spread_topics_per_cell = 2
spread_agents = (3, 2, 1)  # the order of each round
busy_lead_seconds = 2.0  # appends run this long before the busy etcd window opens
ETCD_APT_PACKAGE = "etcd-server"
LOGS_DIRECTORY = "cluster-logs"  # in --out, when a cluster workload failed


def _metric(name: str, workload: str, title: str, unit: str, higher: bool = False) -> Metric:
    return Metric(name, workload, title, unit, higher)


_ETCD_KINDS = (
    ("requests", "etcd requests per agent per second", "requests/s"),
    ("keepalives", "etcd lease keepalives per agent per second", "requests/s"),
    ("ranges", "etcd range requests per agent per second", "requests/s"),
    ("txns", "etcd txn requests per agent per second", "requests/s"),
    ("watch", "etcd watch stream messages per agent per second", "messages/s"),
    ("proposals", "etcd raft proposals committed per agent per second", "proposals/s"),
)
METRICS = (
    _metric("cluster_failover_p50", "cluster_failover", "Failover, owner killed (kill -9), p50", "s"),
    _metric("cluster_failover_p99", "cluster_failover", "Failover, owner killed (kill -9), p99", "s"),
    _metric("cluster_failover_max", "cluster_failover", "Failover, owner killed (kill -9), max", "s"),
    _metric("cluster_handover_p50", "cluster_failover", "Handover, owner stopped (SIGTERM), p50", "s"),
    _metric("cluster_handover_p99", "cluster_failover", "Handover, owner stopped (SIGTERM), p99", "s"),
    _metric(
        "cluster_failover_errors", "cluster_failover", "Idempotent appends failed across them", "appends"
    ),
    _metric("cluster_produce_p50", "cluster_produce", "Cluster single-append latency p50", "ms"),
    _metric("cluster_produce_p99", "cluster_produce", "Cluster single-append latency p99", "ms"),
    _metric("cluster_produce_failover_p50", "cluster_produce", "Appends across a failover, p50", "ms"),
    _metric("cluster_produce_failover_p99", "cluster_produce", "Appends across a failover, p99", "ms"),
    _metric("cluster_produce_failover_max", "cluster_produce", "Appends across a failover, max", "ms"),
    _metric("cluster_produce_errors", "cluster_produce", "Cluster appends failed", "appends"),
    *(
        _metric(
            f"cluster_ingest_{n}",
            "cluster_ingest",
            f"Aggregate ingest, {n} agent{'s' * (n > 1)}",
            "records/s",
            True,
        )
        for n in sorted(ingest_agents)
    ),
    *(
        _metric(
            f"cluster_spread_{n}",
            "cluster_spread",
            f"Aggregate ingest, {spread_cells} cells over {n} agent{'s' * (n > 1)}",
            "records/s",
            True,
        )
        for n in sorted(spread_agents)
    ),
    *(
        _metric(f"cluster_etcd_{kind}_{phase}", "cluster_etcd", f"{title}, {label}", unit)
        for phase, label in (("idle", "idle"), ("busy", "appends running"))
        for kind, title, unit in _ETCD_KINDS
    ),
    _metric("cluster_etcd_watch_streams", "cluster_etcd", "etcd watch streams open per agent", "streams"),
    _metric(
        "cluster_reads_owner", "cluster_reads", "Catch-up read of a topic at its owner", "records/s", True
    ),
    _metric(
        "cluster_reads_store",
        "cluster_reads",
        "Catch-up read at another agent (sealed segments from the store)",
        "records/s",
        True,
    ),
    _metric(
        "cluster_reads_pattern_owner",
        "cluster_reads",
        "Catch-up read by pattern at the owner",
        "records/s",
        True,
    ),
    _metric(
        "cluster_reads_pattern_store",
        "cluster_reads",
        "Catch-up read by pattern at another agent (sealed segments from the store)",
        "records/s",
        True,
    ),
)


def metrics_of(workload: str) -> list[Metric]:
    return [metric for metric in METRICS if metric.workload == workload]


def not_here(system: str, workload: str, progress: Progress) -> list[Figure]:
    """Figures of a cluster workload on another row: skipped, saying why."""
    note = f"measures cluster mode: runs on the {SYSTEM} row only"
    progress(f"{system} {workload}: skipped ({note})")
    return [Figure(m.name, system, SKIPPED, note=note) for m in metrics_of(workload)]


def server_title(profile: Profile) -> str:
    return s3server.SERVERS[profile.s3_server].title


def system_info(profile: Profile) -> SystemInfo:
    return SystemInfo(
        name=SYSTEM,
        title="Odradek cluster, 3 agents",
        durability=(
            "in the object store before ack: the owner's journal object holding the append was PUT to "
            + (
                "moto's S3 server on loopback (objects in moto's memory: S3's protocol, not S3's durability)"
                if profile.s3_server == "moto"
                else "SeaweedFS's S3 gateway on loopback (one volume server on this machine's disk: S3's "
                "protocol, not S3's durability)"
            )
        ),
        durability_label="store PUT before ack",
        weaker_durability=False,
        networked=True,
        is_odradek=True,
        tuning=(
            f"{AGENTS} agents of odradek serve --etcd (lease TTL {profile.cluster_lease_ttl_seconds:g} s, "
            f"journal flush {FLUSH_MS:g} ms), {ETCD_MEMBERS} etcd members on loopback (heartbeat 50 ms, "
            f"election 500 ms), {server_title(profile)}; clients given every agent; cluster_spread on a "
            f"cluster of its own with --cells {spread_cells}"
        ),
    )


def run(
    options: Options, scratch: Path, progress: Progress, common: Callable[[str], list[Metric]]
) -> tuple[SystemInfo, list[Figure]]:
    """The cluster row: its system and every requested workload's figures (``common``
    gives the metrics of a common workload, which this row skips)."""
    profile = options.profile
    info = system_info(profile)
    figures: list[Figure] = []
    for workload in options.workloads:
        if workload not in WORKLOADS:
            note = f"the {SYSTEM} row runs only the cluster workloads ({', '.join(WORKLOADS)})"
            figures += [Figure(m.name, SYSTEM, SKIPPED, note=note) for m in common(workload)]
    chosen = [workload for workload in options.workloads if workload in WORKLOADS]
    if not chosen:
        return info, figures
    try:
        s3server.require(profile.s3_server)
        servers.find_or_install("etcd", ETCD_APT_PACKAGE, options.allow_install, progress)
    except Skipped as exc:
        info.status, info.note = SKIPPED, str(exc)
        progress(f"{SYSTEM}: skipped: {exc}")
        return info, figures + [
            Figure(m.name, SYSTEM, SKIPPED, note=str(exc)) for w in chosen for m in metrics_of(w)
        ]
    # One cluster for the workloads of one cell, another with several cells for cluster_spread.
    groups = [
        (1, [w for w in chosen if w not in CELLS_WORKLOADS]),
        (spread_cells, [w for w in chosen if w in CELLS_WORKLOADS]),
    ]
    directories: list[Path] = []
    for cells, workloads in groups:
        if not workloads:
            continue
        directory = scratch / (SYSTEM if cells == 1 else f"{SYSTEM}-cells")
        directory.mkdir()
        directories.append(directory)
        with_cells = f" with --cells {cells}" if cells > 1 else ""
        progress(
            f"{SYSTEM}: starting {ETCD_MEMBERS} etcd members, {server_title(profile)} and "
            f"{AGENTS} agents{with_cells}"
        )
        try:
            with BenchCluster(directory, profile, progress, cells=cells) as cluster:
                info.versions = info.versions or cluster.versions()
                for workload in workloads:
                    figures += _run_workload(workload, cluster, profile, progress)
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot start is reported, not fatal
            info.status, info.note = ERROR, f"{type(exc).__name__}: {exc}"
            progress(f"{SYSTEM}: FAILED {info.note}")
            done = {figure.metric for figure in figures}
            figures += [
                Figure(m.name, SYSTEM, ERROR, note=info.note)
                for w in workloads
                for m in metrics_of(w)
                if m.name not in done
            ]
        progress(f"{SYSTEM}{with_cells}: stopped")
    if info.status == ERROR or any(figure.status == ERROR for figure in figures):
        target = options.out / LOGS_DIRECTORY
        kept = [
            log
            for directory in directories
            for log in keep_logs(directory, target if directory.name == SYSTEM else target / "cells")
        ]
        progress(f"{SYSTEM}: something failed: {len(kept)} server logs kept in {target}")
    return info, figures


def _run_workload(workload: str, cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    table: dict[str, Callable[[BenchCluster, Profile, Progress], list[Figure]]] = {
        "cluster_etcd": etcd_load,
        "cluster_produce": produce,
        "cluster_ingest": ingest,
        "cluster_failover": failover,
        "cluster_spread": spread,
        "cluster_reads": reads,
    }
    try:
        cluster.restore()
        return table[workload](cluster, profile, progress)
    except Exception as exc:  # noqa: BLE001 - one failed workload must not end the suite
        note = f"{type(exc).__name__}: {exc}"
        progress(f"{SYSTEM} {workload}: FAILED {note}")
        return [Figure(m.name, SYSTEM, ERROR, note=note) for m in metrics_of(workload)]


def _single_batches(count: int, profile: Profile, seed: int) -> list[pa.RecordBatch]:
    return datasets.keyed(count, profile.distinct_keys, profile.small_value_bytes, seed=seed).batches(1)


@contextlib.contextmanager
def _topic(cluster: BenchCluster, name: str) -> Iterator[str]:
    """A topic for the workload, deleted after it (a failed deletion is said, not raised:
    the figures are measured by then)."""
    with odradek.connect(cluster.url, timeout=call_timeout_seconds) as admin:
        admin.create_topic(name, exist_ok=True)
    try:
        yield name
    finally:
        try:
            with odradek.connect(cluster.url, timeout=call_timeout_seconds) as admin:
                admin.describe_topic(name)  # repeatable: finds the owner, so the deletion goes there
                admin.delete_topic(name)
        except OdradekError as exc:
            cluster.progress(f"{SYSTEM}: could not delete the topic {name}: {type(exc).__name__}: {exc}")


# -- cluster_failover ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cycle:
    agent: str
    #: When the fault was injected (``timing.now()``).
    faulted_at: float
    #: From the fault to the first successful append answered by another agent.
    serving_seconds: float
    #: From the fault to the agent, started again, being known to the owner.
    joined_seconds: float
    #: The new owner's takeover as it tells it (its attach reads the journal objects still
    #: in the store and replays those after the last checkpoint).
    takeover: Takeover
    #: How long the faulted owner had served (None for the first cycle).
    owned_seconds: float | None

    @property
    def served_at(self) -> float:
        """When another agent served again."""
        return self.faulted_at + self.serving_seconds


def failover(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    with _topic(cluster, "bench.cluster-failover") as topic:
        loop = AppendLoop(cluster.url, topic, _single_batches(1000, profile, seed=9))
        loop.start()
        try:
            kills = _cycles(cluster, loop, profile.cluster_kills, "kill -9", cluster.kill, progress)
            failed_in_kills = loop.errors.count
            handovers = _cycles(cluster, loop, profile.cluster_handovers, "SIGTERM", cluster.stop, progress)
        finally:
            loop.stop()
    ttl = profile.cluster_lease_ttl_seconds
    how = (
        "the time from the fault to the first successful append answered by another agent, on a client "
        "given every agent that appends single keyed records in a closed loop all along as an idempotent "
        "producer (the client retries an append caught by the failover, waiting up to "
        f"{FAILOVER_BACKOFF_MAX_SECONDS:g} s between tries); lease TTL {ttl:g} s; the agent was then "
        "started again and waited for until the owner knew it (joined as a standby)"
    )
    kill_note = f"{len(kills)} kills of the owner (kill -9): {how}; {describe_cycles(kills)}"
    handover_note = (
        f"{len(handovers)} SIGTERMs of the owner (a handover): {how}; {describe_cycles(handovers)}"
    )
    serving = [cycle.serving_seconds for cycle in kills]
    handed = [cycle.serving_seconds for cycle in handovers]
    figures = _percentiles("cluster_failover", serving, {"p50": 0.5, "p99": 0.99, "max": 1.0}, kill_note)
    figures += _percentiles("cluster_handover", handed, {"p50": 0.5, "p99": 0.99}, handover_note)
    errors = loop.errors
    figures.append(
        Figure(
            "cluster_failover_errors",
            SYSTEM,
            OK,
            float(errors.count),
            [float(errors.count)],
            note=(
                f"failed appends of the closed loop: {failed_in_kills} across {len(kills)} kills (kill -9), "
                f"{errors.count - failed_in_kills} across {len(handovers)} handovers (SIGTERM); "
                f"{errors.describe()}"
            ),
        )
    )
    return figures


def _cycles(
    cluster: BenchCluster,
    loop: AppendLoop,
    count: int,
    what: str,
    fault: Callable[[Agent], object],
    progress: Progress,
) -> list[Cycle]:
    cycles: list[Cycle] = []
    serving_since: float | None = None
    for number in range(1, count + 1):
        cluster.wait_whole()
        owner = cluster.owner()
        if loop.first_success(timing.now() + steady_seconds, recovery_seconds_max, only=owner.url) is None:
            raise RuntimeError(
                f"the append loop got no answer from the owner {owner.id}: {loop.errors.describe()}"
            )
        killed_at = timing.now()
        fault(owner)
        answered = loop.first_success(killed_at, recovery_seconds_max, exclude=owner.url)
        if answered is None:
            raise RuntimeError(
                f"no append succeeded within {recovery_seconds_max:g} s of {what} of the owner {owner.id}"
            )
        taken = takeover(cluster.owner())
        cluster.start(owner)
        cluster.wait_whole()
        owned = None if serving_since is None else killed_at - serving_since
        cycle = Cycle(owner.id, killed_at, answered - killed_at, timing.now() - killed_at, taken, owned)
        cycles.append(cycle)
        serving_since = answered
        progress(
            f"{SYSTEM} cluster_failover {what} {number}/{count} of {owner.id}: serving again after "
            f"{cycle.serving_seconds:.2f} s ({taken.agent}'s takeover {_seconds(taken.seconds)}, "
            f"{taken.replayed if taken.replayed is not None else '?'} of "
            f"{taken.listed if taken.listed is not None else '?'} journal objects replayed), "
            f"{owner.id} joined again after {cycle.joined_seconds:.1f} s"
        )
    return cycles


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s"


def describe_cycles(cycles: Sequence[Cycle]) -> str:
    """What the cycles' failovers were made of, medians and maxima."""
    if not cycles:
        return "none done"

    def spread(values: Sequence[float | int | None], unit: str) -> str:
        known = [float(value) for value in values if value is not None]
        if not known:
            return "unknown"
        return f"median {format_value(timing.median(known))}{unit} (max {format_value(max(known))}{unit})"

    return (
        "the new owner's takeover (from acquiring the owner key to serving: fences, the manifest, the "
        "journal objects still in the store read and those after the checkpoint replayed) took "
        f"{spread([c.takeover.seconds for c in cycles], ' s')}, "
        f"replaying {spread([c.takeover.replayed for c in cycles], '')} of the "
        f"{spread([c.takeover.listed for c in cycles], '')} journal objects it found; the faulted "
        f"owner had served for {spread([c.owned_seconds for c in cycles], ' s')}; it joined again "
        f"{spread([c.joined_seconds for c in cycles], ' s')} after the fault"
    )


def _percentiles(
    prefix: str, values: Sequence[float], fractions: dict[str, float], note: str
) -> list[Figure]:
    """One figure per fraction over ``values`` (its runs: every value, in order)."""
    if not values:
        return [Figure(f"{prefix}_{name}", SYSTEM, SKIPPED, note="none asked for") for name in fractions]
    return [
        Figure(f"{prefix}_{name}", SYSTEM, OK, timing.percentile(values, fraction), list(values), note=note)
        for name, fraction in fractions.items()
    ]


# -- cluster_produce ----------------------------------------------------------------------


def produce(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    rate, seconds, runs = (
        profile.cluster_produce_rate_per_second,
        profile.cluster_produce_seconds,
        profile.runs,
    )
    batches = _single_batches(max(1, min(int(rate * seconds), 10_000)), profile, seed=7)
    warm_seconds = max(seconds * profile.warmup_fraction, 1.0)
    p50: list[float] = []
    p99: list[float] = []
    achieved: list[float] = []
    windows: list[tuple[Cycle, np.ndarray]] = []
    failed: str | None = None  # why the kills did not all happen (the steady figures stand)
    used: list[dict[str, float]] = []
    roles: dict[str, str] = {}
    with _topic(cluster, "bench.cluster-produce") as topic:
        loop = OpenLoop(cluster.url, topic, batches, rate)
        loop.start()
        try:
            time.sleep(warm_seconds)
            roles = {agent.id: "standby" for agent in cluster.running()} | {cluster.owner().id: "owner"}
            for run in range(1, runs + 1):
                before = cluster.cpu()
                begin = timing.now()
                time.sleep(seconds)
                end = timing.now()
                used.append(cpu_used(before, cluster.cpu(), end - begin))
                loop.wait_answered(end)
                latencies = loop.latencies(begin, end) * 1000.0
                if not len(latencies):
                    raise RuntimeError(
                        f"no append succeeded in a {seconds:g} s run: {loop.errors.describe()}"
                    )
                p50.append(timing.percentile(latencies.tolist(), 0.50))
                p99.append(timing.percentile(latencies.tolist(), 0.99))
                achieved.append(len(latencies) / (end - begin))
                progress(
                    f"{SYSTEM} cluster_produce run {run}/{runs}: p50 {format_value(p50[-1])} ms, "
                    f"p99 {format_value(p99[-1])} ms"
                )
            try:
                for number in range(1, profile.cluster_produce_kills + 1):
                    previous = windows[-1][0] if windows else None
                    cycle, across = _produce_kill(cluster, loop, seconds, previous)
                    windows.append((cycle, across))
                    longest = format_value(float(across.max()) if len(across) else 0.0)
                    progress(
                        f"{SYSTEM} cluster_produce kill -9 {number}/{profile.cluster_produce_kills} of "
                        f"{cycle.agent}: serving again after {cycle.serving_seconds:.2f} s (takeover "
                        f"{_seconds(cycle.takeover.seconds)}, {cycle.takeover.listed} journal objects "
                        f"found); {len(across)} appends in flight across it, "
                        f"max {longest} ms"
                    )
            except Exception as exc:  # noqa: BLE001 - reported in the failover figures
                failed = f"{type(exc).__name__}: {exc}"
                progress(f"{SYSTEM} cluster_produce: the kills FAILED: {failed}")
        finally:
            loop.stop()
    steady_note = (
        f"single keyed appends scheduled at {format_value(rate)}/s, open loop from up to "
        f"{producer_threads_max} producer threads sharing a client given every agent, each an idempotent "
        f"producer; {runs} runs of {format_value(seconds)} s after {format_value(warm_seconds)} s of "
        f"warm-up, achieved {format_value(timing.median(achieved))}/s; {describe_cpu(used, roles)}"
    )
    figures = [
        Figure("cluster_produce_p50", SYSTEM, OK, timing.median(p50), p50, note=steady_note),
        Figure("cluster_produce_p99", SYSTEM, OK, timing.median(p99), p99, note=steady_note),
    ]
    pooled = np.concatenate([latencies for _, latencies in windows]) if windows else np.zeros(0)
    window_note = (
        f"the same appends going on across {len(windows)} kill -9 of the owner, each after "
        f"{format_value(seconds)} s more of them (serving again after "
        f"{', '.join(f'{cycle.serving_seconds:.2f}' for cycle, _ in windows)} s): the {len(pooled)} "
        "appends in flight at some moment between the kill and the first answer to an append sent after "
        f"it, all kills together (runs: each kill's own); {describe_cycles([c for c, _ in windows])}"
    )
    for name, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        metric = f"cluster_produce_failover_{name}"
        if failed is not None:
            figures.append(Figure(metric, SYSTEM, ERROR, note=f"after {len(windows)} kills: {failed}"))
            continue
        if not len(pooled):
            figures.append(Figure(metric, SYSTEM, SKIPPED, note="no kill asked for, or no append across one"))
            continue
        per_kill = [timing.percentile(lat.tolist(), fraction) for _, lat in windows if len(lat)]
        figures.append(
            Figure(
                metric, SYSTEM, OK, timing.percentile(pooled.tolist(), fraction), per_kill, note=window_note
            )
        )
    errors = loop.errors
    figures.append(
        Figure(
            "cluster_produce_errors",
            SYSTEM,
            OK,
            float(errors.count),
            [float(errors.count)],
            note=f"{loop.count:,} appends scheduled: {errors.describe()}",
        )
    )
    return figures


def _produce_kill(
    cluster: BenchCluster, loop: OpenLoop, steady: float, previous: Cycle | None
) -> tuple[Cycle, np.ndarray]:
    """Kill the owner under the open loop once it has served ``steady`` seconds more: the
    cycle (serving again: when an append sent after the kill succeeded) and the latencies
    in ms of the appends in flight across it; the agent rejoins."""
    cluster.wait_whole()
    time.sleep(steady)
    owner = cluster.owner()
    killed_at = timing.now()
    cluster.kill(owner)
    deadline = time.monotonic() + recovery_seconds_max
    while (recovered := loop.recovered(killed_at)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no append succeeded within {recovery_seconds_max:g} s of killing {owner.id}")
        time.sleep(0.02)
    taken = takeover(cluster.owner())
    loop.wait_answered(recovered)
    latencies = loop.across(killed_at, recovered) * 1000.0
    cluster.start(owner)
    cluster.wait_whole()
    owned = None if previous is None else killed_at - previous.served_at
    cycle = Cycle(owner.id, killed_at, recovered - killed_at, timing.now() - killed_at, taken, owned)
    return cycle, latencies


# -- cluster_ingest -----------------------------------------------------------------------


def ingest(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    data = datasets.keyed(profile.ingest_records, profile.distinct_keys, profile.small_value_bytes, seed=8)
    warm_records = max(ingest_batch_records * ingest_threads, int(len(data) * profile.warmup_fraction))
    shares = _shares(data.batches(ingest_batch_records))
    warm = _shares(data.head(min(warm_records, len(data))).batches(ingest_batch_records))
    figures: list[Figure] = []
    for count in ingest_agents:
        cluster.keep(count)
        figures.append(_ingest_with(cluster, count, shares, warm, profile, progress))
    cluster.restore()
    return sorted(figures, key=lambda figure: figure.metric)


def _shares(batches: list[pa.RecordBatch], threads: int = ingest_threads) -> list[list[pa.RecordBatch]]:
    return [batches[thread::threads] for thread in range(threads)]


def _ingest_with(
    cluster: BenchCluster,
    count: int,
    shares: list[list[pa.RecordBatch]],
    warm: list[list[pa.RecordBatch]],
    profile: Profile,
    progress: Progress,
) -> Figure:
    running = cluster.running()
    owner = cluster.owner()
    url = ",".join(agent.url for agent in running)
    records = sum(batch.num_rows for share in shares for batch in share)
    topics = [f"bench.cluster-ingest-{count}-{thread}" for thread in range(ingest_threads)]
    clients = [odradek.connect(url, timeout=call_timeout_seconds) for _ in topics]
    rates: list[float] = []
    used: list[dict[str, float]] = []
    try:
        for client, topic in zip(clients, topics, strict=True):
            client.create_topic(topic, exist_ok=True)
        warm_rate = sum(b.num_rows for s in warm for b in s) / _ingest_once(clients, topics, warm)
        for run in range(1, profile.runs + 1):
            before = cluster.cpu()
            seconds = _ingest_once(clients, topics, shares)
            used.append(cpu_used(before, cluster.cpu(), seconds))
            rates.append(records / seconds)
            progress(
                f"{SYSTEM} cluster_ingest {count} agent(s) run {run}/{profile.runs}: "
                f"{format_value(rates[-1])} records/s"
            )
    finally:
        with contextlib.suppress(Exception):
            for topic in topics:
                clients[0].delete_topic(topic)
        for client in clients:
            client.close()
    roles = {agent.id: "owner" if agent is owner else "standby" for agent in running}
    note = (
        f"{records:,} keyed records of {profile.small_value_bytes} B in batches of {ingest_batch_records:,} "
        f"through append_many ({ingest_window} in flight per stream), {ingest_threads} client threads "
        f"(a topic and a client each) given the {count} running agent(s); one owner serves everything, "
        f"so agents beyond it add availability, not throughput; {describe_cpu(used, roles)}"
    )
    return Figure(
        f"cluster_ingest_{count}", SYSTEM, OK, timing.median(rates), rates, warmup=warm_rate, note=note
    )


def _ingest_once(
    clients: Sequence[odradek.RemoteClient], topics: Sequence[str], shares: Sequence[Sequence[pa.RecordBatch]]
) -> float:
    """Every thread appends its share at once; seconds until all are acknowledged."""
    barrier = threading.Barrier(len(clients) + 1)
    counts = [0] * len(clients)
    failures: list[BaseException] = []

    def work(index: int) -> None:
        barrier.wait()
        try:
            results = clients[index].append_many(topics[index], shares[index], window=ingest_window)
            counts[index] = sum(result.count for result in results)
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(i,), name=f"bench-ingest-{i}") for i in range(len(clients))
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = timing.now()
    for thread in threads:
        thread.join()
    elapsed = timing.now() - started
    if failures:
        raise failures[0]
    check_count("ingest", sum(counts), sum(batch.num_rows for share in shares for batch in share))
    return elapsed


# -- cluster_reads ------------------------------------------------------------------------

reads_segments = 16  # the topic rolls about this many segments: most of it sealed, in the store
reads_fetch_records = 10_000  # records per fetch
reads_ready_seconds = 60.0  # for the owner's checkpoint to reach the store
reads_pattern = "bench.cluster-reads.*"  # the reads by pattern: the one topic of the workload


def reads(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    """A topic's whole history fetched from offset 0, in turn through its owner and
    through another agent, which answers the sealed segments from the store and leaves
    the owner's tail to the owner (decision 0042): records/s and every process's CPU."""
    owner = cluster.owner()
    other = next(agent for agent in cluster.running() if agent is not owner)
    data = datasets.keyed(profile.ingest_records, profile.distinct_keys, profile.small_value_bytes, seed=9)
    topic = "bench.cluster-reads.history"
    segment_kib = max(64, profile.ingest_records * (profile.small_value_bytes + 48) // reads_segments // 1024)
    with odradek.connect(cluster.url, timeout=call_timeout_seconds) as admin:
        admin.create_topic(topic, exist_ok=True, segment_bytes=f"{segment_kib}KiB")
        admin.append_many(topic, data.batches(ingest_batch_records), window=ingest_window)
        end = admin.describe_topic(topic).next_offset
    try:
        _wait_for_the_store(other, topic, end // 2)
        figures = []
        for metric, agent, read in (
            ("cluster_reads_owner", owner, _read_all),
            ("cluster_reads_store", other, _read_all),
            ("cluster_reads_pattern_owner", owner, _read_pattern),
            ("cluster_reads_pattern_store", other, _read_pattern),
        ):
            rates: list[float] = []
            used: list[dict[str, float]] = []
            from_store: list[float] = []
            how = "by pattern " if read is _read_pattern else ""
            for run in range(1, profile.runs + 1):
                answered = other.answered_from_store() or 0
                before = cluster.cpu()
                seconds = read(agent.url, topic, end)
                used.append(cpu_used(before, cluster.cpu(), seconds))
                from_store.append(((other.answered_from_store() or 0) - answered) / end)
                rates.append(end / seconds)
                progress(
                    f"{SYSTEM} cluster_reads {how}through the {'owner' if agent is owner else 'other agent'} "
                    f"run {run}/{profile.runs}: {format_value(rates[-1])} records/s"
                )
            roles = {
                a.id: "owner" if a is owner else "reading" if a is agent else "idle"
                for a in cluster.running()
            }
            where = (
                "given the owner"
                if agent is owner
                else "given another agent only, which answers the sealed segments from the store and "
                "leaves the owner's tail to the owner ("
                + (
                    "from its cache of the store, which the fetches before filled)"
                    if read is _read_pattern
                    else "its first run read the store, the others its cache of it)"
                )
            )
            what = (
                f"read by the pattern {reads_pattern} from earliest (one stream, up to "
                f"{reads_fetch_records:,} records a batch)"
                if read is _read_pattern
                else f"fetched from offset 0 to the end {reads_fetch_records:,} at a time"
            )
            note = (
                f"{end:,} keyed records of {profile.small_value_bytes} B in segments of {segment_kib} KiB, "
                f"{what} by one client {where}; "
                f"answered from the store: {format_value(100 * timing.median(from_store))} %; first run "
                f"{format_value(rates[0])} records/s; {describe_cpu(used, roles)}"
            )
            figures.append(Figure(metric, SYSTEM, OK, timing.median(rates), rates, note=note))
        return figures
    finally:
        with (
            contextlib.suppress(Exception),
            odradek.connect(cluster.url, timeout=call_timeout_seconds) as admin,
        ):
            admin.delete_topic(topic)


def _wait_for_the_store(agent: Agent, topic: str, offset: int) -> None:
    """Until ``agent`` answers the topic's records at ``offset`` from the store (the
    owner's checkpoint named the sealed segments up to there, about a second after
    they rolled)."""
    deadline = time.monotonic() + reads_ready_seconds
    while True:
        before = agent.answered_from_store() or 0
        with odradek.connect(agent.url, timeout=call_timeout_seconds) as client:
            client.fetch(topic, offset, max_records=10)
        if (agent.answered_from_store() or 0) > before:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"agent {agent.id} did not answer from the store within {reads_ready_seconds:g} s"
            )
        time.sleep(0.5)


def _read_all(url: str, topic: str, end: int) -> float:
    """Seconds to fetch ``topic`` from 0 to ``end`` through the agent at ``url``."""
    with odradek.connect(url, timeout=call_timeout_seconds) as client:
        started = timing.now()
        offset = 0
        while offset < end:
            batches = client.fetch(topic, offset, max_records=reads_fetch_records)
            got = sum(batch.num_rows for batch in batches)
            if not got:
                raise RuntimeError(f"a fetch of {topic} at offset {offset} of {end} returned nothing")
            offset += got
        elapsed = timing.now() - started
    check_count("reads", offset, end)
    return elapsed


def _read_pattern(url: str, topic: str, end: int) -> float:
    """Seconds to read ``reads_pattern`` (``topic`` only) from earliest to ``end``
    through the agent at ``url``: one stream, the store's part then the owner's at
    another agent (decision 0042)."""
    with odradek.connect(url, timeout=call_timeout_seconds) as client:
        started = timing.now()
        offset = 0
        for batch in client.read(reads_pattern, start="earliest", wait=0, max_records=reads_fetch_records):
            if batch.num_rows and batch.column("topic")[0].as_py() != topic:
                raise RuntimeError(f"a read of {reads_pattern} returned records of another topic")
            offset += batch.num_rows
            if offset >= end:
                break
        elapsed = timing.now() - started
    check_count("reads by pattern", offset, end)
    return elapsed


# -- cluster_spread -----------------------------------------------------------------------


@dataclasses.dataclass
class _Spread:
    """One agent count's runs of cluster_spread."""

    rates: list[float] = dataclasses.field(default_factory=list)
    warm_rates: list[float] = dataclasses.field(default_factory=list)
    used: list[dict[str, float]] = dataclasses.field(default_factory=list)
    roles: dict[str, str] = dataclasses.field(default_factory=dict)
    shares: list[str] = dataclasses.field(default_factory=list)  # how the cells were spread, per run
    moved: int = 0  # runs during which a cell changed agents


def spread(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    if cluster.cells != spread_cells:
        raise RuntimeError(f"cluster_spread needs agents with --cells {spread_cells}, not {cluster.cells}")
    streams = spread_cells * spread_topics_per_cell
    total = max(profile.ingest_records, ingest_batch_records * streams)  # a batch per topic at least
    data = datasets.keyed(total, profile.distinct_keys, profile.small_value_bytes, seed=11)
    warm_records = max(ingest_batch_records * streams, int(len(data) * profile.warmup_fraction))
    shares = _shares(data.batches(ingest_batch_records), streams)
    warm = _shares(data.head(min(warm_records, len(data))).batches(ingest_batch_records), streams)
    topics = [f"bench.cluster-spread-{index}" for index in range(streams)]
    phases = {count: _Spread() for count in spread_agents}
    placed = _place(cluster, topics)
    progress(f"{SYSTEM} cluster_spread: topics placed {_describe_placement(placed)}")
    try:
        for number in range(1, profile.runs + 1):
            for count in spread_agents:
                cluster.keep_first(count)
                phase = phases[count]
                _spread_once(cluster, topics, shares, warm, phase)
                progress(
                    f"{SYSTEM} cluster_spread round {number}/{profile.runs}, {count} agent(s) "
                    f"({phase.shares[-1]}): {format_value(phase.rates[-1])} records/s"
                )
            if number < profile.runs:
                cluster.restore()
    finally:
        _delete_topics(cluster, topics)
    records = sum(batch.num_rows for share in shares for batch in share)
    warmed = sum(batch.num_rows for share in warm for batch in share)
    figures = []
    for count, phase in sorted(phases.items()):
        moved = f"; a cell changed agents during {phase.moved} of the runs" if phase.moved else ""
        note = (
            f"{records:,} keyed records of {profile.small_value_bytes} B per run in batches of "
            f"{ingest_batch_records:,} through append_many ({ingest_window} in flight per stream) to "
            f"{streams} topics ({_describe_placement(placed)}), a client and a thread each, given the "
            f"{count} running agent(s) of a cluster with --cells {spread_cells}; the cells spread over "
            f"them as {_describe_shares(phase.shares)}{moved}; {len(phase.rates)} runs, each after "
            f"{warmed:,} records of warm-up, in rounds of 3, 2 and 1 agents (the others stopped with "
            f"SIGTERM, handing their cells over, then started again); {describe_cpu(phase.used, phase.roles)}"
        )
        figures.append(
            Figure(
                f"cluster_spread_{count}",
                SYSTEM,
                OK,
                timing.median(phase.rates),
                phase.rates,
                warmup=timing.median(phase.warm_rates),
                note=note,
            )
        )
    return figures


def _place(cluster: BenchCluster, topics: Sequence[str]) -> dict[str, str]:
    """Create ``topics`` one after another on a cluster whose agents serve a cell each;
    the cell each went to: the one served by the agent that answers for it."""
    served = cluster.served_by_all()
    if sorted(len(cells) for cells in served.values()) != [1] * spread_cells:
        raise RuntimeError(f"placing the topics needs one cell per agent, not {served}")
    cell_at = {agent.url: served[agent.id][0] for agent in cluster.running()}
    placed: dict[str, str] = {}
    with odradek.connect(cluster.url, timeout=call_timeout_seconds) as admin:
        for topic in topics:
            admin.create_topic(topic, exist_ok=True)
            admin.describe_topic(topic)  # answered by the agent serving the topic's cell
            placed[topic] = cell_at[admin.url]
    if set(placed.values()) != set(cell_at.values()):
        raise RuntimeError(f"a cell holds none of the topics: {_describe_placement(placed)}")
    return placed


def _describe_placement(placed: dict[str, str]) -> str:
    cells: dict[str, list[str]] = {}
    for topic, cell in placed.items():
        cells.setdefault(cell, []).append(topic.rsplit("-", 1)[-1])
    return "; ".join(
        f"{cell}: topic{'s' * (len(numbers) > 1)} {', '.join(numbers)}"
        for cell, numbers in sorted(cells.items())
    )


def _describe_shares(shares: Sequence[str]) -> str:
    counted = {share: shares.count(share) for share in shares}
    return "; ".join(f"{share} ({times} run{'s' * (times > 1)})" for share, times in counted.items())


def _spread_once(
    cluster: BenchCluster,
    topics: Sequence[str],
    shares: Sequence[Sequence[pa.RecordBatch]],
    warm: Sequence[Sequence[pa.RecordBatch]],
    phase: _Spread,
) -> None:
    """One run with the agents running now, after its warm-up; clients given them."""
    running = cluster.running()
    served = cluster.served_by_all()
    url = ",".join(agent.url for agent in running)
    clients = [odradek.connect(url, timeout=call_timeout_seconds) for _ in topics]
    try:
        warm_seconds = _ingest_once(clients, topics, warm)
        before = cluster.cpu()
        seconds = _ingest_once(clients, topics, shares)
        used = cpu_used(before, cluster.cpu(), seconds)
    finally:
        for client in clients:
            client.close()
    after = cluster.served()
    phase.moved += any(cells != served.get(name) for name, cells in after.items())
    phase.warm_rates.append(sum(b.num_rows for s in warm for b in s) / warm_seconds)
    phase.rates.append(sum(b.num_rows for s in shares for b in s) / seconds)
    phase.shares.append(", ".join(f"{name} {'+'.join(cells)}" for name, cells in sorted(served.items())))
    counts = [len(cells) for cells in served.values()]
    if len(set(counts)) == len(counts):  # each agent's share differs: named by it, run after run
        labels = {name: f"the agent serving {_cells(len(cells))}" for name, cells in served.items()}
        phase.used.append({labels.get(name, name): value for name, value in used.items()})
    else:
        phase.used.append(used)
        phase.roles.update({name: _cells(len(cells)) for name, cells in served.items()})


def _cells(count: int) -> str:
    return f"{count} cell{'s' * (count != 1)}"


def _delete_topics(cluster: BenchCluster, topics: Sequence[str]) -> None:
    """Delete the workload's topics (a failed deletion is said, not raised: the figures
    are measured by then)."""
    try:
        with odradek.connect(
            ",".join(agent.url for agent in cluster.running()), timeout=call_timeout_seconds
        ) as admin:
            for topic in topics:
                admin.delete_topic(topic)
    except OdradekError as exc:
        cluster.progress(f"{SYSTEM}: could not delete the cluster_spread topics: {type(exc).__name__}: {exc}")


def etcd_load(cluster: BenchCluster, profile: Profile, progress: Progress) -> list[Figure]:
    seconds = profile.cluster_etcd_seconds
    agents = len(cluster.running())
    time.sleep(busy_lead_seconds)  # the last agent's join settles
    idle = _etcd_window(cluster, seconds, agents)
    progress(f"{SYSTEM} cluster_etcd idle: {_describe_load(idle)}")
    rate = profile.cluster_produce_rate_per_second
    with _topic(cluster, "bench.cluster-etcd") as topic:
        loop = OpenLoop(cluster.url, topic, _single_batches(1000, profile, seed=10), rate)
        loop.start()
        try:
            time.sleep(busy_lead_seconds)
            busy = _etcd_window(cluster, seconds, agents)
        finally:
            loop.stop()
    appended = int(loop.ok[: loop.count].sum())
    progress(f"{SYSTEM} cluster_etcd appends running: {_describe_load(busy)}")
    how = (
        f"etcd's own counters (each member's /metrics) read before and after a {format_value(seconds)} s "
        f"window, summed over the {ETCD_MEMBERS} members, divided by {agents} agents and the seconds; "
        "requests: every gRPC message the members received (unary calls and stream messages); "
        "keepalives: LeaseKeepAlive stream messages; watch: Watch stream messages both ways; "
        "proposals: raft entries committed (the leader's count)"
    )
    idle_note = f"{how}; the agents idle: {_describe_load(idle)}"
    busy_note = (
        f"{how}; single appends at {format_value(rate)}/s running ({appended:,} acknowledged, "
        f"{loop.errors.describe()}): {_describe_load(busy)}"
    )
    figures = []
    for phase, load, note in (("idle", idle, idle_note), ("busy", busy, busy_note)):
        for kind, _, _ in _ETCD_KINDS:
            value = load.rates[kind]
            figures.append(Figure(f"cluster_etcd_{kind}_{phase}", SYSTEM, OK, value, [value], note=note))
    figures.append(
        Figure(
            "cluster_etcd_watch_streams", SYSTEM, OK, idle.watch_streams, [idle.watch_streams], note=idle_note
        )
    )
    return figures


def _etcd_window(cluster: BenchCluster, seconds: float, agents: int) -> EtcdLoad:
    before = cluster.etcd_counters()
    started = timing.now()
    time.sleep(seconds)
    after = cluster.etcd_counters()
    return etcd_load_between(before, after, timing.now() - started, agents)


def _describe_load(load: EtcdLoad) -> str:
    rates = ", ".join(f"{kind} {format_value(value)}" for kind, value in load.rates.items())
    others = ", ".join(f"{method} {format_value(value)}" for method, value in load.others.items())
    return (
        f"per agent per second {rates}; other requests: {others or 'none'}; "
        f"{format_value(load.watch_streams)} watch streams open per agent"
    )
