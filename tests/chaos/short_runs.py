"""What the short chaos runs of the suite share: the skip when ``odradek serve`` has no
cluster mode, one run of a fixed schedule, and the checks that a run found nothing and
injected what it was told to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from odradek.chaos.cluster import ChaosSettings, report_text, run


def skip_without_cluster_mode() -> None:
    """Skip only when ``odradek serve`` has no ``--etcd`` (a build without cluster mode);
    a missing etcd binary fails, as the other cluster tests do."""
    command = [sys.executable, "-m", "odradek.cli.main", "serve", "--help"]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if "--etcd" not in answer.stdout:
        pytest.skip("odradek serve has no --etcd: cluster mode is not in this build")


def run_clean(settings: ChaosSettings, workdir: Path) -> tuple[dict[str, Any], str]:
    """Run ``settings`` (its schedule is the whole run) and check it found no anomaly,
    every fault of the schedule was injected in order and recovered from, and the races
    were run; the report and its text (with the progress lines) for further checks."""
    lines: list[str] = []
    report = run(settings, workdir, lines.append)
    text = report_text(report) + "\n" + "\n".join(lines)
    assert report["cycles"] == len(settings.schedule), text
    assert [cycle["fault"] for cycle in report["cycles_detail"]] == [kind.value for kind in settings.schedule]
    assert report["cycle_errors"] == [], text
    assert report["anomaly_count"] == 0, text
    assert report["harness"]["workers_stuck"] == 0 and report["harness"]["worker_errors"] == [], text
    assert report["valid"], text
    appends = report["operations"]["append"]
    assert appends.get("ok", 0) > 0 and appends.get("fail", 0) > 0, "the races were run"
    assert (workdir / "history.jsonl").exists() and (workdir / "report.json").exists()
    return report, text
