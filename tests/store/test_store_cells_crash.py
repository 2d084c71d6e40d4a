"""Crash test of moves between cells: `kill -9` inside them never loses an
acknowledged record nor serves the topic twice.

Goal: test_store_crash.py's guarantee (every acknowledged append present at its offsets,
offsets dense, key versions contiguous, a retry with its producer sequence written
exactly once) while the writer moves its topic between two cells of one store at random
between appends (decision 0031: release in one, adopt by reference in the other), so
kills land inside releases, claims, adoptions and their checkpoints. After each kill
both caches are deleted and both cells start again (each resolving what it finds); the
topic must then be served by exactly one cell, or be released and adoptable by one.

Method: test_crash.py's writer loop with store_cells_writer.py as the writer, on a
directory store. ``ODRADEK_STORE_CELLS_CRASH_CYCLES`` cycles (default 20).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest
import store_cells_writer
import test_store_crash

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import test_crash

WRITER = Path(__file__).with_name("store_cells_writer.py")
CYCLES = int(os.environ.get("ODRADEK_STORE_CELLS_CRASH_CYCLES", "20"))


@pytest.mark.slow
def test_sigkill_inside_moves_between_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"file://{tmp_path / 'store'}"
    monkeypatch.setattr(test_crash, "WRITER", WRITER)
    monkeypatch.setenv("ODRADEK_CRASH_STORE", url)
    data_dir = tmp_path / "cache"
    rng = random.Random(int(os.environ.get("ODRADEK_CRASH_SEED", "4321")))
    acks: dict[int, dict] = {}
    next_sequence = 0
    for cycle in range(cycles := CYCLES):
        for ack in test_crash.run_writer_until_killed(data_dir, next_sequence, rng.randrange(1 << 30), rng):
            acks[ack["seq"]] = ack
        shutil.rmtree(data_dir)
        cells = store_cells_writer.open_cells(str(data_dir), url)
        try:
            serving = [client for client, _ in cells if test_crash.TOPIC in client.list_topics()]
            assert len(serving) == 1, f"cycle {cycle}: the topic is served by {len(serving)} cells"
            client = serving[0]
            next_sequence = test_store_crash.check_and_retry(client, acks, tmp_path / "intent.json")
        finally:
            for opened, _ in cells:
                opened.close()
    steps = (tmp_path / "handoffs.log").read_text().split()
    done, cut = steps.count("done"), steps.count("begun") - steps.count("done")
    print(f"{cycles} kills; {done} moves between cells completed, {cut} cut by a kill")
    assert len(acks) > cycles and done >= cycles, "the writer did too little to prove anything"
