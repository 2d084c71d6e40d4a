"""The chaos harness: a real cluster under random faults, and the report of the run.

:class:`ChaosCluster` starts, on loopback ports under one work directory, a 3-member
etcd (``chaos/etcd.py``), moto's S3 server behind a fault proxy (``chaos/stores.py``) and
3 agents, ``odradek serve --store ... --etcd ...`` (``chaos/agents.py``); it is the
:class:`~odradek.chaos.faults.FaultTarget` the rotator acts on.

:func:`run` drives a run, cycle after cycle:

1. the workers append all along: through the native door (``chaos/workload.py``) and,
   with ``KafkaSettings.workers`` (1 by default), through the Kafka door with an
   idempotent Kafka producer bootstrapped with every agent's Kafka address
   (``chaos/kafka_workload.py``); a cycle begins with a steady spell of a second or few;
2. a fault is injected at random; the prober sends appends until one sent after the
   fault succeeds: the time from the fault to that answer is the cycle's *serving
   again* time (for a fault of the owner, its failover time);
3. the fault is healed: at once after its hold (a paused owner is resumed, an etcd
   member or the store comes back), or, for a killed or stopped owner, once the cluster
   serves again (the agent is started again, sometimes on an empty data directory);
4. the harness waits until the cluster is whole again: every agent up and known to
   the owner, exactly one owner that every agent names, every etcd member healthy.

A cycle that fails (no append succeeds within ``recovery_seconds_max`` of the fault, or
the cluster is not whole within ``settle_seconds_max``) is reported, then the cluster is
repaired (every fault undone, every agent that is down, silent or unknown to the owner
restarted) and the run goes on; if even that does not make it whole, the run ends.

With ``ChaosSettings.cells`` above 1 the agents spread the topics over that many cells
(``--cells``, decision 0032), each cell with a Kafka door of its own (decision 0033):
the Kafka workers' topic lands in the cell of the broker that created it. The
workload's topics come in a lane per cell (``workload_topics``), created so that every
cell holds some, which the harness verifies against the placements in etcd and the
agents' ``cluster_status`` before the workers start; an owner fault hits the agent
serving a cell drawn at random, and its *serving again* time is that of the probe
topic of that cell; an etcd or store fault's is the time until the probe topic of
every cell has taken an append. The cluster is whole when, besides the above, every
cell is served by exactly one agent that every agent names, and no agent serves two
cells more than another.

At the end the workers stop (a Kafka worker's producer is flushed within a bound, the
rest purged), the history is written (``history.jsonl``), every topic is read back
through the client and the history is checked against the logs (``chaos/checker.py``);
the report (``report.json``) says what was done and found, per door too. The Kafka
clients' own logs are in ``kafka-<worker>.log``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

import odradek
from odradek.chaos.agents import Agent, AgentSettings
from odradek.chaos.checker import check, door_lines
from odradek.chaos.etcd import EtcdServers, etcd_cluster
from odradek.chaos.faults import OWNER_FAULTS, Fault, FaultKind, FaultRotator, FaultSettings
from odradek.chaos.group_workload import (
    GroupLedger,
    GroupSettings,
    GroupWorker,
    check_group,
    drain,
    group_pattern,
    group_topics,
    wanted_records,
)
from odradek.chaos.history import History, Kind, Outcome
from odradek.chaos.kafka_workload import (
    KAFKA_TOPICS,
    KafkaSettings,
    KafkaWorker,
    TransactionalKafkaWorker,
    create_kafka_topic,
    txn_topics,
)
from odradek.chaos.processes import HarnessError, StackedHarness, wait_until
from odradek.chaos.store_reads import Fetched, StoreReader, StoreReadSettings, check_store_reads
from odradek.chaos.stores import SERVERS, S3Store, StoreFaults, s3_store
from odradek.chaos.workload import (
    Prober,
    Worker,
    WorkloadSettings,
    create_topics,
    probe_topics,
    read_back,
    workload_topics,
)
from odradek.cluster.keys import Layout, cell_names
from odradek.errors import InvalidRequest, OdradekError

# The whole cluster must be back (agents up, one owner, etcd healthy) within this after a
# fault is healed: an agent restarts in a few seconds, a failover takes TTL + recovery.
SETTLE_SECONDS_MAX = 120.0
# After a fault, some append must succeed within this, or the run ends (reported).
RECOVERY_SECONDS_MAX = 120.0
# Workers and probes stuck longer than this after the stop are reported. A Kafka
# transactional worker stopped with a commit in doubt retries it for up to TXN_SECONDS
# (30 s), then closes its producer, which aborts the transaction first and may wait
# for the coordinator until it is fenced (54 s seen in one run): 60 s was too short.
WORKERS_STOP_SECONDS_MAX = 120.0
CLIENT_TIMEOUT_SECONDS = 10.0  # a worker's calls other than appends (key_version, ...)


@dataclasses.dataclass(frozen=True)
class ChaosSettings:
    cycles: int = 100
    agents: int = 3
    etcd_members: int = 3
    seed: int = 0
    lease_ttl_seconds: float = 3.0
    flush_ms: float | None = None
    cluster: str = "chaos"
    workload: WorkloadSettings = dataclasses.field(default_factory=WorkloadSettings)
    kafka: KafkaSettings = dataclasses.field(default_factory=KafkaSettings)
    # Members of a consumer group reading the keyed topics (by pattern over cells).
    group: GroupSettings = dataclasses.field(default_factory=GroupSettings)
    # Readers fetching the keyed topics through agents drawn at random (decision 0042).
    store_reads: StoreReadSettings = dataclasses.field(default_factory=StoreReadSettings)
    # The workload topics' segment size (None: the default, 256 MiB): small segments
    # roll during the run, so that agents not serving a cell read its sealed ones from
    # the store (decision 0042).
    segment_bytes: str | None = None
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    schedule: tuple[FaultKind, ...] = ()  # the first faults, in order; then drawn from kinds
    steady_seconds: tuple[float, float] = (1.0, 3.0)
    recovery_seconds_max: float = RECOVERY_SECONDS_MAX
    settle_seconds_max: float = SETTLE_SECONDS_MAX
    # The cells the topics spread over (--cells); above 1 the workload gets a lane per
    # cell (WorkloadSettings.lanes is set to it).
    cells: int = 1
    # The S3 server behind the fault proxy (chaos/stores.py SERVERS).
    store_server: str = "moto"
    # How often a killed owner comes back on an empty data directory (a fresh cache).
    empty_restart_probability: float = FaultSettings.empty_restart_probability

    def __post_init__(self) -> None:
        cell_names(self.cells)  # 1..cluster_cells_max, else InvalidRequest
        if self.workload.lanes != self.cells:
            object.__setattr__(self, "workload", dataclasses.replace(self.workload, lanes=self.cells))
        if self.store_server not in SERVERS:
            raise InvalidRequest(f"unknown S3 server {self.store_server!r}: choose from {', '.join(SERVERS)}")
        if self.cycles < 0 or self.agents < 2 or self.etcd_members < 1:
            raise InvalidRequest(
                "a chaos run needs cycles >= 0, at least 2 agents (an owner and a standby) and 1 etcd member"
            )
        etcd_faults = {FaultKind.KILL_ETCD_LEADER, FaultKind.KILL_ETCD_MEMBER}
        if self.etcd_members < 3 and etcd_faults.intersection(self.kinds + self.schedule):
            raise InvalidRequest("killing an etcd member needs at least 3 members (a quorum must survive)")


class ChaosCluster(StackedHarness):
    """etcd, the store and the agents of one run (a context manager)."""

    def __init__(self, workdir: Path, settings: ChaosSettings) -> None:
        super().__init__()
        self.workdir = workdir
        self.settings = settings
        self.agents: dict[str, Agent] = {}
        self._etcd: EtcdServers | None = None
        self._store: S3Store | None = None

    # -- lifecycle ------------------------------------------------------------------

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._etcd = self._stack.enter_context(
            etcd_cluster(self.workdir / "etcd", self.settings.etcd_members)
        )
        store = s3_store(self.workdir / "s3", seed=self.settings.seed, server=self.settings.store_server)
        self._store = self._stack.enter_context(store)
        agent_settings = AgentSettings(
            store_url=self._store.url(f"run-{uuid.uuid4().hex[:12]}"),
            store_env=self._store.env,
            etcd_url=self._etcd.url,
            cluster=self.settings.cluster,
            lease_ttl_seconds=self.settings.lease_ttl_seconds,
            flush_ms=self.settings.flush_ms,
            cells=self.settings.cells,
        )
        for number in range(1, self.settings.agents + 1):
            agent_id = f"a{number}"
            self.agents[agent_id] = Agent(agent_id, self.workdir / agent_id, agent_settings)
        self._stack.callback(self._stop_agents)
        for agent in self.agents.values():
            agent.start(wait=False)
        for agent in self.agents.values():
            agent.wait_ready()
        self.wait_whole()

    def _stop_agents(self) -> None:
        for agent in self.agents.values():
            agent.close()
            agent.stop()

    @property
    def etcd(self) -> EtcdServers:
        if self._etcd is None:
            raise HarnessError("the cluster is not started")
        return self._etcd

    @property
    def store(self) -> S3Store:
        if self._store is None:
            raise HarnessError("the cluster is not started")
        return self._store

    def urls(self) -> list[str]:
        return [agent.url for agent in self.agents.values()]

    @property
    def url(self) -> str:
        """What ``odradek.connect`` takes for the whole cluster."""
        return ",".join(self.urls())

    @property
    def kafka_bootstrap(self) -> str:
        """What a Kafka client's ``bootstrap.servers`` takes: every agent's Kafka door."""
        return ",".join(agent.kafka_address for agent in self.agents.values())

    # -- state ----------------------------------------------------------------------

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        return {agent_id: agent.status() for agent_id, agent in self.agents.items()}

    @property
    def cells(self) -> tuple[str, ...]:
        """The cluster's cells in order: ``_cell`` (the home cell), ``_cell.1``, ..."""
        return cell_names(self.settings.cells)

    def owner(self, cell: str | None = None) -> str | None:
        """The agent that says it owns the cell (``cell``: the agent that says it serves
        that one; asked, not inferred from etcd)."""
        for agent_id, status in self.statuses().items():
            if status is None:
                continue
            if cell is None and status.get("role") == "owner":
                return agent_id
            if cell is not None and any(
                entry.get("cell") == cell and entry.get("serving") for entry in status.get("cells", [])
            ):
                return agent_id
        return None

    def whole(self) -> bool:
        """Every agent up and answering, exactly one owner, named by every agent, which
        knows every agent; every etcd member healthy. With several cells also: each cell
        served by exactly one agent that every agent names, and the cells spread evenly
        (no agent serving two more than another)."""
        statuses = self.statuses()
        if any(status is None for status in statuses.values()):
            return False
        owners = [
            agent_id for agent_id, status in statuses.items() if status and status.get("role") == "owner"
        ]
        if len(owners) != 1 or any(
            status and status.get("owner") != owners[0] for status in statuses.values()
        ):
            return False
        if self.settings.cells > 1 and not self._cells_whole(statuses):
            return False
        known = {_agent_id(entry) for entry in (statuses[owners[0]] or {}).get("agents", [])}
        return known >= set(self.agents) and self.etcd.healthy()

    def _cells_whole(self, statuses: Mapping[str, dict[str, Any] | None]) -> bool:
        serving: dict[str, list[str]] = {cell: [] for cell in self.cells}
        named: dict[str, set[Any]] = {cell: set() for cell in self.cells}
        for agent_id, status in statuses.items():
            entries = (status or {}).get("cells", [])
            if sorted(str(entry.get("cell")) for entry in entries) != sorted(self.cells):
                return False
            for entry in entries:
                named[entry["cell"]].add(entry.get("owner"))
                if entry.get("serving"):
                    serving[entry["cell"]].append(agent_id)
        if any(len(agents) != 1 or named[cell] != set(agents) for cell, agents in serving.items()):
            return False
        shares = Counter(agents[0] for agents in serving.values())
        counts = [shares.get(agent_id, 0) for agent_id in self.agents]
        return max(counts) - min(counts) <= 1

    def placements(self) -> dict[str, str]:
        """Which cell holds each topic, as the placement catalog in etcd says."""
        layout = Layout(self.settings.cluster)
        found = self.etcd.get_prefix(layout.placements_prefix)
        placed = {}
        for key, value in found.items():
            try:
                placed[layout.topic_of_placement(key)] = str(json.loads(value)["cell"])
            except (OdradekError, ValueError, KeyError, TypeError) as exc:
                raise HarnessError(f"a placement the harness cannot read: {key!r} = {value!r}") from exc
        return placed

    def one_topic_per_cell(self, names: Sequence[str]) -> dict[str, str]:
        """Create ``names`` (as many as the cells) and see that each is in a cell of its
        own: a new topic goes to the least loaded cell as the agent asked saw it, so two
        created at once may share one; a topic is then moved to the cell that has none
        (as `odradek topic move` does). Which cell holds each; HarnessError if not one
        per cell after all (the benches over cells start with it)."""
        cells = list(self.cells)
        with connect(self.url) as admin:
            create_topics(admin, names)
            placed = {name: self.placements()[name] for name in names}
            for missing in [cell for cell in cells if cell not in placed.values()]:
                shared = next(name for name in names if list(placed.values()).count(placed[name]) > 1)
                admin._move_topic(shared, cell=missing)
                placed[shared] = missing
        if sorted(self.placements()[name] for name in names) != sorted(cells):
            raise HarnessError(f"the topics are not one per cell: {self.placements()}")
        return placed

    def probes_by_cell(self, topics: Sequence[str], probes: Sequence[str]) -> dict[str, str]:
        """For each cell, a probe topic it holds (the first placed there), after checking
        that every topic is placed, every cell holds one of ``probes`` and one of the other
        ``topics``, and every cell has a serving owner (``cluster_status``); HarnessError,
        with the placements, otherwise."""
        if self.settings.cells == 1:
            return {self.cells[0]: probes[0]}
        placed = self.placements()
        missing = [topic for topic in topics if topic not in placed]
        by_cell: dict[str, str] = {}
        for probe in probes:
            if probe in placed:
                by_cell.setdefault(placed[probe], probe)
        worked = {placed[topic] for topic in topics if topic in placed and topic not in probes}
        unserved = [cell for cell in self.cells if self.owner(cell) is None]
        problems = [
            *(f"topic {topic} is placed nowhere" for topic in missing),
            *(f"cell {cell} holds no probe topic" for cell in self.cells if cell not in by_cell),
            *(f"cell {cell} holds no workload topic" for cell in self.cells if cell not in worked),
            *(f"cell {cell} is served by no agent" for cell in unserved),
        ]
        if problems:
            placements = json.dumps({topic: placed.get(topic) for topic in topics})
            raise HarnessError(f"the workload does not cover every cell: {'; '.join(problems)}; {placements}")
        return by_cell

    def wait_whole(self, seconds: float | None = None) -> None:
        wait_until(
            self.whole,
            self.settings.settle_seconds_max if seconds is None else seconds,
            "the cluster is whole again (every agent up, one owner, etcd healthy)",
            self._state,
        )

    def repair(self) -> list[str]:
        """After a cycle that failed: every fault undone (the store cleared, paused agents
        resumed, etcd members started), and every agent that is down, silent or unknown
        to the owner restarted (killed first). Returns what was restarted."""
        self.store.proxy.clear()
        restarted = []
        for member in self.etcd.members:
            if not member.alive():
                member.start()
                restarted.append(member.name)
        for agent in self.agents.values():
            if agent.paused:
                agent.resume()
        with contextlib.suppress(HarnessError):
            wait_until(self.etcd.healthy, self.settings.settle_seconds_max, "etcd healthy")
        statuses = self.statuses()
        owner = next((s for s in statuses.values() if s is not None and s.get("role") == "owner"), None)
        known = {_agent_id(entry) for entry in (owner or {}).get("agents", [])}
        for agent_id, agent in self.agents.items():
            if statuses[agent_id] is None or (owner is not None and agent_id not in known):
                agent.kill()
                agent.start()
                restarted.append(agent_id)
        return restarted

    def _state(self) -> str:
        lines = [f"{agent_id}: {json.dumps(status)}" for agent_id, status in self.statuses().items()]
        lines.append(f"etcd healthy: {self.etcd.healthy()}")
        return "\n".join(lines)

    # -- FaultTarget ----------------------------------------------------------------

    def kill_agent(self, agent: str) -> None:
        self.agents[agent].kill()

    def stop_agent(self, agent: str) -> None:
        self.agents[agent].stop()

    def start_agent(self, agent: str, *, empty: bool) -> None:
        self.agents[agent].start(empty=empty)

    def pause_agent(self, agent: str) -> None:
        self.agents[agent].pause()

    def resume_agent(self, agent: str) -> None:
        self.agents[agent].resume()

    def etcd_members(self) -> list[str]:
        return [member.name for member in self.etcd.members]

    def etcd_leader(self) -> str:
        return self.etcd.leader().name

    def kill_etcd(self, member: str) -> None:
        self._member(member).kill()

    def start_etcd(self, member: str) -> None:
        self._member(member).start()

    def set_store_faults(self, faults: StoreFaults) -> None:
        self.store.proxy.set_faults(faults)

    def _member(self, name: str) -> Any:
        for member in self.etcd.members:
            if member.name == name:
                return member
        raise HarnessError(f"no etcd member {name!r}")


