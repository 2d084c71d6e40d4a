"""scripts/cells_group_bench.py, run small: the figures the docs quote come from it,
so it must keep working.

Goal: against a real three-agent cluster with ``--cells 3`` (SeaweedFS as the store),
the script creates a topic in each cell, runs both phases (a group of one topic; a
group of a pattern matching the three, through one agent) and prints each phase's
figures as JSON, every figure a positive number; impossible arguments are refused
before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from short_runs import skip_without_cluster_mode

SCRIPT = Path(__file__).parents[2] / "scripts" / "cells_group_bench.py"


@pytest.mark.timeout(300)
def test_the_script_measures_both_phases() -> None:
    skip_without_cluster_mode()
    command = [sys.executable, str(SCRIPT), "--records", "5", "--rate", "20", "--burst", "300", "--json"]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    assert answer.returncode == 0, answer.stderr[-3000:]
    figures = json.loads(answer.stdout)
    assert set(figures) == {"one-topic", "pattern"}
    for label in ("one-topic", "pattern"):
        run = figures[label]
        assert run["count"] == 5
        assert all(isinstance(value, (int, float)) and value > 0 for value in run.values()), run
        assert run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], run


def test_the_script_refuses_impossible_arguments() -> None:
    for arguments in (["--records", "0"], ["--burst", "0"], ["--rate", "0"]):
        command = [sys.executable, str(SCRIPT), *arguments]
        answer = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert answer.returncode == 2 and "at least 1" in answer.stderr, arguments
