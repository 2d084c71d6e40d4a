"""The object-store rows beside the directory row, for results.md: one line per figure,
one column per system, each store figure also as a multiple of the directory's, and the
targets of DESIGN §5 checked against the injected-latency rows.

Rendered from the JSON document alone (like report.py), and only when a store row ran.
"""

from __future__ import annotations

from typing import Any

from odradek.bench.results import OK
from odradek.bench.units import format_value

DIRECTORY = "odradek"
#: The store rows, in column order, and the PUT latency each injects (None: no injection).
STORE_ROWS = {"odradek-store": None, "odradek-store-10ms": 0.010, "odradek-store-60ms": 0.060}
# DESIGN §5: an agent at 60 ms per PUT ingests >= 500k records/s of 100 B, and a
# single append's p99 is at most the injected PUT latency + 30 ms.
ingest_target_records_per_second = 500_000
ingest_target_put_seconds = 0.060
produce_p99_margin_seconds = 0.030


def comparison(document: dict[str, Any]) -> list[str]:
    """The section's Markdown lines; [] when no store row is in the document."""
    names = [info["name"] for info in document["systems"]]
    stores = [name for name in STORE_ROWS if name in names]
    if not stores:
        return []
    titles = {info["name"]: info["title"] for info in document["systems"]}
    columns = ([DIRECTORY] if DIRECTORY in names else []) + stores
    figures = {(f["metric"], f["system"]): f for f in document["figures"]}
    lines = [
        "",
        "## Object storage against the directory backend",
        "",
        "Each store figure is followed by its multiple of the directory row's (x dir.).",
        "",
        "| figure | unit | " + " | ".join(f"{titles[n]} (`{n}`)" for n in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for metric in document["metrics"]:
        cells = [
            _cell(figures.get((metric["name"], name)), figures.get((metric["name"], DIRECTORY)), name)
            for name in columns
        ]
        if any(cell != "—" for cell in cells[len(columns) - len(stores) :]):
            lines.append(f"| {metric['title']} | {metric['unit']} | " + " | ".join(cells) + " |")
    lines += _targets(figures, stores)
    return lines


def _cell(figure: dict[str, Any] | None, directory: dict[str, Any] | None, system: str) -> str:
    if figure is None:
        return "—"
    if figure["status"] != OK or figure["value"] is None:
        return f"*{figure['status']}*"
    text = format_value(figure["value"])
    if system != DIRECTORY and directory is not None and directory["status"] == OK and directory["value"]:
        text += f" ({format_value(figure['value'] / directory['value'])}x dir.)"
    return text


def _targets(figures: dict[tuple[str, str], dict[str, Any]], stores: list[str]) -> list[str]:
    lines: list[str] = []
    for name in stores:
        put_seconds = STORE_ROWS[name]
        if put_seconds is None:
            continue
        if put_seconds == ingest_target_put_seconds:
            ingest = figures.get(("ingest_100b", name))
            if ingest is not None and ingest["status"] == OK:
                lines.append(
                    _verdict(
                        f"`{name}` keyed ingest",
                        ingest["value"],
                        "records/s",
                        f">= {ingest_target_records_per_second:,}",
                        ingest["value"] >= ingest_target_records_per_second,
                    )
                )
        p99 = figures.get(("append_latency_p99", name))
        if p99 is not None and p99["status"] == OK:
            bound_ms = (put_seconds + produce_p99_margin_seconds) * 1000
            lines.append(
                _verdict(
                    f"`{name}` single-append p99",
                    p99["value"],
                    "ms",
                    f"<= {format_value(bound_ms)} (PUT latency + 30 ms)",
                    p99["value"] <= bound_ms,
                )
            )
    return ["", "Targets (DESIGN §5):", "", *lines] if lines else []


def _verdict(what: str, value: float, unit: str, target: str, met: bool) -> str:
    return f"- {what}: {format_value(value)} {unit}, target {target}: {'met' if met else '**not met**'}"
