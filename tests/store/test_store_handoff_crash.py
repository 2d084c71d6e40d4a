"""Crash test of releases and adoptions: `kill -9` inside them never loses an
acknowledged record.

Goal: the guarantee of test_store_crash.py (every acknowledged append present at its
offsets, offsets dense, key versions contiguous, a retry with its producer sequence
written exactly once) while the writer releases its topic to the store and adopts it
again at random between appends (decision 0030, step 1), so that kills land inside a
release (before, during or after its checkpoint and handoff) and inside an adoption.
After each kill the cache is deleted and a new engine attaches; if the topic is
released it is adopted, then checked.

Method: test_store_crash.py's cycles with store_handoff_writer.py as the writer.
``ODRADEK_STORE_HANDOFF_CRASH_CYCLES`` cycles (default 20) on a directory store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_store_crash

WRITER = Path(__file__).with_name("store_handoff_writer.py")
CYCLES = int(os.environ.get("ODRADEK_STORE_HANDOFF_CRASH_CYCLES", "20"))


@pytest.mark.slow
def test_sigkill_inside_releases_and_adoptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_CRASH_HANDOFF_EVERY", "4")
    test_store_crash._crash_cycles(f"file://{tmp_path / 'store'}", tmp_path, CYCLES, monkeypatch, WRITER)
    steps = (tmp_path / "handoffs.log").read_text().split()
    done, cut = steps.count("done"), steps.count("begun") - steps.count("done")
    print(f"{CYCLES} kills; {done} releases and adoptions completed, {cut} cut by a kill")
    assert done >= CYCLES, "the writer released and adopted too rarely to prove anything"
