"""The cluster the cluster rows run on, and the appenders they measure it with.

* :class:`BenchCluster`: a 3-member etcd (Debian's ``etcd-server`` on loopback ports,
  ``odradek.chaos.etcd``), an S3 server (bench/s3server.py: moto's, or SeaweedFS's
  with ``--s3-server seaweedfs``) and three agents,
  ``odradek serve --store s3://... --etcd ... --store-flush-ms 20`` subprocesses
  (``odradek.chaos.agents``: fixed loopback ports, so that a restarted agent comes back
  where clients look for it; output in a log file). It finds the owner by asking every
  agent (``cluster_status``), waits until the cluster is *whole* (every running agent
  answers and names the one owner, who knows them all; with several cells, also every
  cell served by a running agent and each running agent serving its fair share), starts
  and stops agents, and reads every etcd member's Prometheus counters. Given ``cells``
  above 1, its agents spread the topics over that many cells (``serve --cells``).
* :class:`AppendLoop`: one thread, single appends in a closed loop as an idempotent
  producer; remembers when each success was answered and by which agent.
* :class:`OpenLoop`: single appends at a fixed rate from a pool of producer threads
  (each an idempotent producer), every append timed from its scheduled send.
* :func:`etcd_load_between`: what the agents asked of etcd over a window, from the
  members' counters before and after it.

Every wait has a deadline; a failed append is counted, never hidden.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families

import odradek
from odradek.bench import s3server, timing
from odradek.bench.options import CLUSTER_SYSTEMS, Profile
from odradek.bench.systems.base import package_version
from odradek.bench.units import format_value
from odradek.chaos.agents import Agent, AgentSettings
from odradek.chaos.etcd import EtcdServers, etcd_cluster
from odradek.chaos.processes import StackedHarness, wait_until

Progress = Callable[[str], None]

SYSTEM = CLUSTER_SYSTEMS[0]
AGENTS = 3
ETCD_MEMBERS = 3
CLUSTER_NAME = "bench"
FLUSH_MS = 20.0  # the journal's flush window (serve's default), given explicitly
# After a kill, some append must succeed within this, or the cycle fails: a failover is
# the lease TTL plus an attach, which reads the header of every journal object still in
# the store (11,000 of them took 130 s here, before agents checkpointed every 2 s): generous.
recovery_seconds_max = 300.0
# The cluster must be whole again (agents up, one owner who knows them all) within this
# after an agent was started: it imports pyarrow and joins etcd, slowly when loaded.
settle_seconds_max = 120.0
# After the window of a kill closes, appends still in it are answered within this.
answers_seconds_max = 60.0
# Producer threads of the open loop: an append waiting out a failover holds one (at 200/s
# and ~4 s, 800 appends); past this many they queue, still timed from their schedule.
producer_threads_max = 256
# Appends an open loop schedules at most (200/s for an hour is 720,000): its arrays.
samples_max = 1_000_000
# Closed-loop answers remembered (time, agent): a cycle looks only at the last seconds.
successes_max = 100_000
# Failed appends whose message is kept for the note; all are counted.
error_messages_max = 5
error_message_characters = 240  # of each (gRPC's debug context runs to kilobytes)
call_timeout_seconds = 30.0  # a client's calls other than appends
metrics_probe_seconds = 5.0  # one etcd member's /metrics
log_tail_characters = 3000  # of an agent's log, in the error when it exited on its own

KV, LEASE, WATCH = "etcdserverpb.KV", "etcdserverpb.Lease", "etcdserverpb.Watch"


# -- the cluster --------------------------------------------------------------------------


class BenchCluster(StackedHarness):
    """etcd, the S3 server and the agents of the row (a context manager: all stopped at exit)."""

    def __init__(self, directory: Path, profile: Profile, progress: Progress, cells: int = 1) -> None:
        super().__init__()
        self.directory = directory
        self.profile = profile
        self.progress = progress
        self.cells = cells
        self.agents: list[Agent] = []
        self._down: set[str] = set()  # agents stopped or killed on purpose
        self._store_pid: int | None = None
        self._etcd: EtcdServers | None = None

    def _start(self) -> None:
        self._etcd = self._stack.enter_context(etcd_cluster(self.directory / "etcd", ETCD_MEMBERS))
        store = s3server.start(self.profile.s3_server, self.directory)
        self._stack.callback(store.stop)
        self._store_pid = store.pid
        settings = AgentSettings(
            store_url=f"s3://{s3server.BUCKET}/cluster-{uuid.uuid4().hex[:8]}",
            store_env=store.env,
            etcd_url=self._etcd.url,
            cluster=CLUSTER_NAME,
            lease_ttl_seconds=self.profile.cluster_lease_ttl_seconds,
            flush_ms=FLUSH_MS,
            cells=self.cells,
        )
        self.agents = [Agent(f"a{n}", self.directory / f"a{n}", settings) for n in range(1, AGENTS + 1)]
        self._stack.callback(self._stop_agents)
        self.restore()
        self.progress(f"{SYSTEM}: cluster whole; owner {self.owner().id}")

    def _stop_agents(self) -> None:
        for agent in self.agents:
            agent.close()
            agent.stop()

    @property
    def etcd(self) -> EtcdServers:
        if self._etcd is None:
            raise RuntimeError("the cluster is not started")
        return self._etcd

    @property
    def url(self) -> str:
        """Every agent, running or not: what a user's client is given."""
        return ",".join(agent.url for agent in self.agents)

    def running(self) -> list[Agent]:
        return [agent for agent in self.agents if agent.alive()]

    def kill(self, agent: Agent) -> None:
        """kill -9 (a crash); the agent stays down until started."""
        self._down.add(agent.id)
        agent.kill()

    def stop(self, agent: Agent) -> None:
        """SIGTERM (an owner hands over) and wait for the exit; down until started."""
        self._down.add(agent.id)
        agent.stop()

    def start(self, agent: Agent) -> None:
        """Start the agent again (its data directory kept) and wait for its ready line."""
        agent.start()
        self._down.discard(agent.id)

    def check_alive(self) -> None:
        """Raise if an agent that should run exited on its own (with its log's tail)."""
        for agent in self.agents:
            if agent.id not in self._down and not agent.alive():
                popen = agent.process.popen
                code = None if popen is None else popen.returncode
                raise RuntimeError(
                    f"agent {agent.id} exited on its own (status {code}); its log ends:\n"
                    f"{agent.output()[-log_tail_characters:]}"
                )

    def whole(self) -> bool:
        """Every running agent answers and names the one owner, who knows them all
        (raises if an agent that should run exited)."""
        self.check_alive()
        statuses = {agent.id: agent.status() for agent in self.running()}
        if not statuses or any(status is None for status in statuses.values()):
            return False
        owners = [name for name, status in statuses.items() if status and status.get("role") == "owner"]
        if len(owners) != 1 or any(
            status and status.get("owner") != owners[0] for status in statuses.values()
        ):
            return False
        entries = (statuses[owners[0]] or {}).get("agents", [])
        known = {entry.get("agent") for entry in entries if isinstance(entry, dict)}
        if not known >= set(statuses):
            return False
        return self.cells == 1 or balanced(
            {name: served_cells(status or {}) for name, status in statuses.items()}, self.cells
        )

    def wait_whole(self) -> None:
        what = "the cluster is whole (agents up, one owner" + (
            ", every cell served, each agent its share)" if self.cells > 1 else ")"
        )
        wait_until(self.whole, settle_seconds_max, what, self._state)

    def served(self) -> dict[str, list[str]]:
        """The cells each running agent that answers says it serves (one that does not
        answer in time, on a loaded machine, is left out)."""
        statuses = {agent.id: agent.status() for agent in self.running()}
        return {name: served_cells(status) for name, status in statuses.items() if status is not None}

    def served_by_all(self) -> dict[str, list[str]]:
        """The cells each running agent serves, once every one of them has answered."""
        found: dict[str, list[str]] = {}

        def answered() -> bool:
            found.clear()
            found.update(self.served())
            return len(found) == len(self.running())

        wait_until(
            answered, settle_seconds_max, "every running agent says which cells it serves", self._state
        )
        return dict(found)

    def _state(self) -> str:
        return "\n".join(f"{agent.id}: {agent.status()}" for agent in self.agents)

    def owner(self) -> Agent:
        for agent in self.running():
            status = agent.status()
            if status is not None and status.get("role") == "owner":
                return agent
        raise RuntimeError(f"no agent owns the data:\n{self._state()}")

    def restore(self) -> None:
        """Every agent running (those that are not started again), the cluster whole."""
        stopped = [agent for agent in self.agents if not agent.alive()]
        for agent in stopped:
            agent.start(wait=False)
        for agent in stopped:
            agent.wait_ready()
        self._down.clear()
        self.wait_whole()

    def keep(self, count: int) -> None:
        """Stop standbys (SIGTERM) until ``count`` agents run; the owner stays."""
        owner = self.owner()
        for agent in [agent for agent in self.running() if agent is not owner][
            : max(0, len(self.running()) - count)
        ]:
            self.stop(agent)
        self.wait_whole()

    def keep_first(self, count: int) -> None:
        """Stop (SIGTERM: each hands its cells over) the running agents after the first
        ``count`` of them, in the order a1, a2, ...; the cluster whole again."""
        for agent in self.running()[count:]:
            self.stop(agent)
        self.wait_whole()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each running agent (by id), of the S3 server, of the etcd members
        together and of this process (the bench's clients): per window, the differences
        say what used the machine's cores."""
        used = {agent.id: cpu_seconds(agent.process.pid) for agent in self.running()}
        used[self.profile.s3_server] = cpu_seconds(self._store_pid)
        members = [member.process.pid for member in self.etcd.members if member.process is not None]
        used["etcd"] = sum(cpu_seconds(pid) for pid in members)
        used["bench"] = time.process_time()
        return used

    def etcd_counters(self) -> list[dict[str, float]]:
        return [scrape(endpoint) for endpoint in self.etcd.endpoints]

    def versions(self) -> dict[str, str]:
        server = self.profile.s3_server
        found = {"odradek": odradek.__version__, server: package_version(s3server.SERVERS[server].package)}
        try:
            answer = subprocess.run(
                ["etcd", "--version"], capture_output=True, text=True, timeout=10, check=False
            )
            found["etcd"] = answer.stdout.splitlines()[0].rsplit(" ", 1)[-1]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            found["etcd"] = "unknown"
        return found


@dataclasses.dataclass(frozen=True)
class Takeover:
    """An owner's last takeover, as it tells it: seconds from acquiring the owner key to
    serving (``cluster_status`` counters), and the journal objects its attach found in the
    store and replayed (its log's attach line; None if the line is not found)."""

    agent: str
    seconds: float | None
    replayed: int | None
    listed: int | None


def takeover(agent: Agent) -> Takeover:
    status = agent.status() or {}
    seconds = (status.get("counters") or {}).get("last_takeover_seconds")
    found = _REPLAYED.findall(agent.output())
    return Takeover(
        agent.id,
        float(seconds) if isinstance(seconds, int | float) else None,
        int(found[-1][0]) if found else None,
        int(found[-1][1]) if found else None,
    )


_REPLAYED = re.compile(r"replayed (\d+) of (\d+) journal objects")


def served_cells(status: dict[str, object]) -> list[str]:
    """The cells an agent's ``cluster_status`` says it serves now."""
    cells = status.get("cells")
    if not isinstance(cells, list):
        return []
    return sorted(
        str(cell["cell"]) for cell in cells if isinstance(cell, dict) and cell.get("serving") is True
    )


def fair_shares(cells: int, agents: int) -> list[int]:
    """How many cells each of ``agents`` serves once they are spread (most first): as
    even as whole cells allow, which is where the agents stop handing cells over."""
    return [cells // agents + (1 if index < cells % agents else 0) for index in range(agents)]


def balanced(served: dict[str, list[str]], cells: int) -> bool:
    """Every one of ``cells`` served by exactly one of the agents in ``served``, each of
    them serving its fair share."""
    every = sorted(cell for each in served.values() for cell in each)
    if not served or len(every) != cells or len(set(every)) != cells:
        return False
    counts = sorted((len(each) for each in served.values()), reverse=True)
    return counts == fair_shares(cells, len(served))


def keep_logs(source: Path, target: Path) -> list[Path]:
    """Copy every server's log of a cluster started in ``source`` (agents, etcd members,
    the S3 server) into ``target``: the scratch directory is deleted at the end of a run."""
    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for log in sorted(source.glob("*/*.log")) + sorted(source.glob("*.log")):
        copy = target / (log.name if log.parent == source else f"{log.parent.name}-{log.name}")
        shutil.copyfile(log, copy)
        kept.append(copy)
    return kept


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if there is none)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each process (``BenchCluster.cpu``) over a window."""
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}


def describe_cpu(used: Sequence[dict[str, float]], roles: dict[str, str]) -> str:
    """What used the cores over the runs, medians: agents (with their role), the S3 server, etcd
    and the bench's own process."""
    if not used:
        return "CPU not measured"
    names = [name for name in used[0] if all(name in run for run in used)]

    def label(name: str) -> str:
        return (
            f"{name} ({roles[name]})" if name in roles else {"bench": "the bench's clients"}.get(name, name)
        )

    parts = ", ".join(
        f"{label(name)} {format_value(timing.median([run[name] for run in used]))}" for name in names
    )
    total = format_value(timing.median([sum(run.values()) for run in used]))
    cores = len(os.sched_getaffinity(0))
    return f"CPU-seconds per second (median over runs; the machine has {cores} cores): {parts}; all {total}"


# -- appends ------------------------------------------------------------------------------


class Errors:
    """Failed appends: counted, the first few kept for the note."""

    def __init__(self) -> None:
        self.count = 0
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def add(self, exc: BaseException) -> None:
        with self._lock:
            self.count += 1
            if len(self.messages) < error_messages_max:
                self.messages.append(f"{type(exc).__name__}: {str(exc)[:error_message_characters]}")

    def describe(self) -> str:
        if not self.count:
            return "no append failed"
        return f"{self.count} appends failed, first: {'; '.join(self.messages)}"


class AppendLoop:
    """One thread appending single keyed records in a closed loop, as an idempotent
    producer (a new one after a failure), on a client given every agent; remembers when
    each success was answered and by which agent."""

    def __init__(self, url: str, topic: str, batches: Sequence[pa.RecordBatch]) -> None:
        self.topic = topic
        self.batches = batches
        self.errors = Errors()
        self._client = odradek.connect(url, timeout=call_timeout_seconds)
        self._successes: deque[tuple[float, str]] = deque(maxlen=successes_max)
        self._answered = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cluster-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(recovery_seconds_max)
        self._client.close()

    def _run(self) -> None:
        producer = f"bench-loop-{uuid.uuid4().hex[:8]}"
        generation, sequence = 0, 0
        for index in itertools.count():
            if self._stop.is_set():
                return
            batch = self.batches[index % len(self.batches)]
            try:
                self._client.append(self.topic, batch, producer=(f"{producer}-{generation}", sequence))
            except Exception as exc:  # noqa: BLE001 - counted: the figure says how many failed
                self.errors.add(exc)
                generation, sequence = generation + 1, 0  # its next sequence is unknown now
                self._stop.wait(0.05)
                continue
            answered, url = timing.now(), self._client.url
            sequence += 1
            with self._answered:
                self._successes.append((answered, url))
                self._answered.notify_all()

    def first_success(
        self, after: float, seconds: float, *, exclude: str | None = None, only: str | None = None
    ) -> float | None:
        """When the first append answered after ``after`` by an agent other than
        ``exclude`` (or by ``only``) was answered; None if none within ``seconds``."""
        deadline = time.monotonic() + seconds
        with self._answered:
            while True:
                for answered, url in self._successes:
                    if answered > after and url != exclude and (only is None or url == only):
                        return answered
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return None
                self._answered.wait(min(remaining, 0.5))


class OpenLoop:
    """Single keyed appends at a fixed rate, each handed to a producer thread at its
    scheduled time and timed from then to its answer (waiting for a free thread counts).
    Each thread is an idempotent producer: an append caught by a failover is retried by
    the client and written once."""

    def __init__(self, url: str, topic: str, batches: Sequence[pa.RecordBatch], rate: float) -> None:
        self.topic = topic
        self.batches = batches
        self.rate = rate
        self.errors = Errors()
        self.scheduled = np.full(samples_max, np.nan)
        self.answered = np.full(samples_max, np.nan)
        self.ok = np.zeros(samples_max, dtype=bool)
        self.count = 0
        self._client = odradek.connect(url, timeout=call_timeout_seconds)
        self._pool = concurrent.futures.ThreadPoolExecutor(producer_threads_max, "bench-cluster-producer")
        self._local = threading.local()
        self._producers = itertools.count()
        self._prefix = f"bench-open-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._schedule, name="bench-cluster-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; wait for the appends in flight (each within the client's failover bound)."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
        self._client.close()

    def _schedule(self) -> None:
        start = timing.now() + 0.01
        for index in range(samples_max):
            send_at = start + index / self.rate
            if self._stop.is_set():
                return
            timing.wait_until(send_at)
            self.scheduled[index] = send_at
            self.count = index + 1
            self._pool.submit(self._one, index)

    def _one(self, index: int) -> None:
        producer = getattr(self._local, "producer", None)
        if producer is None:
            producer = self._local.producer = [f"{self._prefix}-{next(self._producers)}", 0]
        try:
            self._client.append(
                self.topic, self.batches[index % len(self.batches)], producer=(producer[0], producer[1])
            )
        except Exception as exc:  # noqa: BLE001 - counted: the figure says how many failed
            self.errors.add(exc)
            self._local.producer = None  # its next sequence is unknown now
            self.answered[index] = timing.now()
            return
        self.answered[index] = timing.now()
        self.ok[index] = True
        producer[1] += 1

    def wait_answered(self, until: float) -> None:
        """Until every append scheduled up to ``until`` (a ``timing.now()``) is answered."""

        def answered() -> bool:
            count = self.count
            due = self.scheduled[:count] <= until
            return not np.isnan(self.answered[:count][due]).any()

        wait_until(answered, answers_seconds_max, "the appends of the window are answered")

    def latencies(self, begin: float, end: float) -> np.ndarray:
        """Seconds to the answer of the successful appends scheduled in [begin, end)."""
        count = self.count
        scheduled, answered = self.scheduled[:count], self.answered[:count]
        chosen = self.ok[:count] & (scheduled >= begin) & (scheduled < end)
        return np.asarray(answered[chosen] - scheduled[chosen])

    def recovered(self, killed_at: float) -> float | None:
        """When the first append scheduled after ``killed_at`` succeeded, if one has."""
        count = self.count
        chosen = self.ok[:count] & (self.scheduled[:count] >= killed_at)
        return float(self.answered[:count][chosen].min()) if chosen.any() else None

    def across(self, killed_at: float, recovered_at: float) -> np.ndarray:
        count = self.count
        return in_flight_across(
            self.scheduled[:count], self.answered[:count], self.ok[:count], killed_at, recovered_at
        )


def in_flight_across(
    scheduled: np.ndarray, answered: np.ndarray, ok: np.ndarray, killed_at: float, recovered_at: float
) -> np.ndarray:
    """Latencies (seconds) of the successful appends in flight at some moment of the
    failover, [killed_at, recovered_at]: scheduled by its end, answered after its start."""
    chosen = ok & (scheduled <= recovered_at) & (answered >= killed_at)
    return np.asarray(answered[chosen] - scheduled[chosen])


# -- etcd's counters ------------------------------------------------------------------------

_GRPC_COUNTERS = {
    "grpc_server_msg_received_total": "received",
    "grpc_server_msg_sent_total": "sent",
    "grpc_server_started_total": "started",
    "grpc_server_handled_total": "handled",
}
PROPOSALS = "etcd_server_proposals_committed_total"


def parse_counters(text: str) -> dict[str, float]:
    """The counters of one etcd member's /metrics this workload reads: ``"<kind>
    <service>/<method>"`` for the gRPC server's (handled: over every code), and the raft
    proposals committed."""
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            kind = _GRPC_COUNTERS.get(sample.name)
            if kind is not None:
                key = f"{kind} {sample.labels.get('grpc_service')}/{sample.labels.get('grpc_method')}"
                counters[key] = counters.get(key, 0.0) + sample.value
            elif sample.name == PROPOSALS:
                counters[PROPOSALS] = sample.value
    return counters


def scrape(endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=metrics_probe_seconds) as answer:
        return parse_counters(answer.read().decode())


@dataclasses.dataclass(frozen=True)
class EtcdLoad:
    """What the agents asked of etcd over a window, per agent per second."""

    seconds: float
    agents: int
    rates: dict[str, float]  # by kind: requests, keepalives, ranges, txns, watch, proposals
    others: dict[str, float]  # requests of other methods, by method
    watch_streams: float  # open at the window's end, per agent


def etcd_load_between(
    before: Sequence[dict[str, float]], after: Sequence[dict[str, float]], seconds: float, agents: int
) -> EtcdLoad:
    """Counters of every member before and after a window of ``seconds``: requests are
    summed over members (each reaches one member's gRPC server), proposals are the
    most any member committed (every member commits each one)."""
    keys = {key for counters in (*before, *after) for key in counters}

    def delta(key: str) -> float:
        return sum(a.get(key, 0.0) - b.get(key, 0.0) for b, a in zip(before, after, strict=True))

    per = 1.0 / (seconds * agents)
    received = {key.split(" ", 1)[1]: delta(key) for key in keys if key.startswith("received ")}
    named = {f"{LEASE}/LeaseKeepAlive": "keepalives", f"{KV}/Range": "ranges", f"{KV}/Txn": "txns"}
    rates = {kind: received.get(method, 0.0) * per for method, kind in named.items()}
    rates["requests"] = sum(received.values()) * per
    rates["watch"] = (delta(f"received {WATCH}/Watch") + delta(f"sent {WATCH}/Watch")) * per
    rates["proposals"] = (
        max(
            (a.get(PROPOSALS, 0.0) - b.get(PROPOSALS, 0.0) for b, a in zip(before, after, strict=True)),
            default=0.0,
        )
        * per
    )
    others = {
        method: count * per
        for method, count in sorted(received.items())
        if count > 0 and method not in named and method != f"{WATCH}/Watch"
    }
    streams = sum(a.get(f"started {WATCH}/Watch", 0.0) - a.get(f"handled {WATCH}/Watch", 0.0) for a in after)
    return EtcdLoad(seconds, agents, rates, others, streams / agents)
