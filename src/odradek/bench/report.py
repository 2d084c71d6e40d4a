"""The results as JSON (everything, every run) and as a Markdown page (the table).

The Markdown is rendered from the JSON document alone, so a saved ``results.json``
can be rendered again. Two derived columns:

* *Odradek ÷ this*: how many times better Odradek's figure is than this row's (its
  throughput over theirs; for latencies, their time over Odradek's). Above 1 Odradek
  is ahead. Computed against Odradek embedded and, when it ran, the native door.
* *% of limit*: the row's payload bandwidth (value bytes) as a share of the machine's
  limit for that kind of work: fsync'd 8 MiB sequential writes for ingest, loopback TCP
  for reads that cross a socket. In-process reads have no such limit (—).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from odradek.bench import cluster_report, cluster_workloads, store_report
from odradek.bench.limits_probe import Limit
from odradek.bench.options import Options
from odradek.bench.results import OK, SCHEMA, Figure, SystemInfo
from odradek.bench.units import format_value
from odradek.bench.workloads import METRICS

REFERENCES = ("odradek", "odradek-remote")
# Every metric a document may hold: the common and store ones, then cluster mode's.
ALL_METRICS = (*METRICS, *cluster_workloads.METRICS)
JSON_NAME = "results.json"
MARKDOWN_NAME = "results.md"


def build(
    options: Options,
    facts: dict[str, Any],
    limits: list[Limit],
    infos: list[SystemInfo],
    figures: list[Figure],
    started_at: datetime.datetime,
    finished_at: datetime.datetime,
) -> dict[str, Any]:
    limit_values = {limit.name: limit.value for limit in limits}
    networked = {info.name: info.networked for info in infos}
    rows = [_figure_row(figure, figures, limit_values, networked) for figure in figures]
    return {
        "schema": SCHEMA,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "duration_seconds": round((finished_at - started_at).total_seconds(), 1),
        "profile": dataclasses.asdict(options.profile),
        "systems_requested": list(options.systems),
        "workloads_requested": list(options.workloads),
        "machine": facts,
        "limits": [dataclasses.asdict(limit) for limit in limits],
        "metrics": [
            dataclasses.asdict(metric) for metric in ALL_METRICS if metric.workload in options.workloads
        ],
        "systems": [dataclasses.asdict(info) for info in infos],
        "figures": rows,
    }


def _figure_row(
    figure: Figure, figures: list[Figure], limits: dict[str, float], networked: dict[str, bool]
) -> dict[str, Any]:
    metric = next(m for m in ALL_METRICS if m.name == figure.metric)
    row = figure.to_json()
    row["odradek_advantage"] = {}
    if figure.status == OK and figure.value and not figure.system.startswith("odradek"):
        for reference in REFERENCES:
            ours = next(
                (
                    f
                    for f in figures
                    if f.system == reference and f.metric == figure.metric and f.status == OK and f.value
                ),
                None,
            )
            if ours is not None and ours.value is not None:
                ratio = ours.value / figure.value if metric.higher_is_better else figure.value / ours.value
                row["odradek_advantage"][reference] = ratio
    row["percent_of_limit"] = None
    applies = metric.limit is not None and (not metric.limit_networked_only or networked.get(figure.system))
    if applies and metric.limit in limits and figure.payload_mib_per_second is not None:
        row["percent_of_limit"] = 100.0 * figure.payload_mib_per_second / limits[metric.limit]
    return row


def write(out: Path, document: dict[str, Any]) -> list[Path]:
    json_path = out / JSON_NAME
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    markdown_path = out / MARKDOWN_NAME
    markdown_path.write_text(render_markdown(document))
    return [json_path, markdown_path]


def render_markdown(document: dict[str, Any]) -> str:
    lines = [f"# Odradek benchmark, {document['started_at'][:10]}", ""]
    lines += _header(document)
    lines += ["", "## Limits of this machine", "", "| limit | median | unit | runs |", "|---|---:|---|---|"]
    for limit in document["limits"]:
        runs = ", ".join(format_value(value) for value in limit["runs"])
        lines.append(f"| {limit['title']} | {format_value(limit['value'])} | {limit['unit']} | {runs} |")
    lines += ["", "## Results", ""]
    lines += results_table(document)
    lines += store_report.comparison(document)
    lines += cluster_report.section(document)
    lines += [
        "",
        "## Systems",
        "",
        "| system | durability of an acked write | versions | tuned |",
        "|---|---|---|---|",
    ]
    for info in document["systems"]:
        versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items()) or "—"
        status = "" if info["status"] == OK else f" **{info['status']}**: {info['note']}"
        lines.append(
            f"| {info['title']} (`{info['name']}`){status} | {info['durability']} | "
            f"{versions} | {info['tuning']} |"
        )
    lines += _row_notes(document)
    notes = [f for f in document["figures"] if f["status"] != OK and f["note"]]
    if notes:
        lines += ["", "## Missing figures", ""]
        seen: set[tuple[str, str]] = set()
        for figure in notes:
            if (figure["system"], figure["note"]) not in seen:
                seen.add((figure["system"], figure["note"]))
                lines.append(f"- `{figure['system']}` ({figure['status']}): {figure['note']}")
    return "\n".join(lines) + "\n"


def _row_notes(document: dict[str, Any]) -> list[str]:
    """Notes of measured rows (achieved rates, shortened runs), once per system and note."""
    titles = {info["name"]: info["title"] for info in document["systems"]}
    workloads = {metric["name"]: metric["workload"] for metric in document["metrics"]}
    seen: set[tuple[str, str, str]] = set()
    lines: list[str] = []
    for figure in document["figures"]:
        key = (workloads[figure["metric"]], figure["system"], figure["note"])
        if figure["status"] == OK and figure["note"] and key not in seen:
            seen.add(key)
            lines.append(f"- {key[0]}, {titles[figure['system']]}: {figure['note']}")
    return ["", "## Notes on measured rows", "", *lines] if lines else []


def _header(document: dict[str, Any]) -> list[str]:
    facts = document["machine"]
    disk = facts["disk"]
    profile = document["profile"]
    return [
        f"- Run: {document['started_at']} to {document['finished_at']} "
        f"({document['duration_seconds']:.0f} s), profile `{profile['name']}`: each figure is the median "
        f"of {profile['runs']} runs after a warm-up run.",
        f"- Machine: {facts['cores']} cores ({facts['cpu_model']}), "
        f"{facts['memory_bytes'] / 2**30:.1f} GiB memory, {facts['os']}, Linux {facts['kernel']}; "
        f"data on {disk['device']} ({disk['filesystem']}, kernel reports it {disk['kind']}); "
        f"load average at start {', '.join(f'{x:.1f}' for x in facts['load_average_at_start'])}.",
        f"- Software: Python {facts['python']}, pyarrow {facts['pyarrow']}, odradek {facts['odradek']}.",
    ]


def results_table(document: dict[str, Any]) -> list[str]:
    """The main table: one row per (metric, system), metrics in suite order."""
    systems = {info["name"]: info for info in document["systems"]}
    metrics = {metric["name"]: metric for metric in document["metrics"]}
    references = [
        r for r in REFERENCES if any(f["system"] == r and f["status"] == OK for f in document["figures"])
    ]
    ratio_titles = [f"{'Odradek' if r == 'odradek' else 'native door'} ÷ this" for r in references]
    head = ["workload", "system", "durability", "median", "unit", *ratio_titles, "% of limit", "runs"]
    aligns = ["---", "---", "---", "---:", "---", *(["---:"] * len(references)), "---:", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(aligns) + "|"]
    for name, metric in metrics.items():
        for figure in (f for f in document["figures"] if f["metric"] == name):
            info = systems[figure["system"]]
            if figure["status"] == OK:
                value = format_value(figure["value"])
                runs = ", ".join(format_value(v) for v in figure["runs"])
            else:
                value, runs = f"*{figure['status']}*", "—"
            ratios = [_ratio(figure["odradek_advantage"].get(r)) for r in references]
            percent = figure["percent_of_limit"]
            percent_text = "—" if percent is None else f"{percent:.0f} %"
            cells = [
                metric["title"],
                info["title"],
                info["durability_label"],
                value,
                metric["unit"],
                *ratios,
                percent_text,
                runs,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{format_value(value)}x"
