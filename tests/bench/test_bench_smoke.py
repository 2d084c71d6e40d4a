"""Smoke test of ``odradek bench``.

Goal: the benchmark suite runs end to end and produces well-formed results: the JSON
document, the Markdown table and the PNG charts, with every Odradek row present.

Method: run ``python -m odradek.bench --quick`` in a subprocess into a temporary
directory, the way a developer would, with ``--no-install`` so the test never installs
packages (a peer whose server is missing must then be skipped with a note, not crash
the suite). Then check the shape of what was written. Never a speed assertion: the
figures depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ODRADEK_STATUSES = {"ok", "not yet available"}
PEER_STATUSES = {"ok", "skipped", "not yet available"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "odradek.bench",
            "--quick",
            "--no-install",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "[bench" in completed.stderr  # progress lines go to stderr

    document = json.loads((out / "results.json").read_text())
    assert document["schema"] == "odradek-bench/1"
    assert document["profile"]["name"] == "quick"
    assert document["machine"]["cores"] >= 1
    assert {limit["name"] for limit in document["limits"]} >= {
        "fsync_write_8mib",
        "fsync_write_1mib",
        "loopback_tcp",
    }
    for limit in document["limits"]:
        assert limit["value"] > 0 and len(limit["runs"]) == document["profile"]["runs"]

    metrics = {metric["name"] for metric in document["metrics"]}
    systems = {info["name"]: info for info in document["systems"]}
    assert "odradek" in systems and systems["odradek"]["status"] == "ok"
    for info in systems.values():
        assert info["durability"] and info["durability_label"]
        if info["status"] != "ok":
            assert info["note"], f"{info['name']} is {info['status']} without saying why"

    figures = document["figures"]
    assert {(f["metric"], f["system"]) for f in figures} == {(m, s) for m in metrics for s in systems}
    for figure in figures:
        allowed = ODRADEK_STATUSES if figure["system"] == "odradek" else PEER_STATUSES
        assert figure["status"] in allowed, figure
        if figure["status"] == "ok":
            assert figure["value"] > 0
            assert len(figure["runs"]) == document["profile"]["runs"]
        else:
            assert figure["note"]
    odradek_ok = {f["metric"] for f in figures if f["system"] == "odradek" and f["status"] == "ok"}
    assert odradek_ok >= metrics - {"consumer_group"}

    markdown = (out / "results.md").read_text()
    assert "| workload | system | durability | median |" in markdown
    assert "| Keyed ingest, 100 B values | Odradek embedded |" in markdown
    assert "% of limit" in markdown

    summary = out / "summary.png"
    assert summary.read_bytes()[:8] == PNG_MAGIC
    charts = sorted((out / "charts").glob("*.png"))
    assert charts and all(chart.read_bytes()[:8] == PNG_MAGIC for chart in charts)
