"""Workloads of the object-store rows (issue 13), beside the common ones of workloads.py.

* ``store_requests``: the requests an agent sends its store per million records
  appended (``ObjectStore.counts()``): keyed 100 B records appended as ingest_100b
  appends them, ``runs`` times into one growing topic, checkpoints included as they
  fall. The figure is all runs together (requests over records), not a median: a run
  that holds a checkpoint pays for the others too.
* ``store_restart``: a large keyed topic (10M records in the default profile) is
  loaded (not timed); then, per run, the agent is closed, its cache deleted and a new
  agent started on the store (the figure: that start, which rebuilds the cache), and the
  whole topic is read once (the second figure: sealed segments come from the store).
  The directory row reopens its data directory instead: the same engine with its
  data local.

Both run on Odradek's embedded rows only; a peer's rows say they are skipped. The
catch-up read of a store row gets a note saying what its restart downloaded and what the
timed read fetched (``catchup_with_note``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from odradek.bench import datasets, timing
from odradek.bench.results import OK, SKIPPED, Figure, Metric
from odradek.bench.systems.odradek import OdradekEmbedded, OdradekRemote
from odradek.bench.systems.odradek_store import (
    OdradekStore,
    Restart,
    ingest_window,
    read_note,
)
from odradek.bench.units import MIB, format_value
from odradek.client.embedded import EmbeddedClient
from odradek.storage.objects import RequestCounts

if TYPE_CHECKING:
    from odradek.bench.workloads import Session

METRICS = (
    Metric("store_puts", "store_requests", "Store PUTs per million records appended", "PUTs", False),
    Metric("store_gets", "store_requests", "Store GETs per million records appended", "GETs", False),
    Metric("store_restart", "store_restart", "Restart on an empty cache, large topic", "s", False),
    Metric(
        "store_restart_read",
        "store_restart",
        "First read of the large topic after the restart",
        "records/s",
        True,
    ),
)
WORKLOADS = ("store_requests", "store_restart")
REQUESTS_STREAM = "requests"
RESTART_STREAM = "restart"
batch_records = 10_000
per_million = 1_000_000
directory_window = 8  # append_many's default, as the directory row's ingest


def workloads(
    session: Session, common: dict[str, Callable[[], list[Figure]]]
) -> dict[str, Callable[[], list[Figure]]]:
    """This module's workloads for ``session``, and the common catch-up read with a note
    for a store row (``common`` is the session's table of the common workloads)."""
    table: dict[str, Callable[[], list[Figure]]] = {
        "store_requests": lambda: store_requests(session),
        "store_restart": lambda: store_restart(session),
    }
    system = session.system
    if isinstance(system, OdradekStore) and "catchup_read" in common:
        plain = common["catchup_read"]

        def catchup_with_note() -> list[Figure]:
            system.read_log.clear()
            figures = plain()
            for figure in figures:
                figure.note = read_note(system)
            return figures

        table["catchup_read"] = catchup_with_note
    return table


def _skipped(session: Session, workload: str, note: str) -> list[Figure]:
    session.progress(f"{session.system.name} {workload}: skipped ({note})")
    return [
        Figure(metric.name, session.system.name, SKIPPED, note=note)
        for metric in METRICS
        if metric.workload == workload
    ]


def _not_here(session: Session, workload: str) -> list[Figure] | None:
    system = session.system
    if isinstance(system, OdradekStore):
        return None
    if isinstance(system, OdradekRemote) or not isinstance(system, OdradekEmbedded):
        return _skipped(
            session, workload, "measures Odradek's object-store agents against the embedded directory row"
        )
    if workload == "store_requests":
        return _skipped(session, workload, "the directory backend sends no object-store requests")
    return None


# -- store_requests -----------------------------------------------------------------------


def store_requests(session: Session) -> list[Figure]:
    skipped = _not_here(session, "store_requests")
    if skipped is not None:
        return skipped
    system = session.system
    if not isinstance(system, OdradekStore):  # _not_here lets only a store row through
        raise RuntimeError(f"{system.name} has no object store")
    data, runs = session.data.small, session.profile.runs
    topic = f"bench.{REQUESTS_STREAM}"
    system.client.create_topic(topic)
    try:
        warm = data.head(max(1, int(len(data) * session.profile.warmup_fraction)))
        system.client.append_many(topic, warm.batches(batch_records), window=ingest_window)
        counted: list[RequestCounts] = []
        for run in range(1, runs + 1):
            before = system.store.counts()
            system.client.append_many(topic, data.batches(batch_records), window=ingest_window)
            counted.append(system.store.counts() - before)
            session.progress(
                f"{system.name} store_requests run {run}/{runs}: {counted[-1].puts:,} PUTs, "
                f"{counted[-1].gets:,} GETs for {len(data):,} records"
            )
    finally:
        system.client.delete_topic(topic)
    total = _total(counted)
    records = len(data) * runs
    note = (
        f"{runs} runs of {len(data):,} records appended to one topic, all runs together "
        f"({records:,} records): per million records {_per_million(total.lists, records)} LISTs, "
        f"{_per_million(total.deletes, records)} DELETEs, {_per_million(total.heads, records)} HEADs, "
        f"{format_value(total.bytes_put / MIB * per_million / records)} MiB PUT (journal, then "
        f"checkpoints: segment extents and key-index runs); {total.retries} retries"
    )
    return [
        Figure(
            "store_puts",
            system.name,
            OK,
            total.puts * per_million / records,
            [c.puts * per_million / len(data) for c in counted],
            note=note,
        ),
        Figure(
            "store_gets",
            system.name,
            OK,
            total.gets * per_million / records,
            [c.gets * per_million / len(data) for c in counted],
            note=note,
        ),
    ]


def _total(counts: list[RequestCounts]) -> RequestCounts:
    fields = dataclasses.fields(RequestCounts)
    return RequestCounts(**{f.name: sum(getattr(c, f.name) for c in counts) for f in fields})


def _per_million(count: int, records: int) -> str:
    return format_value(count * per_million / records)


# -- store_restart ------------------------------------------------------------------------


def store_restart(session: Session) -> list[Figure]:
    skipped = _not_here(session, "store_restart")
    if skipped is not None:
        return skipped
    system = session.system
    if not isinstance(system, OdradekEmbedded):  # _not_here lets only embedded rows through
        raise RuntimeError(f"{system.name} is not an embedded engine")
    profile = session.profile
    records, segment_bytes = profile.store_restart_records, profile.store_restart_segment_bytes
    topic = f"bench.{RESTART_STREAM}"
    store = system.store if isinstance(system, OdradekStore) else None
    window = ingest_window if store is not None else directory_window
    session.progress(
        f"{system.name} store_restart: loading {records:,} records of {profile.small_value_bytes} B "
        f"into one topic, {segment_bytes // MIB} MiB segments (not timed)"
    )
    system.client.create_topic(topic, segment_bytes=segment_bytes)
    before = store.counts() if store is not None else RequestCounts()
    started = timing.now()
    batches = _restart_batches(records, profile.distinct_keys, profile.small_value_bytes)
    system.client.append_many(topic, batches, window=window)
    load_seconds = timing.now() - started
    load = (store.counts() if store is not None else RequestCounts()) - before

    restarts: list[Restart] = []
    reads: list[RequestCounts] = []

    def restart_and_read() -> tuple[float, float]:
        restart = system.restart() if isinstance(system, OdradekStore) else _reopen(system, session)
        read_before = store.counts() if store is not None else RequestCounts()
        read_started = timing.now()
        received = sum(batch.num_rows for batch in system.client.read(topic, start="earliest", wait=0))
        read_seconds = timing.now() - read_started
        if received != records:
            raise RuntimeError(f"read after the restart returned {received} records, expected {records}")
        restarts.append(restart)
        reads.append((store.counts() if store is not None else RequestCounts()) - read_before)
        return restart.seconds, records / read_seconds

    try:
        warm = restart_and_read()
        session.progress(
            f"{system.name} store_restart warm-up: restart {format_value(warm[0])} s, "
            f"read {format_value(warm[1])} records/s"
        )
        seconds: list[float] = []
        rates: list[float] = []
        for run in range(1, profile.runs + 1):
            restart_seconds, rate = restart_and_read()
            seconds.append(restart_seconds)
            rates.append(rate)
            session.progress(
                f"{system.name} store_restart run {run}/{profile.runs}: restart "
                f"{format_value(restart_seconds)} s, read {format_value(rate)} records/s"
            )
    finally:
        system.client.delete_topic(topic)
    note = _restart_note(
        records, segment_bytes, load_seconds, load, restarts[1:], reads[1:], store is not None
    )
    return [
        Figure("store_restart", system.name, OK, timing.median(seconds), seconds, warmup=warm[0], note=note),
        Figure("store_restart_read", system.name, OK, timing.median(rates), rates, warmup=warm[1], note=note),
    ]


def _reopen(system: OdradekEmbedded, session: Session) -> Restart:
    """The directory row's restart: close the engine, open its data directory again."""
    client = system.client
    if not isinstance(client, EmbeddedClient):
        raise RuntimeError(f"{system.name} is not an embedded engine")
    scratch = Path(client.engine.path).parent
    system.stop()
    started = timing.now()
    system.start(scratch, session.progress)
    return Restart(timing.now() - started, RequestCounts())


def _restart_batches(records: int, distinct_keys: int, value_bytes: int) -> Iterator[pa.RecordBatch]:
    """The large topic's records, made batch by batch (10M records are 1 GiB of values:
    never all in memory), keyed over ``distinct_keys`` keys."""
    for index, start in enumerate(range(0, records, batch_records)):
        count = min(batch_records, records - start)
        yield datasets.keyed(count, distinct_keys, value_bytes, seed=100 + index).batches(count)[0]


def _restart_note(
    records: int,
    segment_bytes: int,
    load_seconds: float,
    load: RequestCounts,
    restarts: list[Restart],
    reads: list[RequestCounts],
    on_store: bool,
) -> str:
    head = (
        f"one topic of {records:,} keyed records, {segment_bytes // MIB} MiB segments, loaded in "
        f"{format_value(load_seconds)} s ({format_value(records / load_seconds)} records/s, not timed)"
    )
    if not on_store:
        return f"{head}; a restart closes the engine and opens its data directory again (data local)"

    def median(values: Sequence[float]) -> str:
        return f"{timing.median(values):,.0f}" if values else "—"

    def median_mib(values: Sequence[float]) -> str:
        return format_value(timing.median(values)) if values else "—"

    return (
        f"{head}, {format_value(load.puts * per_million / records)} PUTs per million records in the load; "
        "a restart closes the agent (its last checkpoint, not timed), deletes its cache and starts a "
        f"new agent on the store: median {median([r.requests.gets for r in restarts])} GETs "
        f"({median_mib([r.requests.bytes_got / MIB for r in restarts])} MiB), "
        f"{median([r.requests.puts for r in restarts])} PUTs (fences and its first manifest), "
        f"{median([r.requests.lists for r in restarts])} LISTs; the read after it fetched "
        f"{median_mib([r.bytes_got / MIB for r in reads])} MiB in {median([r.gets for r in reads])} GETs"
    )
