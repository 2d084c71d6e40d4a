"""Workloads of derived state (issue 17): compaction, key snapshots, synchronous commit.

Run only when named (``--workloads compaction,snapshot_replay,sync_commit``), on
Odradek's rows; a peer's rows say they are skipped.

* ``compaction``: per run, a topic with 8 MiB segments is loaded with the keyed 100 B
  records of ``ingest_100b`` (not timed) as a ``delete`` topic, then single-record
  appends go to it at ``compaction_append_rate_per_second`` (200/s) for
  ``latency_seconds`` (the *idle* p50/p99). Then the topic becomes ``cleanup="compact"`` and one forced round
  runs in a thread, its I/O held to ``compaction_bytes_per_second`` as the server's
  compaction thread holds it, while the same appends go on until the round ends (the
  *busy* p50/p99, same run, same topic: the appends land in its active segment, the
  round rewrites its sealed ones). The figure is the round's records read per second.
  A second copy of the topic is then compacted with the I/O unthrottled (no appends):
  what one core does when nothing holds it back.
* ``snapshot_replay``: a topic holds two keys with ``snapshot_key_events`` events each
  (100,000 by default); one has a snapshot as of its latest version, the other as of
  ``snapshot_after`` (1,000) versions before it. Per run, ``snapshot_reads`` reads of
  each: ``read_key`` of the whole key (the full replay), ``read_key(from_snapshot=True)``
  of each; the figure is the run's p50, the note gives the p99.
* ``sync_commit``: a topic with a ``latest`` view on it in the same server; per run,
  ``sync_commit_appends`` single-record appends one after another, alternating a plain
  append and one with ``wait_for=["view:..."]``; p50 and p99 of each kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from odradek import limits
from odradek.bench import timing
from odradek.bench.datasets import Dataset
from odradek.bench.results import OK, SKIPPED, Figure, Metric
from odradek.bench.systems.odradek import OdradekEmbedded, topic_name
from odradek.bench.units import MIB, format_value
from odradek.client.embedded import EmbeddedClient
from odradek.engine.compaction import CompactionResult, Throttle

if TYPE_CHECKING:
    from odradek.bench.workloads import Session

METRICS = (
    Metric(
        "compaction_rate",
        "compaction",
        "Compaction, forced round, I/O held as the server holds it",
        "records/s",
        True,
    ),
    Metric(
        "compaction_rate_unthrottled",
        "compaction",
        "Compaction, forced round, I/O unthrottled",
        "records/s",
        True,
    ),
    Metric("compaction_append_p50_idle", "compaction", "Append p50, no compaction running", "ms", False),
    Metric("compaction_append_p99_idle", "compaction", "Append p99, no compaction running", "ms", False),
    Metric("compaction_append_p50_busy", "compaction", "Append p50, compaction running", "ms", False),
    Metric("compaction_append_p99_busy", "compaction", "Append p99, compaction running", "ms", False),
    Metric("snapshot_full_replay", "snapshot_replay", "read_key, full replay of the key", "ms", False),
    Metric("snapshot_read", "snapshot_replay", "read_key from a snapshot at the latest version", "ms", False),
    Metric(
        "snapshot_read_after",
        "snapshot_replay",
        "read_key from a snapshot, events after it",
        "ms",
        False,
    ),
    Metric(
        "sync_commit_plain_p50", "sync_commit", "Plain single append p50 (view on the topic)", "ms", False
    ),
    Metric(
        "sync_commit_plain_p99", "sync_commit", "Plain single append p99 (view on the topic)", "ms", False
    ),
    Metric("sync_commit_view_p50", "sync_commit", "Single append waiting for the view p50", "ms", False),
    Metric("sync_commit_view_p99", "sync_commit", "Single append waiting for the view p99", "ms", False),
)
WORKLOADS = ("compaction", "snapshot_replay", "sync_commit")
# The compaction topic is cut into about this many segments (at least 1 MiB each), so
# that a round has sealed segments to rewrite at every profile's size.
compaction_segments = 8
compaction_segment_bytes_min = MIB
# Appends during the busy phase stop at the round's end; a round that outlasts this
# many times the idle phase is reported with the appends that fit (a bound on the run).
busy_phase_factor_max = 20
snapshot_batch_records = 10_000
snapshot_keys = (b"acct-latest", b"acct-after")
view_reducer = "odradek.views.reducers:latest"


def workloads(session: Session) -> dict[str, Callable[[], list[Figure]]]:
    return {
        "compaction": lambda: compaction(session),
        "snapshot_replay": lambda: snapshot_replay(session),
        "sync_commit": lambda: sync_commit(session),
    }


def _skipped(session: Session, workload: str, note: str) -> list[Figure]:
    session.progress(f"{session.system.name} {workload}: skipped ({note})")
    return [
        Figure(metric.name, session.system.name, SKIPPED, note=note)
        for metric in METRICS
        if metric.workload == workload
    ]


def _figure(metric: str, session: Session, values: list[float], note: str) -> Figure:
    return Figure(metric, session.system.name, OK, timing.median(values), values, note=note)


# -- compaction ---------------------------------------------------------------------------


def compaction(session: Session) -> list[Figure]:
    system = session.system
    client = getattr(system, "client", None) if isinstance(system, OdradekEmbedded) else None
    if not isinstance(client, EmbeddedClient):
        return _skipped(
            session, "compaction", "forces a round through the embedded engine (Odradek's embedded row)"
        )
    profile = session.profile
    data = session.data.small
    rate = profile.compaction_append_rate_per_second
    segment_bytes = max(compaction_segment_bytes_min, data.value_bytes // compaction_segments)
    idle_count = max(1, round(rate * profile.latency_seconds))
    singles = session.data.latency.batches(1)
    values: dict[str, list[float]] = {
        metric.name: [] for metric in METRICS if metric.workload == "compaction"
    }
    rounds: list[CompactionResult] = []
    busy_samples: list[int] = []
    for run in range(0, profile.runs + 1):  # run 0 warms up, not counted
        throttled, free = (topic_name(f"compact-{run}-{name}") for name in ("throttled", "free"))
        try:
            for topic in (throttled, free):
                client.create_topic(topic, segment_bytes=segment_bytes)
                client.append_many(topic, data.batches(snapshot_batch_records))
            idle = _appends_while(client, throttled, singles, rate, lambda count: count < idle_count)
            result, seconds, busy = _round_with_appends(client, throttled, singles, rate, idle_count)
            free_result, free_seconds, _ = _round(client, free, Throttle(float("inf")))
        finally:
            for topic in (throttled, free):
                client.delete_topic(topic)
        if run == 0:
            continue
        rounds.append(result)
        busy_samples.append(len(busy))
        values["compaction_rate"].append(result.records_read / seconds)
        values["compaction_rate_unthrottled"].append(free_result.records_read / free_seconds)
        for name, samples in (("idle", idle), ("busy", busy)):
            values[f"compaction_append_p50_{name}"].append(timing.percentile(samples, 0.50) * 1000.0)
            values[f"compaction_append_p99_{name}"].append(timing.percentile(samples, 0.99) * 1000.0)
        session.progress(
            f"{system.name} compaction run {run}/{profile.runs}: "
            f"{format_value(values['compaction_rate'][-1])} records/s throttled, "
            f"{format_value(values['compaction_rate_unthrottled'][-1])} unthrottled; append p99 "
            f"{format_value(values['compaction_append_p99_idle'][-1])} ms idle, "
            f"{format_value(values['compaction_append_p99_busy'][-1])} ms busy"
        )
    last = rounds[-1]
    note = (
        f"{len(data):,} keyed {profile.small_value_bytes} B records over {profile.distinct_keys:,} keys, "
        f"{format_value(segment_bytes / MIB)} MiB segments; a round read {last.records_read:,} records and "
        f"removed {last.records_removed:,} ({format_value(last.bytes_before / MIB)} -> "
        f"{format_value(last.bytes_after / MIB)} MiB); throttled at "
        f"{format_value(limits.compaction_bytes_per_second / MIB)} MiB/s of reads and writes; single appends "
        f"to the same topic at {format_value(rate)}/s: {idle_count:,} idle, "
        f"{min(busy_samples):,}-{max(busy_samples):,} while the round ran"
    )
    return [_figure(name, session, runs, note) for name, runs in values.items()]


def _appends_while(
    client: EmbeddedClient,
    topic: str,
    singles: list[pa.RecordBatch],
    rate: float,
    going: Callable[[int], bool],
) -> list[float]:
    """Single appends at ``rate``, latency measured from the scheduled send time
    (timing.py), for as long as ``going(count so far)``."""
    latencies: list[float] = []
    start = timing.now() + 0.01
    while going(len(latencies)):
        send_at = start + len(latencies) / rate
        timing.wait_until(send_at)
        client.append(topic, singles[len(latencies) % len(singles)])
        latencies.append(timing.now() - send_at)
    return latencies


def _round(client: EmbeddedClient, topic: str, throttle: Throttle) -> tuple[CompactionResult, float, None]:
    client.engine.alter_topic(topic, cleanup="compact")
    target = client.engine._topic(topic)
    started = timing.now()
    result = target.compact(force=True, throttle=throttle)
    seconds = timing.now() - started
    if result is None or result.records_read == 0:
        raise RuntimeError(f"the forced round of {topic} read nothing: {result}")
    return result, seconds, None


def _round_with_appends(
    client: EmbeddedClient, topic: str, singles: list[pa.RecordBatch], rate: float, idle_count: int
) -> tuple[CompactionResult, float, list[float]]:
    """A throttled forced round in a thread, single appends at ``rate`` until it ends."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(_round(client, topic, Throttle(limits.compaction_bytes_per_second)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=run, name="bench-compaction", daemon=True)
    thread.start()
    busy = _appends_while(
        client,
        topic,
        singles,
        rate,
        lambda count: thread.is_alive() and count < idle_count * busy_phase_factor_max,
    )
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result, seconds, _ = outcome[0]
    if not busy:
        raise RuntimeError("the compaction round ended before the first append")
    return result, seconds, busy


