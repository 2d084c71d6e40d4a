"""Cluster mode's rows of ``odradek bench`` (issue 14's measurements).

Goal: ``--systems odradek-cluster`` with the four one-cell cluster workloads starts a
real cluster (3 etcd members, moto's S3 server, 3 agents of ``odradek serve --etcd``)
and produces every figure the issue asks for: failover and handover times over as many
kills as asked, produce latency steady and across a failover, ingest with 1, 2 and 3
agents, and etcd's requests per agent idle and with appends running, read from etcd's
own counters; no workload errs, failed appends are counted and explained; results.md
has its section. ``cluster_spread`` starts a cluster of its own whose agents run with
``--cells 3`` and measures ingest with the three cells spread over 1, 2 and 3 agents,
its notes naming where each topic went, how the cells were spread and what used the
cores; it starts no one-cell cluster. A common workload on the
cluster row, and a cluster workload on another row, are skipped with a note. The parts
that turn raw observations into figures (etcd's exposition format into rates, the
appends in flight across a failover) give exactly what they should on known input.

Method: the bench's entry point in this process with a tiny ``--quick`` profile (the
module's QUICK replaced: 2 kills, 1 handover, 1 s produce runs, 2 s etcd windows, 4,000
records of ingest, one run, so one round of cluster_spread), reading results.json and
results.md back; the pure parts on hand-made input. No speed is asserted: statuses, counts and presence.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from odradek.bench import cluster_workloads, options, runner
from odradek.bench.cluster_harness import (
    balanced,
    etcd_load_between,
    fair_shares,
    in_flight_across,
    parse_counters,
    served_cells,
)
from odradek.bench.units import MIB

TINY = dataclasses.replace(
    options.QUICK,
    runs=1,
    fsync_probe_bytes=4 * MIB,
    fsync_latency_samples=20,
    tcp_probe_bytes=16 * MIB,
    ingest_records=4000,
    cluster_kills=2,
    cluster_handovers=1,
    cluster_produce_seconds=1.0,
    cluster_produce_kills=1,
    cluster_etcd_seconds=2.0,
)
ONE_CELL = [w for w in options.CLUSTER_WORKLOADS if w not in cluster_workloads.CELLS_WORKLOADS]
WORKLOADS = ",".join(ONE_CELL)


def _bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, systems: str, workloads: str, *more: str
) -> tuple[int, dict[str, Any], str]:
    monkeypatch.setattr(options, "QUICK", TINY)
    out = tmp_path / "results"
    code = runner.main(
        [
            "--quick",
            "--systems",
            systems,
            "--workloads",
            workloads,
            "--no-install",
            "--no-charts",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
            *more,
        ]
    )
    return code, json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


@pytest.mark.slow
def test_the_cluster_row_measures_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, document, markdown = _bench(tmp_path, monkeypatch, "odradek-cluster", f"ingest_100b,{WORKLOADS}")
    (info,) = document["systems"]
    assert info["name"] == "odradek-cluster" and info["status"] == "ok", info
    assert {"etcd", "moto", "odradek"} <= set(info["versions"])
    figures = {f["metric"]: f for f in document["figures"]}
    assert code == 0, [f for f in figures.values() if f["status"] not in ("ok", "skipped")]

    assert (
        figures["ingest_100b"]["status"] == "skipped"
        and "cluster workloads" in figures["ingest_100b"]["note"]
    )
    cluster_metrics = {metric.name for metric in cluster_workloads.METRICS if metric.workload in ONE_CELL}
    assert cluster_metrics <= set(figures)
    for name in cluster_metrics:
        assert figures[name]["status"] == "ok", figures[name]
        assert figures[name]["note"], name

    # Failover: one value per kill and per handover, none failed.
    for name in ("cluster_failover_p50", "cluster_failover_p99", "cluster_failover_max"):
        assert len(figures[name]["runs"]) == TINY.cluster_kills and figures[name]["value"] > 0
    assert len(figures["cluster_handover_p50"]["runs"]) == TINY.cluster_handovers
    assert figures["cluster_failover_max"]["value"] >= figures["cluster_failover_p50"]["value"]
    # Failed appends are counted and explained (a count, whatever it is: the product's
    # behaviour, which the chaos test checks; this test checks the bench).
    for name in ("cluster_failover_errors", "cluster_produce_errors"):
        failed = figures[name]["value"]
        assert failed >= 0 and failed == int(failed)
        assert ("no append failed" in figures[name]["note"]) == (failed == 0), figures[name]["note"]
    assert "takeover" in figures["cluster_failover_p50"]["note"]

    # Produce: steady percentiles per run, a window per kill, none failed.
    assert len(figures["cluster_produce_p50"]["runs"]) == TINY.runs
    assert 0 < figures["cluster_produce_p50"]["value"] <= figures["cluster_produce_p99"]["value"]
    assert len(figures["cluster_produce_failover_max"]["runs"]) == TINY.cluster_produce_kills
    assert (
        figures["cluster_produce_failover_max"]["value"] >= figures["cluster_produce_failover_p50"]["value"]
    )

    # Ingest with 1, 2 and 3 agents; the note says what standbys are for.
    for count in (1, 2, 3):
        figure = figures[f"cluster_ingest_{count}"]
        assert figure["value"] > 0 and len(figure["runs"]) == TINY.runs
        assert "availability, not throughput" in figure["note"]
    assert (
        "(standby)" in figures["cluster_ingest_3"]["note"] and "moto" in figures["cluster_ingest_3"]["note"]
    )

    # etcd: every agent renews its lease and holds a watch stream, idle or busy.
    for phase in ("idle", "busy"):
        keepalives = figures[f"cluster_etcd_keepalives_{phase}"]["value"]
        assert keepalives > 0
        assert figures[f"cluster_etcd_requests_{phase}"]["value"] >= keepalives
    assert figures["cluster_etcd_watch_streams"]["value"] > 0

    # Reads: the history through the owner and through another agent, which answered
    # most of it from the store (decision 0042).
    owner_read, store_read = figures["cluster_reads_owner"], figures["cluster_reads_store"]
    assert owner_read["value"] > 0 and store_read["value"] > 0
    share = re.search(r"answered from the store: ([0-9.,]+) %", store_read["note"])
    assert share is not None and float(share.group(1).replace(",", "")) > 50, store_read["note"]
    assert "answered from the store: 0 %" in owner_read["note"], owner_read["note"]
    # And by pattern: one stream, the store's part at the other agent, then the owner's.
    owner_read, store_read = figures["cluster_reads_pattern_owner"], figures["cluster_reads_pattern_store"]
    assert owner_read["value"] > 0 and store_read["value"] > 0
    share = re.search(r"answered from the store: ([0-9.,]+) %", store_read["note"])
    assert share is not None and float(share.group(1).replace(",", "")) > 50, store_read["note"]
    assert "answered from the store: 0 %" in owner_read["note"], owner_read["note"]

    assert "## Cluster mode" in markdown
    assert "Target (DESIGN §5): failover" in markdown
    assert "| 3 | " in markdown  # the ingest table's row of 3 agents


@pytest.mark.slow
def test_the_cells_row_measures_ingest_spread_over_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SeaweedFS's gateway (the one-cell row runs on moto, the default).
    code, document, markdown = _bench(
        tmp_path, monkeypatch, "odradek-cluster", "cluster_spread", "--s3-server", "seaweedfs"
    )
    (info,) = document["systems"]
    assert info["status"] == "ok", info
    assert {"etcd", "seaweedfs", "odradek"} <= set(info["versions"]) and "moto" not in info["versions"]
    assert "SeaweedFS's S3 gateway" in info["tuning"] and "SeaweedFS" in info["durability"]
    figures = {f["metric"]: f for f in document["figures"]}
    assert code == 0, [f for f in figures.values() if f["status"] != "ok"]
    assert set(figures) == {f"cluster_spread_{count}" for count in (1, 2, 3)}  # no one-cell cluster ran
    for count in (1, 2, 3):
        figure = figures[f"cluster_spread_{count}"]
        assert figure["status"] == "ok" and figure["value"] > 0 and len(figure["runs"]) == TINY.runs
        note = figure["note"]
        # The six topics, each in the cell the agent answering for it serves, every cell
        # holding some (created one after another they go round the cells; an agent's
        # view of another's placement may lag, so not asserted here).
        found = re.search(r"to 6 topics \((.+?)\), a client", note)
        assert found is not None, note
        cells = dict(part.split(": ") for part in found.group(1).split("; "))
        assert set(cells) == {"_cell", "_cell.1", "_cell.2"}, note
        numbers = [n for topics in cells.values() for n in topics.split(" ", 1)[1].split(", ")]
        assert sorted(numbers) == [str(n) for n in range(6)], note
        assert f"given the {count} running agent(s)" in note and "seaweedfs" in note and "etcd" in note
    # Every running agent served its share while measured: 3 cells on one, 2 and 1, 1 each.
    assert "the agent serving 3 cells" in figures["cluster_spread_1"]["note"]
    spread_2 = figures["cluster_spread_2"]["note"]
    assert "the agent serving 2 cells" in spread_2 and "the agent serving 1 cell " in spread_2
    assert all(f"a{n} (1 cell)" in figures["cluster_spread_3"]["note"] for n in (1, 2, 3))
    assert "topics over 3 cells" in markdown and "| 3 | " in markdown


def test_cells_spread_evenly_only_when_every_cell_is_served_once() -> None:
    assert fair_shares(3, 1) == [3] and fair_shares(3, 2) == [2, 1] and fair_shares(3, 3) == [1, 1, 1]
    assert fair_shares(3, 4) == [1, 1, 1, 0]
    assert balanced({"a1": ["_cell", "_cell.1"], "a2": ["_cell.2"]}, 3)
    assert balanced({"a1": ["_cell", "_cell.1", "_cell.2"]}, 3)
    assert not balanced({"a1": ["_cell", "_cell.1", "_cell.2"], "a2": []}, 3)  # a2 not given its share
    assert not balanced({"a1": ["_cell"], "a2": ["_cell.2"]}, 3)  # _cell.1 served by none
    assert not balanced({"a1": ["_cell", "_cell.1"], "a2": ["_cell.1"]}, 3)  # _cell.1 twice, _cell.2 none
    assert not balanced({}, 3)
    status = {
        "cells": [
            {"cell": "_cell", "owner": "a1", "serving": True},
            {"cell": "_cell.1", "owner": "a2", "serving": False},
            {"cell": "_cell.2", "owner": "a1", "serving": True},
        ]
    }
    assert served_cells(status) == ["_cell", "_cell.2"] and served_cells({"role": "owner"}) == []


def test_cluster_workloads_are_skipped_on_other_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, document, markdown = _bench(tmp_path, monkeypatch, "odradek", "cluster_etcd")
    assert code == 0
    expected = {metric.name for metric in cluster_workloads.metrics_of("cluster_etcd")}
    figures = [f for f in document["figures"] if f["system"] == "odradek"]
    assert {f["metric"] for f in figures} == expected
    for figure in figures:
        assert figure["status"] == "skipped" and "odradek-cluster" in figure["note"], figure
    assert "## Cluster mode" not in markdown


def test_cluster_names_are_taken_only_when_named() -> None:
    parsed = options.parse([])
    assert "odradek-cluster" not in parsed.systems
    assert not set(options.CLUSTER_WORKLOADS) & set(parsed.workloads)
    named = options.parse(
        ["--systems", "odradek-cluster", "--workloads", ",".join(options.CLUSTER_WORKLOADS)]
    )
    assert named.systems == ("odradek-cluster",)
    assert named.workloads == options.CLUSTER_WORKLOADS
    assert parsed.profile.s3_server == "moto"
    assert options.parse(["--s3-server", "seaweedfs"]).profile.s3_server == "seaweedfs"
    with pytest.raises(SystemExit):
        options.parse(["--s3-server", "minio"])


LEASE, KV, WATCH = "etcdserverpb.Lease", "etcdserverpb.KV", "etcdserverpb.Watch"


def _sample(name: str, service: str, method: str, value: int, code: str | None = None) -> str:
    labels = f'grpc_method="{method}",grpc_service="{service}",grpc_type="unary"'
    if code is not None:
        labels = f'grpc_code="{code}",{labels}'
    return f"{name}{{{labels}}} {value}"


def _member(
    keepalives: int = 0,
    ranges: int = 0,
    txns: int = 0,
    puts: int = 0,
    watches: int = 0,
    events: int = 0,
    streams: int = 0,
    closed: int = 0,
    proposals: int = 0,
) -> dict[str, float]:
    """One member's counters as etcd 3.4 exposes them (every name etcd gives, only the
    series this workload reads)."""
    received = "grpc_server_msg_received_total"
    handled = "grpc_server_handled_total"
    lines = [
        f"# TYPE {received} counter",
        _sample(received, LEASE, "LeaseKeepAlive", keepalives),
        _sample(received, KV, "Range", ranges),
        _sample(received, KV, "Txn", txns),
        _sample(received, KV, "Put", puts),
        _sample(received, WATCH, "Watch", watches),
        "# TYPE grpc_server_msg_sent_total counter",
        _sample("grpc_server_msg_sent_total", WATCH, "Watch", events),
        "# TYPE grpc_server_started_total counter",
        _sample("grpc_server_started_total", WATCH, "Watch", streams),
        f"# TYPE {handled} counter",
        _sample(handled, WATCH, "Watch", closed, code="OK"),
        _sample(handled, WATCH, "Watch", 1, code="Canceled"),
        "# TYPE etcd_server_proposals_committed_total gauge",
        f"etcd_server_proposals_committed_total {proposals}",
    ]
    return parse_counters("\n".join(lines) + "\n")


def test_etcd_counters_become_requests_per_agent_per_second() -> None:
    # Two members over 10 s and 2 agents: keepalives and ranges reach either member,
    # proposals are counted by each member alike.
    before = [_member(keepalives=100, proposals=50, streams=3, closed=0), _member(keepalives=7, proposals=50)]
    after = [
        _member(
            keepalives=130, ranges=4, txns=2, puts=2, watches=1, events=3, streams=4, closed=1, proposals=60
        ),
        _member(keepalives=17, ranges=6, proposals=60, streams=3),
    ]
    load = etcd_load_between(before, after, seconds=10.0, agents=2)
    per = 1 / 20
    assert load.rates["keepalives"] == pytest.approx(40 * per)
    assert load.rates["ranges"] == pytest.approx(10 * per)
    assert load.rates["txns"] == pytest.approx(2 * per)
    assert load.rates["watch"] == pytest.approx(4 * per)  # 1 request in, 3 events out
    assert load.rates["requests"] == pytest.approx((40 + 10 + 2 + 2 + 1) * per)
    assert load.rates["proposals"] == pytest.approx(10 * per)
    assert load.others == {"etcdserverpb.KV/Put": pytest.approx(2 * per)}
    # Open watch streams at the end: started minus handled (every code), per agent.
    assert load.watch_streams == pytest.approx(((4 - 1 - 1) + (3 - 0 - 1)) / 2)


def test_the_failover_window_holds_the_appends_in_flight_across_it() -> None:
    # Kill at 10, serving again at 14: an append counts if it was scheduled by 14 and
    # answered after 10 (in flight at some moment of [10, 14]), and succeeded.
    scheduled = np.array([1.0, 9.0, 9.5, 12.0, 14.0, 14.5, 13.0])
    answered = np.array([2.0, 9.9, 14.1, 14.2, 14.3, 14.6, 14.4])
    ok = np.array([True, True, True, True, True, True, False])
    latencies = in_flight_across(scheduled, answered, ok, killed_at=10.0, recovered_at=14.0)
    assert latencies.tolist() == pytest.approx([4.6, 2.2, 0.3])
