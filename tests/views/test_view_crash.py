"""Crash test of a view's applier: a kill -9 while a view applies and checkpoints loses
no acknowledged append, resurrects no deleted key, and the view, once it caught up
after the restart, equals the fold of the log.

Method: a child process (view_crash_writer.py) appends batches of random keys, values
and tombstones to a topic with a ``latest`` view (a tombstone deletes its key),
checkpointing the view every 20 ms, every other append with ``wait_for`` the view; one
JSON line per acknowledged append. The test SIGKILLs it at a random moment after a
random number of acknowledgements (tests/engine/crash_harness.py), opens the directory
itself, and checks:

* every acknowledged record is in the log at its acknowledged offset, with its key and
  value (a tombstone as a null value);
* after an append with ``wait_for`` the view (the view has caught up: the condition,
  never a sleep), the view's whole table (``view_scan``) equals the fold of the log
  read back: each key's last value, no key whose last record is a tombstone, no other
  key; ``describe_view`` says it is running.

The view applies at least once (decision 0019): after the kill it starts from its last
checkpoint and applies the rest again; ``latest`` is idempotent, so the fold is exact.
Cycles: ``ODRADEK_VIEW_CRASH_CYCLES`` (default 4), seed ``ODRADEK_CRASH_SEED``.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

import odradek

sys.path.insert(0, str(Path(__file__).parent))  # the writer, any --import-mode
sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))  # the crash harness the engine tests share
import crash_harness
from view_crash_writer import TOPIC, VIEW

WRITER = Path(__file__).with_name("view_crash_writer.py")
CYCLES = int(os.environ.get("ODRADEK_VIEW_CRASH_CYCLES", "4"))
SEED = int(os.environ.get("ODRADEK_CRASH_SEED", "4321"))
MARKER = b"marker"


def _log(client: odradek.EmbeddedClient) -> dict[int, tuple[bytes, bytes | None]]:
    rows: dict[int, tuple[bytes, bytes | None]] = {}
    for batch in client.read(TOPIC, wait=0):
        for offset, key, value in zip(*(batch.column(n).to_pylist() for n in ("offset", "key", "value"))):
            rows[offset] = (key, value)
    return rows


def _fold(log: dict[int, tuple[bytes, bytes | None]]) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for offset in sorted(log):
        key, value = log[offset]
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def check(client: odradek.EmbeddedClient, acknowledged: list[dict[str, Any]], cycle: int) -> int:
    """The checks above; returns the number of tombstones in the log."""
    log = _log(client)
    for ack in acknowledged:
        for index, (key, value) in enumerate(zip(ack["keys"], ack["values"], strict=True)):
            expected = (key.encode(), None if value is None else value.encode())
            assert log.get(ack["base"] + index) == expected, (
                f"cycle {cycle}: acknowledged record {ack['seq']}:{index} at {ack['base'] + index} is lost"
            )
    client.append(TOPIC, [{"key": MARKER, "value": b"%d" % cycle}], wait_for=[f"view:{VIEW}"], timeout=60.0)
    log = _log(client)
    table = client.view_scan(VIEW, b"")
    view = dict(zip(table.column("key").to_pylist(), table.column("state").to_pylist(), strict=True))
    folded = _fold(log)
    resurrected = sorted(set(view) - set(folded))
    assert not resurrected, f"cycle {cycle}: keys deleted by a tombstone are back in the view: {resurrected}"
    assert view == folded, f"cycle {cycle}: the view differs from the fold of the log"
    assert client.describe_view(VIEW)["status"] == "running"
    return sum(1 for _, value in log.values() if value is None)


@pytest.mark.slow
def test_sigkill_of_a_view_applier_loses_nothing_and_resurrects_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    acknowledged: list[dict[str, Any]] = []
    sequence = 0
    tombstones = 0
    for cycle in range(CYCLES):
        lines = crash_harness.run_writer_until_killed(
            WRITER,
            tmp_path,
            [str(sequence), str(rng.randrange(1 << 30))],
            rng,
            kill_after_seconds=0.5,
            lines_before_kill=rng.randint(5, 40),
        )
        acknowledged += lines
        sequence = max(sequence, *(line["seq"] + 1 for line in lines))
        with odradek.open(tmp_path / "data", retention_check_seconds=3600) as client:
            assert crash_harness.temporary_files(tmp_path / "data") == [], f"cycle {cycle}: temporary files"
            tombstones = check(client, acknowledged, cycle)
    assert len(acknowledged) > CYCLES * 5, "the writer acknowledged too little to prove anything"
    assert tombstones > 0, "no tombstone was written: the test proved nothing about resurrection"
