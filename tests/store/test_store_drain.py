"""Failover by draining (decision 0031, step 4, at the engine's level): a cell whose
writer was killed is attached by another engine, which releases all its topics at once,
and a live cell adopts them all at once; nothing acknowledged is lost.

Goal: the takeover that a cluster does when an agent dies, built from the engine's own
operations: ``Engine(dead cell)`` (claims its store's next epoch, fencing the killed
writer, and replays its journal), ``release_topics`` of every topic (two checkpoints),
``adopt_topics(..., source=dead cell)`` on the live cell (one checkpoint, nothing
copied). After each kill every acknowledged append is present at its offsets on the
live cell, offsets dense, key versions contiguous, a retry with its producer sequence
written once; then the topic is moved back for the writer's next cycle.

Method: test_crash.py's writer (store_crash_writer.py) on cell ``cells/a`` of a
directory store, killed at a random moment; ``ODRADEK_STORE_DRAIN_CYCLES`` cycles
(default 10).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest
import test_store_crash

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import test_crash

import odradek
from odradek.storage.agent import StoreSettings
from odradek.storage.objects import open_store

CYCLES = int(os.environ.get("ODRADEK_STORE_DRAIN_CYCLES", "10"))
SETTINGS = StoreSettings(flush_seconds=0.002)


@pytest.mark.slow
def test_a_killed_cell_is_drained_into_a_live_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = open_store(f"file://{tmp_path / 'store'}")
    cell_a, cell_b = root.child("cells/a"), root.child("cells/b")
    monkeypatch.setattr(test_crash, "WRITER", test_store_crash.WRITER)
    monkeypatch.setenv("ODRADEK_CRASH_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("ODRADEK_CRASH_STORE_CELL", "cells/a")
    data_dir = tmp_path / "cache"
    rng = random.Random(int(os.environ.get("ODRADEK_CRASH_SEED", "2468")))
    acks: dict[int, dict] = {}
    takeovers: list[float] = []
    next_sequence = 0
    live = odradek.open(
        tmp_path / "live", store=cell_b, store_settings=SETTINGS, retention_check_seconds=3600
    )
    try:
        for cycle in range(CYCLES):
            for ack in test_crash.run_writer_until_killed(
                data_dir, next_sequence, rng.randrange(1 << 30), rng
            ):
                acks[ack["seq"]] = ack
            shutil.rmtree(data_dir)
            # The takeover: attach the dead cell beside, release everything, adopt it all.
            started = time.monotonic()
            with tempfile.TemporaryDirectory(dir=tmp_path) as side_dir:
                with odradek.open(side_dir, store=cell_a, store_settings=SETTINGS) as side:
                    names = side.list_topics()
                    assert names == [test_crash.TOPIC], f"cycle {cycle}: the dead cell held {names}"
                    side.engine.release_topics(names)
            live.engine.adopt_topics(names, source=cell_a)
            takeovers.append(time.monotonic() - started)
            next_sequence = test_store_crash.check_and_retry(live, acks, tmp_path / "intent.json")
            # Back to cell a for the writer's next cycle.
            live.engine.release_topics(names)
            with tempfile.TemporaryDirectory(dir=tmp_path) as side_dir:
                with odradek.open(side_dir, store=cell_a, store_settings=SETTINGS) as side:
                    side.engine.adopt_topics(names, source=cell_b)
    finally:
        live.close()
    takeovers.sort()
    print(
        f"{CYCLES} drains: attach + release + adopt took {statistics.median(takeovers):.3f} s median, "
        f"{takeovers[-1]:.3f} s at most"
    )
    assert len(acks) > CYCLES, "the writer acknowledged too little to prove anything"
