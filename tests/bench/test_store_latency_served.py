"""scripts/store_latency_served.py: the served agent's single-append latency (issue 13).

Goal: the script measures every append it schedules when the schedule is dealt among
several load generator processes: each run's line counts all its appends (the script
fails when a generator returns fewer latencies than it was dealt), from the processes
asked for, and the script exits cleanly.

Method: run the script as a user does (a subprocess: it starts ``odradek serve --store``
with injected latency and its generator processes), briefly, at a low rate, with two
and with one generator process. No latency is asserted: only that the runs are
reported whole.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "store_latency_served.py"


@pytest.mark.parametrize("processes", [2, 1])
def test_every_scheduled_append_is_measured(processes: int) -> None:
    runs, rate, seconds = 2, 200, 0.6
    argv = [sys.executable, str(SCRIPT), "--put-ms", "10", "--runs", str(runs), "--rate", str(rate)]
    argv += ["--seconds", str(seconds), "--processes", str(processes)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("served agent")]
    assert len(lines) == runs, done.stdout
    count = round(rate * seconds)
    for run, line in enumerate(lines, 1):
        assert f"run {run}/{runs}: {count:,} appends at {rate}/s from {processes} process(es)" in line
        p50, p99 = (float(value) for value in re.findall(r"p(?:50|99) ([\d.]+) ms", line)[:2])
        assert 0 < p50 <= p99