# -- snapshot_replay ----------------------------------------------------------------------


def snapshot_replay(session: Session) -> list[Figure]:
    system = session.system
    if not isinstance(system, OdradekEmbedded):
        return _skipped(session, "snapshot_replay", "key snapshots are Odradek's")
    client = system.client
    profile = session.profile
    events, after, reads = profile.snapshot_key_events, profile.snapshot_after, profile.snapshot_reads
    topic = topic_name("snapshots")
    client.create_topic(topic)
    latest_key, after_key = snapshot_keys
    try:
        value = b"x" * profile.small_value_bytes
        for key in snapshot_keys:
            for start in range(0, events, snapshot_batch_records):
                count = min(snapshot_batch_records, events - start)
                batch = pa.record_batch(
                    {
                        "key": pa.array([key] * count, pa.binary()),
                        "value": pa.array([value] * count, pa.binary()),
                    }
                )
                client.append(topic, batch)
        client.snapshot(topic, latest_key, value, version=events)
        client.snapshot(topic, after_key, value, version=events - after)
        calls = {
            "snapshot_full_replay": (lambda: client.read_key(topic, latest_key), events),
            "snapshot_read": (lambda: client.read_key(topic, latest_key, from_snapshot=True), 1),
            "snapshot_read_after": (lambda: client.read_key(topic, after_key, from_snapshot=True), 1 + after),
        }
        p50: dict[str, list[float]] = {name: [] for name in calls}
        p99: dict[str, list[float]] = {name: [] for name in calls}
        for run in range(0, profile.runs + 1):  # run 0 warms up, not counted
            for name, (call, rows) in calls.items():
                times = _timed(call, rows, reads)
                if run:
                    p50[name].append(timing.percentile(times, 0.50) * 1000.0)
                    p99[name].append(timing.percentile(times, 0.99) * 1000.0)
            if run:
                session.progress(
                    f"{system.name} snapshot_replay run {run}/{profile.runs}: "
                    + ", ".join(f"{name} {format_value(p50[name][-1])} ms" for name in calls)
                )
    finally:
        client.delete_topic(topic)
    described = {
        "snapshot_full_replay": f"all {events:,} events of the key",
        "snapshot_read": "the snapshot row alone (snapshot at the key's latest version)",
        "snapshot_read_after": f"the snapshot row and the {after:,} events after it",
    }
    return [
        _figure(
            name,
            session,
            p50[name],
            f"{described[name]}; p50 of {reads} reads per run, p99 "
            f"{format_value(timing.median(p99[name]))} ms (median over runs); "
            f"{profile.small_value_bytes} B values; target <= 2 ms from a snapshot",
        )
        for name in calls
    ]


