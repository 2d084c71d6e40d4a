"""The derived-state rows of ``odradek bench`` (issue 17's measurements).

Goal: ``compaction``, ``snapshot_replay`` and ``sync_commit`` give every figure the issue
asks for on Odradek's rows, each explained by a note: the compaction round's rate (held
as the server holds it, and unthrottled) with the append p50/p99 of the same run with
and without a round running; ``read_key`` of a key from its snapshot and in full; the
append with and without ``wait_for`` a view, embedded and through the native door. The
forced round through the engine is the embedded row's only: the native door's row says
it is skipped, and why.

Method: run the bench's entry point in this process with ``--quick --runs 1`` into a
temporary directory and read results.json and results.md back. No speed is asserted:
only that each figure exists, is positive and says what it measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from odradek.bench import runner, state_workloads


@pytest.mark.slow
def test_state_rows_give_every_figure_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = runner.main(
        [
            "--quick",
            "--runs",
            "1",
            "--systems",
            "odradek,odradek-remote",
            "--workloads",
            ",".join(state_workloads.WORKLOADS),
            "--no-install",
            "--no-charts",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ]
    )
    document = json.loads((out / "results.json").read_text())
    assert code == 0, [f for f in document["figures"] if f["status"] == "error"]
    figures = {(f["metric"], f["system"]): f for f in document["figures"]}
    for metric in state_workloads.METRICS:
        embedded = figures[(metric.name, "odradek")]
        assert embedded["status"] == "ok", embedded
        assert embedded["value"] > 0 and embedded["note"], embedded
        remote = figures[(metric.name, "odradek-remote")]
        if metric.workload == "compaction":
            assert remote["status"] == "skipped" and "embedded" in remote["note"], remote
        else:
            assert remote["status"] == "ok" and remote["value"] > 0, remote
    assert "removed" in figures[("compaction_rate", "odradek")]["note"]
    assert "100 B values" in figures[("snapshot_read", "odradek")]["note"]
    markdown = (out / "results.md").read_text()
    for metric in state_workloads.METRICS:
        assert metric.title in markdown
