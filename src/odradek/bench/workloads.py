"""The workloads, the same for every system, and the protocol every figure follows.

Protocol: one warm-up run (a fraction of a run's size, not counted), then ``runs``
measured runs; the figure is the median of the runs, and every run's value is kept in
the JSON. Datasets are built once per suite and shared by all systems.

Workloads (each system does them through its own Python client, its best way):

* ``ingest_100b``: keyed 100-byte records over 100k distinct keys into a fresh topic.
  The last run's topic stays as the *keyed topic* for the next two workloads.
* ``ingest_64k``: 64 KiB values; its bandwidth is compared with raw fsync'd writes.
* ``append_latency``: single-record appends at a fixed rate; p50, p99 and p999,
  each the median over runs of that run's percentile.
* ``append_closed_loop``: one client appends single records one after another, each
  waiting for its acknowledgement; appends/s.
* ``append_concurrent``: 16 such appenders, 4 threads (or asyncio tasks) sharing a
  client in each of 4 processes; appends/s over all of them.
* ``catchup_read``: read the keyed topic from its start to its end.
* ``consumer_group``: a new group reads and acks the keyed topic's first records.
* ``key_replay``: every record of one key (1,000 records) in a large topic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from odradek.bench import appenders, datasets, state_workloads, store_workloads, timing
from odradek.bench.datasets import Dataset
from odradek.bench.options import Profile
from odradek.bench.outcomes import NotYetAvailable
from odradek.bench.results import ERROR, NOT_AVAILABLE, OK, SKIPPED, Figure, Metric
from odradek.bench.systems.base import Progress, System
from odradek.bench.units import MIB, format_value

METRICS = (
    Metric(
        "ingest_100b",
        "ingest_100b",
        "Keyed ingest, 100 B values",
        "records/s",
        True,
        limit="fsync_write_8mib",
    ),
    Metric("ingest_64k", "ingest_64k", "Ingest, 64 KiB values", "MiB/s", True, limit="fsync_write_8mib"),
    Metric("append_latency_p50", "append_latency", "Single-record append latency p50", "ms", False),
    Metric("append_latency_p99", "append_latency", "Single-record append latency p99", "ms", False),
    Metric("append_latency_p999", "append_latency", "Single-record append latency p99.9", "ms", False),
    Metric(
        "append_closed_loop",
        "append_closed_loop",
        "Single appends, closed loop, one client",
        "appends/s",
        True,
    ),
    Metric(
        "append_concurrent",
        "append_concurrent",
        "Single appends, 16 clients in 4 processes",
        "appends/s",
        True,
    ),
    Metric(
        "catchup_read",
        "catchup_read",
        "Catch-up read",
        "records/s",
        True,
        limit="loopback_tcp",
        limit_networked_only=True,
    ),
    Metric(
        "consumer_group",
        "consumer_group",
        "Consumer group, receive + ack",
        "records/s",
        True,
        limit="loopback_tcp",
        limit_networked_only=True,
    ),
    Metric("key_replay", "key_replay", "Replay of one key (1,000 records)", "ms", False),
    *store_workloads.METRICS,
    *state_workloads.METRICS,
)
LATENCY_PERCENTILES = {"append_latency_p50": 0.50, "append_latency_p99": 0.99, "append_latency_p999": 0.999}
large_value_distinct_keys = 1000


def metrics_of(workload: str) -> list[Metric]:
    return [metric for metric in METRICS if metric.workload == workload]


class Datasets:
    """The records of every workload, built on first use and shared by all systems."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    @functools.cached_property
    def small(self) -> Dataset:
        p = self.profile
        return datasets.keyed(p.ingest_records, p.distinct_keys, p.small_value_bytes, seed=1)

    @functools.cached_property
    def large(self) -> Dataset:
        p = self.profile
        count = max(1, p.large_total_bytes // p.large_value_bytes)
        return datasets.keyed(count, large_value_distinct_keys, p.large_value_bytes, seed=3)

    @functools.cached_property
    def latency(self) -> Dataset:
        p = self.profile
        count = max(1, round(p.latency_rate_per_second * p.latency_seconds))
        return datasets.keyed(count, p.distinct_keys, p.small_value_bytes, seed=4)

    @functools.cached_property
    def replay(self) -> Dataset:
        p = self.profile
        return datasets.with_replay_key(
            p.replay_topic_records, p.distinct_keys, p.small_value_bytes, p.replay_key_records, seed=2
        )


class Session:
    """One system's pass through the chosen workloads."""

    def __init__(self, system: System, profile: Profile, data: Datasets, progress: Progress) -> None:
        self.system = system
        self.profile = profile
        self.data = data
        self.progress = progress
        self._keyed_topic: str | None = None
        self._keyed_count = 0
        self._workloads: dict[str, Callable[[], list[Figure]]] = {
            "ingest_100b": self._ingest_100b,
            "ingest_64k": self._ingest_64k,
            "catchup_read": self._catchup_read,
            "consumer_group": self._consumer_group,
            "append_latency": self._append_latency,
            "append_closed_loop": self._append_closed_loop,
            "append_concurrent": self._append_concurrent,
            "key_replay": self._key_replay,
        }
        self._workloads.update(store_workloads.workloads(self, self._workloads))
        self._workloads.update(state_workloads.workloads(self))

    def run(self, workload: str) -> list[Figure]:
        method = self._workloads[workload]
        if workload in self.system.skipped_workloads:
            note = self.system.skipped_workloads[workload]
            self.progress(f"{self.system.name} {workload}: skipped ({note})")
            return [Figure(m.name, self.system.name, SKIPPED, note=note) for m in metrics_of(workload)]
        try:
            return method()
        except NotYetAvailable as exc:
            self.progress(f"{self.system.name} {workload}: not yet available ({exc})")
            note = str(exc)
            return [Figure(m.name, self.system.name, NOT_AVAILABLE, note=note) for m in metrics_of(workload)]
        except Exception as exc:  # noqa: BLE001 - one failed workload must not end the suite
            note = f"{type(exc).__name__}: {exc}"
            self.progress(f"{self.system.name} {workload}: FAILED {note}")
            return [Figure(m.name, self.system.name, ERROR, note=note) for m in metrics_of(workload)]

    def finish(self) -> None:
        try:
            self._drop_keyed_topic()
        except Exception as exc:  # noqa: BLE001 - clean-up trouble must not lose the figures
            self.progress(f"{self.system.name}: could not drop the keyed topic: {exc}")

    # -- workloads --------------------------------------------------------------------

    def _ingest_100b(self) -> list[Figure]:
        full = self.data.small
        warm = full.head(self._warm_count(len(full)))
        warm_seconds = self._write_and_drop("ingest-w", warm)
        data, note = self._fit(full, warm_seconds / len(warm))

        def measure(run: int) -> float:
            stream = f"ingest-{run}"
            seconds = self.system.write(stream, data)
            self._drop_keyed_topic()
            self._keyed_topic, self._keyed_count = stream, len(data)
            return len(data) / seconds

        figure = self._repeat("ingest_100b", lambda: len(warm) / warm_seconds, measure)
        figure.payload_mib_per_second = _payload(figure.value, data)
        figure.note = note
        return [figure]

    def _ingest_64k(self) -> list[Figure]:
        full = self.data.large
        warm = full.head(self._warm_count(len(full)))
        warm_seconds = self._write_and_drop("large-w", warm)
        data, note = self._fit(full, warm_seconds / len(warm))

        def measure(run: int) -> float:
            return data.value_bytes / MIB / self._write_and_drop(f"large-{run}", data)

        figure = self._repeat("ingest_64k", lambda: warm.value_bytes / MIB / warm_seconds, measure)
        figure.payload_mib_per_second = figure.value
        figure.note = note
        return [figure]

    def _catchup_read(self) -> list[Figure]:
        stream, count = self._keyed()

        def read() -> float:
            return count / self.system.read_all(stream, count)

        figure = self._repeat("catchup_read", read, lambda _run: read())
        figure.payload_mib_per_second = _payload(figure.value, self.data.small)
        return [figure]

    def _consumer_group(self) -> list[Figure]:
        stream, available = self._keyed()
        count = min(self.profile.group_records, available)
        warm = self._warm_count(count)

        def warm_up() -> float:
            return warm / self.system.consume_group(stream, "group-w", warm)

        def measure(run: int) -> float:
            return count / self.system.consume_group(stream, f"group-{run}", count)

        figure = self._repeat("consumer_group", warm_up, measure)
        figure.payload_mib_per_second = _payload(figure.value, self.data.small)
        return [figure]

    def _append_latency(self) -> list[Figure]:
        data, rate = self.data.latency, self.profile.latency_rate_per_second
        stream = "latency"
        self.system.write(stream, data.head(1))
        try:
            self.system.append_latencies(stream, data.head(self._warm_count(len(data))), rate)
            per_run: dict[str, list[float]] = {name: [] for name in LATENCY_PERCENTILES}
            achieved: list[float] = []
            for run in range(1, self.profile.runs + 1):
                started = timing.now()
                latencies = self.system.append_latencies(stream, data, rate)
                achieved.append(len(latencies) / (timing.now() - started))
                for name, fraction in LATENCY_PERCENTILES.items():
                    per_run[name].append(timing.percentile(latencies, fraction) * 1000.0)
                summary = ", ".join(
                    f"{name.rsplit('_', 1)[1]} {format_value(values[-1])} ms"
                    for name, values in per_run.items()
                )
                self.progress(f"{self.system.name} append_latency run {run}/{self.profile.runs}: {summary}")
        finally:
            self.system.drop(stream)
        note = (
            f"{len(data):,} appends per run scheduled at {format_value(rate)}/s, "
            f"achieved {format_value(timing.median(achieved))}/s"
        )
        return [
            Figure(name, self.system.name, OK, timing.median(values), values, note=note)
            for name, values in per_run.items()
        ]

    def _append_closed_loop(self) -> list[Figure]:
        return self._closed_loop(
            "append_closed_loop",
            lambda stream: self.system.append_sessions(stream, 1, 1, self.profile.small_value_bytes),
            "one client, one appender",
        )

    def _append_concurrent(self) -> list[Figure]:
        p = self.profile
        return self._closed_loop(
            "append_concurrent",
            lambda stream: self.system.append_sessions(
                stream, p.concurrent_processes, p.concurrent_threads, p.small_value_bytes
            ),
            f"{p.concurrent_processes * p.concurrent_threads} appenders: {p.concurrent_threads} sharing "
            f"a client in each of {p.concurrent_processes} processes",
        )

    def _closed_loop(self, metric: str, start: Callable[[str], appenders.Runner], how: str) -> list[Figure]:
        """Appenders that each wait for one append's acknowledgement before the next, for
        ``closed_loop_seconds`` per run; the figure is appends/s over all of them."""
        seconds = self.profile.closed_loop_seconds
        stream = metric.replace("_", "-")
        self.system.write(stream, self.data.latency.head(1))
        runner = start(stream)
        p50: list[float] = []
        p99: list[float] = []

        def rate(latencies: list[float]) -> float:
            if not latencies:
                raise RuntimeError(f"no append was acknowledged within a {seconds:g} s run")
            p50.append(timing.percentile(latencies, 0.50) * 1000.0)
            p99.append(timing.percentile(latencies, 0.99) * 1000.0)
            return len(latencies) / seconds

        try:
            warm_seconds = max(seconds * self.profile.warmup_fraction, 0.2)
            warm = runner.run(warm_seconds)
            figure = self._repeat(
                metric, lambda: len(warm) / warm_seconds, lambda _run: rate(runner.run(seconds))
            )
        finally:
            runner.close()
            self.system.drop(stream)
        note = runner.note or how
        figure.note = (
            f"{note}; {format_value(seconds)} s per run; per-append latency p50 "
            f"{format_value(timing.median(p50[-self.profile.runs :]))} ms, "
            f"p99 {format_value(timing.median(p99[-self.profile.runs :]))} ms (median over runs)"
        )
        return [figure]

    def _key_replay(self) -> list[Figure]:
        self._drop_keyed_topic()  # the last workload: free the peers' memory first
        data, expected = self.data.replay, self.profile.replay_key_records
        self.progress(f"{self.system.name} key_replay: loading {len(data):,} records (not timed)")
        self.system.load_for_replay("replay", data)
        try:

            def replay() -> float:
                return self.system.replay_key("replay", datasets.replay_key, expected) * 1000.0

            figure = self._repeat("key_replay", replay, lambda _run: replay())
        finally:
            self.system.drop("replay")
        figure.note = f"{expected:,} records of one key among {len(data):,}"
        return [figure]

    # -- helpers ----------------------------------------------------------------------

    def _repeat(self, metric: str, warm_up: Callable[[], float], measure: Callable[[int], float]) -> Figure:
        unit = next(m.unit for m in METRICS if m.name == metric)
        name = self.system.name
        warm = warm_up()
        self.progress(f"{name} {metric} warm-up: {format_value(warm)} {unit}")
        values: list[float] = []
        for run in range(1, self.profile.runs + 1):
            values.append(measure(run))
            self.progress(f"{name} {metric} run {run}/{self.profile.runs}: {format_value(values[-1])} {unit}")
        return Figure(metric, name, OK, timing.median(values), values, warmup=warm)

    def _write_and_drop(self, stream: str, data: Dataset) -> float:
        seconds = self.system.write(stream, data)
        self.system.drop(stream)
        return seconds

    def _fit(self, data: Dataset, seconds_per_record: float) -> tuple[Dataset, str]:
        """``data``, or its head if at the warm-up's speed a run would exceed the
        profile's ``run_seconds_max`` (a per-write-fsync peer can be 100x slower); the
        note says so, and the figure, a rate, stays comparable."""
        predicted = seconds_per_record * len(data)
        if predicted <= self.profile.run_seconds_max:
            return data, ""
        count = max(self._warm_count(len(data)), int(self.profile.run_seconds_max / seconds_per_record))
        note = (
            f"runs of {count:,} records instead of {len(data):,}: at its warm-up speed a full run "
            f"would take {predicted:,.0f} s"
        )
        self.progress(f"{self.system.name}: {note}")
        return data.head(count), note

    def _warm_count(self, count: int) -> int:
        return max(1, int(count * self.profile.warmup_fraction))

    def _keyed(self) -> tuple[str, int]:
        """The keyed topic: the last ingest run's, or written now (not timed)."""
        if self._keyed_topic is None:
            data = self.data.small
            self.progress(f"{self.system.name}: writing the keyed topic ({len(data):,} records, not timed)")
            self.system.write("keyed", data)
            self._keyed_topic, self._keyed_count = "keyed", len(data)
        return self._keyed_topic, self._keyed_count

    def _drop_keyed_topic(self) -> None:
        if self._keyed_topic is not None:
            stream, self._keyed_topic = self._keyed_topic, None
            self.system.drop(stream)


def _payload(records_per_second: float | None, data: Dataset) -> float | None:
    if records_per_second is None or len(data) == 0:
        return None
    return records_per_second * (data.value_bytes / len(data)) / MIB
