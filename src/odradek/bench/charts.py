"""PNG charts of a results document (matplotlib, Agg backend, no display needed).

One chart per metric (``charts/<metric>.png``) and one page of all of them
(``summary.png``). Bars of systems whose acked writes can be lost on a crash are
hatched; a dashed line marks the machine's limit where one applies.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from odradek.bench.results import OK
from odradek.bench.units import format_value

SUMMARY_NAME = "summary.png"
CHARTS_DIRECTORY = "charts"
# Bars span more than this factor: a log axis keeps the small ones visible.
log_scale_span = 30.0
odradek_colour = "#1f6f8b"
peer_colour = "#b0b0b0"


def write(out: Path, document: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = out / CHARTS_DIRECTORY
    directory.mkdir(exist_ok=True)
    metrics = [m for m in document["metrics"] if _bars(document, m["name"])]
    written: list[Path] = []
    for metric in metrics:
        figure, axes = plt.subplots(figsize=(7.5, 3.2))
        _draw(axes, document, metric)
        figure.tight_layout()
        path = directory / f"{metric['name']}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    if metrics:
        columns = 2
        rows = math.ceil(len(metrics) / columns)
        figure, grid = plt.subplots(rows, columns, figsize=(15, 3.2 * rows), squeeze=False)
        for index, metric in enumerate(metrics):
            _draw(grid[index // columns][index % columns], document, metric)
        for index in range(len(metrics), rows * columns):
            grid[index // columns][index % columns].axis("off")
        figure.suptitle(
            f"Odradek benchmark {document['started_at'][:10]}, "
            f"{document['machine']['cores']} cores, profile {document['profile']['name']}"
        )
        figure.tight_layout()
        path = out / SUMMARY_NAME
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def _bars(document: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [f for f in document["figures"] if f["metric"] == metric and f["status"] == OK and f["value"]]


def _draw(axes: Any, document: dict[str, Any], metric: dict[str, Any]) -> None:
    from matplotlib import ticker

    systems = {info["name"]: info for info in document["systems"]}
    bars = _bars(document, metric["name"])
    labels = [systems[f["system"]]["title"] for f in bars]
    values = [float(f["value"]) for f in bars]
    colours = [odradek_colour if systems[f["system"]]["is_odradek"] else peer_colour for f in bars]
    hatches = ["//" if systems[f["system"]]["weaker_durability"] else "" for f in bars]
    positions = list(range(len(bars)))
    drawn = axes.barh(positions, values, color=colours, edgecolor="black", linewidth=0.5)
    for patch, hatch in zip(drawn, hatches, strict=True):
        patch.set_hatch(hatch)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    if max(values) / min(values) > log_scale_span:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _position: format_value(value)))
        axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    for position, value in zip(positions, values, strict=True):
        axes.text(value, position, f" {format_value(value)}", va="center", fontsize=8)
    better = "higher is better" if metric["higher_is_better"] else "lower is better"
    axes.set_title(f"{metric['title']} ({metric['unit']}, {better})", fontsize=10)
    axes.set_xlim(right=max(values) * (4.0 if axes.get_xscale() == "log" else 1.25))
    if metric["name"] == "ingest_64k":
        limit = next((lim for lim in document["limits"] if lim["name"] == metric["limit"]), None)
        if limit is not None:
            axes.axvline(
                limit["value"],
                color="red",
                linestyle="--",
                linewidth=1,
                label=f"fsync'd 8 MiB writes: {format_value(limit['value'])} MiB/s",
            )
            axes.legend(loc="lower right", fontsize=8)
            axes.set_xlim(right=max(max(values), limit["value"]) * 1.25)
