"""Cluster mode's figures for results.md, grouped the way the issue asks for them:
failover and handover times, produce latency steady and across a failover, ingest with
1, 2 and 3 agents (one owner; and the topics spread over three cells), and etcd's load
per agent; then DESIGN §5's failover target.

Rendered from the JSON document alone (like report.py), and only when the cluster row
is in it. How each figure was measured is in its note ("Notes on measured rows").
"""

from __future__ import annotations

from typing import Any

from odradek.bench.cluster_harness import SYSTEM
from odradek.bench.cluster_workloads import ingest_agents, spread_agents, spread_cells
from odradek.bench.results import OK
from odradek.bench.units import format_value

# DESIGN §5: the owner killed, the first acknowledged append on the new owner within 5 s.
failover_target_seconds = 5.0
ETCD_ROWS = (
    ("requests", "all requests (every gRPC message received)"),
    ("keepalives", "lease keepalives"),
    ("ranges", "range"),
    ("txns", "txn"),
    ("watch", "watch stream messages (both ways)"),
    ("proposals", "raft proposals committed"),
)
Figures = dict[str, dict[str, Any]]


def section(document: dict[str, Any]) -> list[str]:
    """The section's Markdown lines; [] when the cluster row is not in the document."""
    if not any(info["name"] == SYSTEM for info in document["systems"]):
        return []
    figures: Figures = {f["metric"]: f for f in document["figures"] if f["system"] == SYSTEM}
    lines = [
        "",
        "## Cluster mode",
        "",
        f"Three agents (`{SYSTEM}`): one owner serves all the data, the standbys redirect to it "
        f"(with `--cells {spread_cells}`, `cluster_spread`: each agent serves the topics of its cells). "
        "Each figure's method is in its note below.",
    ]
    if "cluster_failover_p50" in figures:
        lines += [
            "",
            "| failover: fault to the first append answered by another agent | p50 | p99 | max | count |",
            "|---|---:|---:|---:|---:|",
            _row("owner killed (kill -9), s", figures, "cluster_failover", ("p50", "p99", "max")),
            _row(
                "owner stopped (SIGTERM, a handover), s", figures, "cluster_handover", ("p50", "p99", "max")
            ),
            "",
            f"Idempotent appends that failed across them: {_count(figures, 'cluster_failover_errors')}.",
        ]
    if "cluster_produce_p50" in figures:
        lines += [
            "",
            "| single appends, open loop | p50 | p99 | max | count |",
            "|---|---:|---:|---:|---:|",
            _row("steady state, ms", figures, "cluster_produce", ("p50", "p99", "max")),
            _row(
                "in flight across a kill -9 failover, ms",
                figures,
                "cluster_produce_failover",
                ("p50", "p99", "max"),
            ),
            "",
            f"Appends that failed: {_count(figures, 'cluster_produce_errors')}.",
        ]
    if any(f"cluster_ingest_{count}" in figures for count in ingest_agents):
        lines += _ingest(figures)
    if any(f"cluster_spread_{count}" in figures for count in spread_agents):
        lines += _spread(figures)
    if "cluster_etcd_requests_idle" in figures:
        lines += [
            "",
            "| etcd, per agent per second | agents idle | appends running |",
            "|---|---:|---:|",
            *(
                f"| {title} | {_value(figures, f'cluster_etcd_{kind}_idle')} | "
                f"{_value(figures, f'cluster_etcd_{kind}_busy')} |"
                for kind, title in ETCD_ROWS
            ),
            f"| watch streams open per agent | {_value(figures, 'cluster_etcd_watch_streams')} | |",
        ]
    lines += _target(figures)
    return lines


def _scaling(figures: Figures, prefix: str, counts: tuple[int, ...], title: str) -> list[str]:
    """A table of records/s by agents running, each against the figure of 1 agent."""
    one = figures.get(f"{prefix}_1")
    base = one["value"] if one is not None and one["status"] == OK and one["value"] else None
    lines = ["", f"| {title} | records/s | x 1 agent |", "|---|---:|---:|"]
    for count in sorted(counts):
        figure = figures.get(f"{prefix}_{count}")
        ratio = "—"
        if figure is not None and figure["status"] == OK and base:
            ratio = f"{format_value(figure['value'] / base)}x"
        lines.append(f"| {count} | {_value(figures, f'{prefix}_{count}')} | {ratio} |")
    return lines


def _ingest(figures: Figures) -> list[str]:
    lines = _scaling(figures, "cluster_ingest", ingest_agents, "aggregate ingest, agents running")
    lines += [
        "",
        "In this version one owner serves everything: agents beyond it add availability, not "
        "throughput, and the figure shows what standbys cost.",
    ]
    return lines


def _spread(figures: Figures) -> list[str]:
    title = f"aggregate ingest, topics over {spread_cells} cells, agents running"
    lines = _scaling(figures, "cluster_spread", spread_agents, title)
    lines += [
        "",
        f"A cluster of its own with `--cells {spread_cells}`: the topics spread over the cells, the "
        "cells over the agents running; the notes say where each topic went and what used the cores.",
    ]
    return lines


def _row(title: str, figures: Figures, prefix: str, columns: tuple[str, ...]) -> str:
    cells = [_value(figures, f"{prefix}_{column}") for column in columns]
    first = figures.get(f"{prefix}_{columns[0]}")
    count = str(len(first["runs"])) if first is not None and first["status"] == OK else "—"
    if prefix == "cluster_produce":
        count = "—"  # runs of steady appends, not samples: the note gives the rate
    return f"| {title} | " + " | ".join(cells) + f" | {count} |"


def _value(figures: Figures, metric: str) -> str:
    figure = figures.get(metric)
    if figure is None:
        return "—"
    if figure["status"] != OK or figure["value"] is None:
        return f"*{figure['status']}*"
    return format_value(figure["value"])


def _count(figures: Figures, metric: str) -> str:
    figure = figures.get(metric)
    if figure is None or figure["status"] != OK or figure["value"] is None:
        return _value(figures, metric)
    return f"{int(figure['value']):,}"


def _target(figures: Figures) -> list[str]:
    p99, largest = figures.get("cluster_failover_p99"), figures.get("cluster_failover_max")
    if p99 is None or largest is None or p99["status"] != OK or largest["status"] != OK:
        return []
    met = largest["value"] <= failover_target_seconds
    target, high, top = (format_value(v) for v in (failover_target_seconds, p99["value"], largest["value"]))
    return [
        "",
        f"Target (DESIGN §5): failover <= {target} s to the first acknowledged append on the new owner: "
        f"p99 {high} s, max {top} s over {len(largest['runs'])} kills: {'met' if met else '**not met**'}.",
    ]