def _agent_id(entry: Any) -> str:
    return str(entry.get("agent")) if isinstance(entry, dict) else str(entry)


# -- a run --------------------------------------------------------------------------------


@dataclasses.dataclass
class Cycle:
    number: int
    fault: Fault
    serving_after_seconds: float | None = None
    whole_after_seconds: float | None = None
    error: str | None = None
    repaired: list[str] | None = None  # what was restarted after the cycle failed

    @property
    def injected_at_utc(self) -> str:
        """When the fault was injected, on the wall clock (to find it in the servers' logs)."""
        wall = time.time() - (time.monotonic() - self.fault.injected_at)
        return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="milliseconds")

    def to_json(self) -> dict[str, Any]:
        return {
            "cycle": self.number,
            "injected_at": self.injected_at_utc,
            "fault": self.fault.kind.value,
            "target": self.fault.target,
            "details": self.fault.details,
            "serving_after_seconds": _round(self.serving_after_seconds),
            "whole_after_seconds": _round(self.whole_after_seconds),
            "error": self.error,
            "repaired": self.repaired,
        }


def connect(url: str) -> odradek.RemoteClient:
    return odradek.connect(url, timeout=CLIENT_TIMEOUT_SECONDS)


def run(settings: ChaosSettings, workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """One chaos run (see the module's docstring); its report, also written to
    ``workdir/report.json``. Raises HarnessError if the cluster cannot be started."""
    started = time.monotonic()
    history = History()
    cycles: list[Cycle] = []
    harness: dict[str, Any] = {}
    rng = random.Random(settings.seed)
    progress(
        f"starting {settings.etcd_members} etcd members, the S3 store and {settings.agents} agents "
        f"in {workdir}"
    )
    with ChaosCluster(workdir, settings) as cluster:
        progress(f"cluster whole after {time.monotonic() - started:.1f} s; owner {cluster.owner()}")
        topics = workload_topics(settings.cells)
        with connect(cluster.url) as admin:
            create_topics(admin, topics, segment_bytes=settings.segment_bytes)
        probes = cluster.probes_by_cell(topics, probe_topics(settings.cells))
        if settings.cells > 1:
            placed = cluster.placements()
            harness["placements"] = {topic: placed[topic] for topic in topics}
            progress(
                f"{len(topics)} topics over {settings.cells} cells; probes "
                + ", ".join(f"{cell} ({cluster.owner(cell)}): {topic}" for cell, topic in probes.items())
            )
        if settings.kafka.workers:
            try:
                create_kafka_topic(cluster.kafka_bootstrap, settings.kafka.partitions)
            except OdradekError as exc:
                raise HarnessError(f"the Kafka door could not be used: {exc}") from exc
            topics += KAFKA_TOPICS
        transactional_topics = txn_topics(settings.cells) if settings.kafka.transactional else ()
        if transactional_topics:
            # Created last, so that each lands in the least loaded cell: one per cell.
            with connect(cluster.url) as admin:
                create_topics(admin, transactional_topics)
            topics += transactional_topics
            if settings.cells > 1:
                placed = cluster.placements()
                harness["transaction_topics"] = {topic: placed.get(topic) for topic in transactional_topics}
                progress(
                    "transactions write "
                    + ", ".join(f"{topic} ({placed.get(topic)})" for topic in transactional_topics)
                )
        workers: list[Worker | KafkaWorker | TransactionalKafkaWorker] = [
            Worker(number, history, lambda: connect(cluster.url), settings.workload, settings.seed)
            for number in range(settings.workload.workers)
        ]
        kafka_workers = [
            KafkaWorker(
                number,
                history,
                cluster.kafka_bootstrap,
                settings.kafka,
                settings.seed,
                log_path=workdir / f"kafka-k{number}.log",
            )
            for number in range(settings.kafka.workers)
        ]
        workers += kafka_workers
        transactional_workers = [
            TransactionalKafkaWorker(
                number,
                history,
                cluster.kafka_bootstrap,
                settings.kafka,
                transactional_topics,
                settings.seed,
                log_path=workdir / f"kafka-t{number}.log",
            )
            for number in range(settings.kafka.transactional)
        ]
        workers += transactional_workers
        ledger = GroupLedger()
        agent_urls = cluster.urls()  # member n subscribes through agent n first
        group_workers = [
            GroupWorker(
                number,
                ledger,
                functools.partial(connect, ",".join(agent_urls[number:] + agent_urls[:number])),
                group_pattern(settings.cells),
                settings.seed,
            )
            for number in range(settings.group.members)
        ]
        fetched = Fetched(settings.store_reads.rows_max)
        store_readers = [
            StoreReader(
                number,
                fetched,
                cluster.urls,
                connect,
                group_topics(settings.cells),
                settings.seed,
                group_pattern(settings.cells),
            )
            for number in range(settings.store_reads.readers)
        ]
        prober = Prober(history, cluster.urls, connect)
        rotator = FaultRotator(
            cluster,
            seed=settings.seed,
            kinds=settings.kinds,
            schedule=settings.schedule,
            settings=FaultSettings(
                lease_ttl_seconds=settings.lease_ttl_seconds,
                empty_restart_probability=settings.empty_restart_probability,
            ),
            cells=cluster.cells,
        )
        for worker in [*workers, *group_workers, *store_readers]:
            worker.start()
        try:
            for number in range(1, settings.cycles + 1):
                time.sleep(rng.uniform(*settings.steady_seconds))
                cycle = _cycle(number, cluster, rotator, prober, settings, probes)
                cycles.append(cycle)
                progress(_progress_line(cycle, settings.cycles, history))
                if cycle.error is not None:
                    # Reported; the run goes on if the cluster can be made whole again.
                    repaired = cluster.repair()
                    cycle.repaired = repaired
                    progress(f"cycle {number}: repaired by restarting {repaired or 'nothing'}")
                    try:
                        cluster.wait_whole()
                    except HarnessError as exc:
                        progress(f"the cluster is not whole even after the repair; the run ends: {exc}")
                        break
        finally:
            for worker in [*workers, *store_readers]:
                worker.stop.set()
            stuck = _join(workers)
            harness["workers_stuck"] = stuck
            harness["worker_errors"] = [
                f"{w.name}: {type(w.error).__name__}: {w.error}" for w in workers if w.error
            ]
            harness["kafka_workers"] = {worker.name: worker.figures() for worker in kafka_workers}
            if transactional_workers:
                harness["kafka_transactional_workers"] = {
                    worker.name: worker.figures() for worker in transactional_workers
                }
            if store_readers:
                harness["store_readers_stuck"] = _join(store_readers)
                harness["worker_errors"] += [
                    f"{r.name}: {type(r.error).__name__}: {r.error}" for r in store_readers if r.error
                ]
            harness["probes_hanging"] = prober.join(WORKERS_STOP_SECONDS_MAX)
            harness["store_proxy"] = dict(cluster.store.proxy.counts)
        group_checked: tuple[dict[str, int], dict[str, list[Any]], dict[str, Any]] | None = None
        try:
            table = history.table()
            harness["acknowledged_after_seconds"] = _acknowledged_after(table)
            history.write(workdir / "history.jsonl")
            progress("reading every topic back")
            try:
                with connect(cluster.url) as reader:
                    logs, bounds = read_back(reader, topics)
            except OdradekError as exc:
                raise HarnessError(
                    f"the topics could not be read back ({exc}); "
                    f"the history is in {workdir / 'history.jsonl'}"
                ) from exc
            answered_from_store = _answered_from_store(cluster) if store_readers else {}
            if group_workers:
                wanted = wanted_records(logs, group_topics(settings.cells))
                progress(f"the group's {len(group_workers)} members reading up to {len(wanted)} records")
                drained = drain(group_workers, ledger, set(wanted), settings.group.drain_seconds)
                harness["group_workers_stuck"] = _join(group_workers)
                harness["worker_errors"] += [
                    f"{w.name}: {type(w.error).__name__}: {w.error}" for w in group_workers if w.error
                ]
                group_checked = check_group(ledger, wanted)
                harness["group"] = {
                    **group_checked[2],
                    "members": {worker.name: worker.figures() for worker in group_workers},
                    "drain_seconds": round(drained, 1),
                }
        finally:
            _stop(group_workers)
    checked = check(table, logs, bounds=bounds).to_json()
    if group_checked is not None:
        checked["anomalies"].update(group_checked[0])
        checked["examples"].update(group_checked[1])
    if store_readers:
        reads_checked = check_store_reads(fetched, logs)
        checked["anomalies"].update(reads_checked[0])
        checked["examples"].update(reads_checked[1])
        harness["store_reads"] = {
            **reads_checked[2],
            "readers": {reader.name: reader.figures() for reader in store_readers},
            "answered_from_store": answered_from_store,
        }
    report = _report(settings, cycles, checked, harness, time.monotonic() - started)
    (workdir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _cycle(
    number: int,
    cluster: ChaosCluster,
    rotator: FaultRotator,
    prober: Prober,
    settings: ChaosSettings,
    probes: Mapping[str, str],
) -> Cycle:
    try:
        fault = rotator.inject()
    except InvalidRequest:  # the owner moved between the last check and now: once more
        cluster.wait_whole()
        fault = rotator.inject()
    cycle = Cycle(number, fault)
    # Serving again: the faulted cell's probe topic takes an append; every cell's when
    # the fault hit them all (etcd, the store) or there is one cell.
    cell = str(fault.details.get("cell"))
    topics = [probes[cell]] if cell in probes else list(probes.values())
    try:
        if not fault.heal_after_recovery:
            # Probe while the fault holds (a paused owner fails over during its pause).
            cycle.serving_after_seconds = prober.served_after(
                fault.injected_at, fault.hold_seconds, topics=topics
            )
            time.sleep(max(fault.injected_at + fault.hold_seconds - time.monotonic(), 0.0))
            rotator.heal(fault)
        if cycle.serving_after_seconds is None:
            cycle.serving_after_seconds = prober.served_after(
                fault.injected_at, settings.recovery_seconds_max, topics=topics
            )
        if cycle.serving_after_seconds is None:
            cycle.error = f"no append succeeded within {settings.recovery_seconds_max} s of the fault"
            rotator.heal(fault)
            return cycle
        rotator.heal(fault)
        cluster.wait_whole()
        cycle.whole_after_seconds = time.monotonic() - fault.injected_at
    except (HarnessError, OdradekError) as exc:
        cycle.error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(HarnessError, OdradekError):
            rotator.heal(fault)
    return cycle


def _answered_from_store(cluster: ChaosCluster) -> dict[str, int]:
    """Records each agent answered from other cells' stores (decision 0042), as its
    ``cluster_status`` says now: since it last started (a killed agent's count is lost)."""
    answered = {name: agent.answered_from_store() for name, agent in cluster.agents.items()}
    return {name: count for name, count in answered.items() if count is not None}


def _stop(workers: Sequence[GroupWorker]) -> None:
    for worker in workers:
        worker.stop.set()


def _join(
    workers: Sequence[Worker | KafkaWorker | TransactionalKafkaWorker | GroupWorker | StoreReader],
) -> int:
    deadline = time.monotonic() + WORKERS_STOP_SECONDS_MAX
    for worker in workers:
        worker.thread.join(max(deadline - time.monotonic(), 0.0))
    return sum(worker.thread.is_alive() for worker in workers)


def _progress_line(cycle: Cycle, cycles: int, history: History) -> str:
    counts = history.counts()
    serving = "never" if cycle.serving_after_seconds is None else f"{cycle.serving_after_seconds:.2f} s"
    whole = "" if cycle.whole_after_seconds is None else f", whole after {cycle.whole_after_seconds:.1f} s"
    line = (
        f"{cycle.injected_at_utc[11:19]} cycle {cycle.number}/{cycles}: {cycle.fault.describe()}: "
        f"serving again after {serving}{whole}; "
        f"operations {sum(counts.values())} (ok {counts['ok']}, fail {counts['fail']}, "
        f"info {counts['info']}, pending {counts['pending']})"
    )
    return line + (f"; ERROR {cycle.error}" if cycle.error else "")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summary(values: Sequence[float] | npt.NDArray[np.float64]) -> dict[str, Any]:
    if len(values) == 0:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    array = np.asarray(values, dtype=np.float64)
    p50, p99 = np.percentile(array, [50, 99])
    return {
        "count": len(array),
        "p50": _round(float(p50)),
        "p99": _round(float(p99)),
        "max": _round(float(array.max())),
    }


def _acknowledged_after(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per door, the seconds from sending an append to its acknowledgement (a long
    tail is a client that took long to find the new owner after a failover)."""
    acknowledged = table.filter(
        pc.and_(
            pc.equal(table.column("kind"), Kind.APPEND.value),
            pc.equal(table.column("outcome"), Outcome.OK.value),
        )
    )
    summaries = {}
    for door in sorted(acknowledged.column("door").unique().to_pylist()):
        rows = acknowledged.filter(pc.equal(acknowledged.column("door"), door))
        seconds = pc.subtract(rows.column("completed"), rows.column("invoked")).to_numpy()
        summaries[door] = _summary(seconds)
    return summaries


def _report(
    settings: ChaosSettings,
    cycles: list[Cycle],
    checked: dict[str, Any],
    harness: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    by_kind: dict[str, list[float]] = {}
    for cycle in cycles:
        if cycle.serving_after_seconds is not None:
            by_kind.setdefault(cycle.fault.kind.value, []).append(cycle.serving_after_seconds)
    failovers = [
        cycle.serving_after_seconds
        for cycle in cycles
        if cycle.fault.kind in OWNER_FAULTS and cycle.serving_after_seconds is not None
    ]
    errors = [cycle.to_json() for cycle in cycles if cycle.error]
    anomalies = sum(checked["anomalies"].values())
    return {
        "runs": 1,
        "seed": settings.seed,
        "agents": settings.agents,
        "cells": settings.cells,
        "segment_bytes": settings.segment_bytes,
        "store": settings.store_server,
        "etcd_members": settings.etcd_members,
        "lease_ttl_seconds": settings.lease_ttl_seconds,
        "cycles_planned": settings.cycles,
        "cycles": len(cycles),
        "duration_seconds": round(seconds, 1),
        "faults": dict(Counter(cycle.fault.kind.value for cycle in cycles)),
        "failover_seconds": _summary(failovers),
        "serving_again_seconds": {kind: _summary(values) for kind, values in sorted(by_kind.items())},
        "operations": checked["operations"],
        "doors": checked.get("doors", {}),
        "topics": checked["topics"],
        "anomaly_count": anomalies,
        "anomalies": checked["anomalies"],
        "examples": checked["examples"],
        "cycle_errors": errors,
        "harness": harness,
        "valid": anomalies == 0
        and not errors
        and not harness.get("workers_stuck")
        and not harness.get("group_workers_stuck"),
        "cycles_detail": [cycle.to_json() for cycle in cycles],
    }


def report_text(report: dict[str, Any]) -> str:
    """The report, for a terminal."""
    lines = [
        f"chaos run: seed {report['seed']}, {report['agents']} agents, "
        + (f"{report['cells']} cells, " if report.get("cells", 1) > 1 else "")
        + f"{report['etcd_members']} etcd members, lease TTL {report['lease_ttl_seconds']:g} s, "
        + f"store {report.get('store', 'moto')}",
        f"runs {report['runs']}, cycles {report['cycles']}/{report['cycles_planned']} "
        f"in {report['duration_seconds']:.0f} s",
        "faults: " + ", ".join(f"{kind} {count}" for kind, count in sorted(report["faults"].items())),
    ]
    failover = report["failover_seconds"]
    if failover["count"]:
        lines.append(
            f"failover (owner faults, fault -> first successful append): n={failover['count']} "
            f"p50 {failover['p50']:.2f} s, p99 {failover['p99']:.2f} s, max {failover['max']:.2f} s"
        )
    for kind, summary in report["serving_again_seconds"].items():
        lines.append(f"  {kind}: n={summary['count']} p50 {summary['p50']:.2f} s, max {summary['max']:.2f} s")
    for kind, outcomes in sorted(report["operations"].items()):
        total = sum(outcomes.values())
        counts = ", ".join(f"{outcome} {outcomes.get(outcome, 0)}" for outcome in ("ok", "fail", "info"))
        lines.append(f"operations {kind}: {total} ({counts})")
    lines.extend(door_lines(report.get("doors", {})))
    for door, summary in sorted(report["harness"].get("acknowledged_after_seconds", {}).items()):
        if summary["count"]:
            lines.append(
                f"  {door} appends acknowledged after p50 {summary['p50']:.3f} s, "
                f"p99 {summary['p99']:.3f} s, max {summary['max']:.3f} s"
            )
    for name, figures in sorted(report["harness"].get("kafka_workers", {}).items()):
        lines.append(
            f"kafka worker {name}: {figures['producers']} producers, "
            f"{len(figures['fatal_errors'])} fatal errors, {figures['client_errors']} client errors, "
            f"{figures['acks_without_offset']} acks without an offset"
        )
    for name, figures in sorted(report["harness"].get("kafka_transactional_workers", {}).items()):
        lines.append(
            f"kafka transactional worker {name}: {figures['committed']} committed, "
            f"{figures['aborted']} aborted, {figures['unknown']} unknown; {figures['producers']} producers, "
            f"{figures['client_errors']} client errors"
        )
    group = report["harness"].get("group")
    if group is not None:
        members = group["members"]
        lines.append(
            f"consumer group: {len(members)} members, {group['records']} records, {group['delivered']} "
            f"delivered ({group['deliveries']} deliveries, {group['redeliveries']} again), "
            f"{group['acknowledged']} acknowledged, "
            f"{sum(m['subscriptions'] for m in members.values())} subscriptions, "
            f"last records read in {group['drain_seconds']:g} s"
        )
    reads = report["harness"].get("store_reads")
    if reads is not None:
        readers = reads["readers"].values()
        lines.append(
            f"store readers: {len(reads['readers'])}, {sum(r['fetches'] for r in readers)} fetches "
            f"and {sum(r.get('wildcard_reads', 0) for r in readers)} reads by pattern "
            f"through agents drawn at random, {reads['records_checked']} records checked "
            f"({sum(reads['answered_from_store'].values())} answered from the store by agents "
            "not serving the cell, as their status says at the end)"
        )
    if report["anomaly_count"]:
        lines.append(f"ANOMALIES: {report['anomaly_count']}")
        for kind, count in sorted(report["anomalies"].items()):
            lines.append(f"  {kind}: {count}")
            lines.extend(
                f"    {json.dumps(example, sort_keys=True)}" for example in report["examples"].get(kind, [])
            )
    else:
        lines.append("anomalies: 0")
    for error in report["cycle_errors"]:
        repaired = f" (then restarted: {', '.join(error['repaired'])})" if error.get("repaired") else ""
        lines.append(f"CYCLE ERROR: cycle {error['cycle']} {error['fault']}: {error['error']}{repaired}")
    harness = report["harness"]
    if harness.get("workers_stuck") or harness.get("worker_errors"):
        lines.append(
            f"HARNESS: {harness.get('workers_stuck')} workers stuck, errors {harness.get('worker_errors')}"
        )
    lines.append("result: " + ("PASS" if report["valid"] else "FAIL"))
    return "\n".join(lines)