def _timed(call: Callable[[], pa.Table], rows: int, reads: int) -> list[float]:
    times: list[float] = []
    for _ in range(reads):
        started = timing.now()
        table = call()
        times.append(timing.now() - started)
        if table.num_rows != rows:
            raise RuntimeError(f"read_key returned {table.num_rows} rows, expected {rows}")
    return times


# -- sync_commit --------------------------------------------------------------------------


def sync_commit(session: Session) -> list[Figure]:
    system = session.system
    if not isinstance(system, OdradekEmbedded):
        return _skipped(session, "sync_commit", "views and synchronous commit are Odradek's")
    client = system.client
    profile = session.profile
    topic, view = topic_name("sync-commit"), "bench_sync_commit"
    client.create_topic(topic)
    client.create_view(view, topic, view_reducer)
    appends = profile.sync_commit_appends
    data: Dataset = session.data.latency
    singles = data.batches(1)
    values: dict[str, list[float]] = {
        metric.name: [] for metric in METRICS if metric.workload == "sync_commit"
    }
    try:
        for run in range(0, profile.runs + 1):  # run 0 warms up, not counted
            plain: list[float] = []
            waiting: list[float] = []
            for number in range(2 * appends):
                batch = singles[number % len(singles)]
                started = timing.now()
                if number % 2:
                    client.append(topic, batch, wait_for=[f"view:{view}"])
                    waiting.append(timing.now() - started)
                else:
                    client.append(topic, batch)
                    plain.append(timing.now() - started)
            if not run:
                continue
            for kind, samples in (("plain", plain), ("view", waiting)):
                values[f"sync_commit_{kind}_p50"].append(timing.percentile(samples, 0.50) * 1000.0)
                values[f"sync_commit_{kind}_p99"].append(timing.percentile(samples, 0.99) * 1000.0)
            session.progress(
                f"{system.name} sync_commit run {run}/{profile.runs}: plain p50 "
                f"{format_value(values['sync_commit_plain_p50'][-1])} ms, waiting p50 "
                f"{format_value(values['sync_commit_view_p50'][-1])} ms"
            )
    finally:
        client.delete_view(view)
        client.delete_topic(topic)
    note = (
        f"{appends:,} of each per run, one after another, alternating; {profile.small_value_bytes} B values "
        f"over {len(singles):,} keys; the view ({view_reducer}) in the same server; fsync on"
    )
    return [_figure(name, session, runs, note) for name, runs in values.items()]
