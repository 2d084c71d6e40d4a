"""What every door and the engine's group commit did, for ``/metrics``.

Each door calls :func:`request` once per request it answered, from its one dispatch
point (Flight: ``_translate``; Kafka: ``_respond``/``_finish``; the HTTP API:
``HttpApi.handle``; the Schema Registry: its handler), with the operation, its outcome
(``ok`` or the error code) and what it appended and read, counted per request or batch,
never per record. The engine's group commit calls :func:`fsynced` once per fsync.
Connections are read from the doors' connection slots (protocols/connections.py) at
scrape time.

The counts are the process's (a server is one process): every :class:`~odradek.
protocols.metrics.Metrics` exports them through :data:`COLLECTOR`. Labels are bounded:
``door`` is one of :data:`DOORS`, ``operation`` one of the door's fixed set in
:data:`OPERATIONS` (anything else counts as ``other``), ``outcome`` an error code (a
fixed set of classes per door); no topic label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from odradek import limits
from odradek.engine import commit
from odradek.protocols import connections

DOORS = ("flight", "kafka", "http", "registry")

#: The operations the Flight door and the registry report (the ``operation`` label;
#: others count as ``other``). The Kafka door's are its ApiKey names and the HTTP API's
#: its route handlers' names (routes.py ROUTES): fixed sets by construction.
OPERATIONS: dict[str, frozenset[str]] = {
    "flight": frozenset(
        {"append", "do_put", "do_get", "do_action", "do_exchange", "list_flights", "get_flight_info"}
    ),
    "registry": frozenset({"get", "post", "put", "delete", "patch", "options", "trace", "head"}),
}

_REQUESTS = Counter(
    "odradek_door_requests",
    "Requests a door answered, per operation and outcome (ok, or the error code).",
    ["door", "operation", "outcome"],
    registry=None,
)
_SECONDS = Histogram(
    "odradek_door_request_seconds",
    "Time a door took to answer a request, per operation (an append includes its fsync).",
    ["door", "operation"],
    buckets=limits.door_request_seconds_buckets,
    registry=None,
)
_RECORDS_IN = Counter(
    "odradek_door_appended_records", "Records appended through a door.", ["door"], registry=None
)
_BYTES_IN = Counter(
    "odradek_door_appended_bytes",
    "Bytes appended through a door (as the door received them: Arrow batches, Kafka record "
    "batches, JSON bodies).",
    ["door"],
    registry=None,
)
_RECORDS_OUT = Counter(
    "odradek_door_fetched_records", "Records fetched or read through a door.", ["door"], registry=None
)
_BYTES_OUT = Counter(
    "odradek_door_fetched_bytes",
    "Bytes fetched or read through a door (as the door sent them).",
    ["door"],
    registry=None,
)
_ERRORS = Counter(
    "odradek_errors", "Requests refused or failed, per error code, across doors.", ["code"], registry=None
)
_FSYNC_SECONDS = Histogram(
    "odradek_fsync_seconds",
    "Time one group-commit fsync took.",
    buckets=limits.fsync_seconds_buckets,
    registry=None,
)
_COMMIT_APPENDS = Histogram(
    "odradek_group_commit_appends",
    "Appends one fsync made durable (the group commit's size in appends).",
    buckets=limits.group_commit_size_buckets,
    registry=None,
)
_COMMIT_RECORDS = Histogram(
    "odradek_group_commit_records",
    "Records one fsync made durable (the group commit's size in records).",
    buckets=limits.group_commit_size_buckets,
    registry=None,
)

for _door in DOORS:  # the families show every door from the start (zeros)
    _RECORDS_IN.labels(_door)
    _BYTES_IN.labels(_door)
    _RECORDS_OUT.labels(_door)
    _BYTES_OUT.labels(_door)


#: (door, operation, outcome) -> the children :func:`request` counts with.
_CHILDREN: dict[tuple[str, str, str], tuple[Any, ...]] = {}


def request(
    door: str,
    operation: str,
    outcome: str,
    seconds: float,
    *,
    records_in: int = 0,
    bytes_in: int = 0,
    records_out: int = 0,
    bytes_out: int = 0,
) -> None:
    """One request ``door`` answered (``outcome``: ``ok`` or an error code)."""
    children = _CHILDREN.get((door, operation, outcome))
    if children is None:
        children = _children(door, operation, outcome)
    children[0].inc()
    children[1].observe(seconds)
    if outcome != "ok":
        _ERRORS.labels(outcome).inc()
    if records_in or bytes_in:
        children[2].inc(records_in)
        children[3].inc(bytes_in)
    if records_out or bytes_out:
        children[4].inc(records_out)
        children[5].inc(bytes_out)


def _children(door: str, operation: str, outcome: str) -> tuple[Any, ...]:
    """The metrics' children of these labels, looked up once (the label sets are bounded:
    see the module docstring)."""
    allowed = OPERATIONS.get(door)
    named = operation if allowed is None or operation in allowed else "other"
    children = (
        _REQUESTS.labels(door, named, outcome),
        _SECONDS.labels(door, named),
        _RECORDS_IN.labels(door),
        _BYTES_IN.labels(door),
        _RECORDS_OUT.labels(door),
        _BYTES_OUT.labels(door),
    )
    _CHILDREN[(door, operation, outcome)] = children
    return children


def volume(door: str, records_in: int, bytes_in: int, records_out: int, bytes_out: int) -> None:
    """What a door appended and read, for a door that learns it apart from the request
    (a Flight stream, batch by batch)."""
    if records_in or bytes_in:
        _RECORDS_IN.labels(door).inc(records_in)
        _BYTES_IN.labels(door).inc(bytes_in)
    if records_out or bytes_out:
        _RECORDS_OUT.labels(door).inc(records_out)
        _BYTES_OUT.labels(door).inc(bytes_out)


def failed(code: str) -> None:
    """An error a door sent apart from a request it reports (a stream that broke)."""
    _ERRORS.labels(code).inc()


def refused(door: str, operation: str, code: str) -> None:
    """A request refused inside a stream the door counts as one call (a Flight append
    stream's append): counted with its error, without a latency."""
    _REQUESTS.labels(door, operation, code).inc()
    _ERRORS.labels(code).inc()


class _FsyncObserver:
    """What the engine's group commit reports (engine/commit.py ``observer``)."""

    def fsynced(self, seconds: float, appends: int, records: int) -> None:
        _FSYNC_SECONDS.observe(seconds)
        _COMMIT_APPENDS.observe(appends)
        _COMMIT_RECORDS.observe(records)


def observe_engine() -> None:
    """Have the engine's group commits report their fsyncs (once per process)."""
    commit.observer = _FsyncObserver()


class _Collector(Collector):
    def collect(self) -> Iterator[Metric]:
        for metric in (
            _REQUESTS,
            _SECONDS,
            _RECORDS_IN,
            _BYTES_IN,
            _RECORDS_OUT,
            _BYTES_OUT,
            _ERRORS,
            _FSYNC_SECONDS,
            _COMMIT_APPENDS,
            _COMMIT_RECORDS,
        ):
            yield from metric.collect()
        open_ = GaugeMetricFamily("odradek_door_connections", "Connections open at a door.", labels=["door"])
        accepted = CounterMetricFamily(
            "odradek_door_connections_accepted", "Connections a door accepted.", labels=["door"]
        )
        refused = CounterMetricFamily(
            "odradek_door_connections_refused",
            "Connections a door refused (over its caps, protocols/connections.py).",
            labels=["door"],
        )
        totals = connections.totals()
        for door in sorted(totals):
            now, taken, turned = totals[door]
            open_.add_metric([door], now)
            accepted.add_metric([door], taken)
            refused.add_metric([door], turned)
        yield from (open_, accepted, refused)


#: Exports the process's door and engine counts (registered by every Metrics).
COLLECTOR: Collector = _Collector()
