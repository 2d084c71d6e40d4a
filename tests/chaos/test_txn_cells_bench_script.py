"""scripts/kafka_txn_cells_bench.py, run small: the figures docs/cluster.md quotes come
from it, so it must keep working.

Goal: against a real three-agent cluster with ``--cells 3`` (SeaweedFS as the store),
the script creates a topic in each cell, runs both phases (the home cell's topic; a
topic in every cell) and prints each phase's figures as JSON, every figure a positive
number; impossible arguments are refused before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from short_runs import skip_without_cluster_mode

SCRIPT = Path(__file__).parents[2] / "scripts" / "kafka_txn_cells_bench.py"


@pytest.mark.timeout(300)
def test_the_script_measures_both_phases() -> None:
    skip_without_cluster_mode()
    command = [
        sys.executable,
        str(SCRIPT),
        "--transactions",
        "2",
        "--transaction-records",
        "20",
        "--rounds",
        "1",
        "--json",
    ]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    assert answer.returncode == 0, answer.stderr[-3000:]
    figures = json.loads(answer.stdout)
    for label in ("home", "cells"):
        (run,) = figures["rounds"][label]
        assert run["p50_ms"] > 0 and run["max_ms"] >= run["p50_ms"] and run["records_per_second"] > 0
        assert figures["median"][label]["records_per_second"] == run["records_per_second"]


def test_the_script_refuses_impossible_arguments() -> None:
    command = [sys.executable, str(SCRIPT), "--rounds", "0"]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert answer.returncode == 2 and "at least 1" in answer.stderr
