"""Crash test of key snapshots: a kill -9 in the middle of snapshot writes and of
``cleanup="snapshot"`` rounds loses no acknowledged event or snapshot, drops no event
that no snapshot covers, and never leaves a snapshot newer than its events.

Method: a child process (snapshot_crash_writer.py) appends keyed records with an
idempotent producer to a ``cleanup="snapshot"`` topic with 64 KiB segments, snapshots
random keys (the fold of what ``read_key(from_snapshot=True)`` returned: a SHA-256
chain, which any missing or extra event changes) and runs cleanup rounds back to back
in a second thread; one JSON line per acknowledged append or snapshot. The test
SIGKILLs it at a random moment after a random number of acknowledgements (10 to 60, so
a loaded machine does as much per cycle) (crash_harness.py, shared with the compaction crash
test), opens the directory itself and checks against the model built from the
acknowledgements (plus the append in flight at the kill when the topic's next offset
says it was written):

* no ``*.tmp`` file is left; the topic's next offset is the model's;
* every record read is one appended, at its acknowledged offset, with its key, value
  and version (its rank among its key's appends); ``key_version`` is the key's count;
* every record missing from a read is covered by its key's latest snapshot (version at
  most the snapshot's): nothing uncovered was dropped, no key lost its events;
* each key's latest snapshot covers a version the key has (never newer than its
  events), at least the last acknowledged snapshot's, and its state is the fold of the
  key's appended events up to it; folding ``read_key(from_snapshot=True)`` equals
  folding every event the key was ever appended (nothing resurrected, nothing lost);
* the in-flight append retried with its sequence is a duplicate exactly when written.

The power-loss variant runs the child on a PowerLossDisk and replaces the data
directory by what a power cut keeps before opening it (half as many cycles).
Cycles: ``ODRADEK_SNAPSHOT_CRASH_CYCLES`` (default 8), seed ``ODRADEK_CRASH_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.storage.powerloss import restore

sys.path.insert(0, str(Path(__file__).parent))  # the harness and the writer, any --import-mode
import crash_harness
from snapshot_crash_writer import TOPIC, fold, value_of

WRITER = Path(__file__).with_name("snapshot_crash_writer.py")
CYCLES = int(os.environ.get("ODRADEK_SNAPSHOT_CRASH_CYCLES", "8"))
SEED = int(os.environ.get("ODRADEK_CRASH_SEED", "4321"))
PRODUCER = "snapshot-crash-producer"


class Model:
    """What was appended (offset -> key, value) and the latest acknowledged snapshot
    version of each key."""

    def __init__(self) -> None:
        self.records: dict[int, tuple[bytes, bytes]] = {}
        self.next_offset = 0
        self.next_sequence = 0
        self.snapshots: dict[bytes, int] = {}
        self.dropped_seen = 0

    def add(self, sequence: int, base: int, keys: list[str]) -> None:
        assert base == self.next_offset, f"append {sequence} acknowledged at {base}, not {self.next_offset}"
        for index, key in enumerate(keys):
            self.records[base + index] = (key.encode(), value_of(sequence, index))
        self.next_offset = base + len(keys)
        self.next_sequence = max(self.next_sequence, sequence + 1)

    def acknowledge(self, line: dict[str, Any]) -> None:
        if "snapshot" in line:
            key = line["snapshot"].encode()
            self.snapshots[key] = max(self.snapshots.get(key, 0), line["version"])
        else:
            self.add(line["seq"], line["base"], line["keys"])


def check(client: odradek.EmbeddedClient, model: Model) -> None:
    table = pa.Table.from_batches(list(client.read(TOPIC, wait=0)))
    assert client.describe_topic(TOPIC).next_offset == model.next_offset
    events: dict[bytes, list[tuple[int, bytes]]] = {}  # key -> [(offset, value)] appended
    ranks: dict[int, int] = {}
    for offset in sorted(model.records):
        key, value = model.records[offset]
        events.setdefault(key, []).append((offset, value))
        ranks[offset] = len(events[key])
    held: set[int] = set()
    for offset, key, value, version in zip(
        table.column("offset").to_pylist(),
        table.column("key").to_pylist(),
        table.column("value").to_pylist(),
        table.column("version").to_pylist(),
    ):
        assert model.records.get(offset) == (key, value), (
            f"offset {offset} holds a record never appended there"
        )
        assert version == ranks[offset], f"offset {offset} has version {version}, appended as {ranks[offset]}"
        held.add(offset)
    for key, appended in events.items():
        assert client.key_version(TOPIC, key) == len(appended), f"key {key!r}: key_version moved"
        rows = client.read_key(TOPIC, key, from_snapshot=True).to_pylist()
        snapshot = rows[0] if rows and rows[0]["snapshot"] else None
        covered = 0 if snapshot is None else snapshot["version"]
        assert covered >= model.snapshots.get(key, 0), f"key {key!r}: an acknowledged snapshot was lost"
        assert covered <= len(appended), (
            f"key {key!r}: a snapshot of version {covered} is newer than its events"
        )
        if snapshot is not None:
            expected_state = fold(None, [value for _, value in appended[:covered]])
            assert snapshot["value"] == expected_state, (
                f"key {key!r}: its snapshot is not the fold of its events"
            )
        for rank, (offset, _) in enumerate(appended, start=1):
            if offset not in held:
                assert rank <= covered, (
                    f"key {key!r}: event {rank} at {offset} was dropped, no snapshot covers it"
                )
                model.dropped_seen += 1
        state = fold(
            snapshot["value"] if snapshot else None, [row["value"] for row in rows if not row["snapshot"]]
        )
        assert state == fold(None, [value for _, value in appended]), f"key {key!r}: its replay differs"


def run_cycles(tmp_path: Path, cycles: int, power_loss: bool) -> Model:
    data_dir = tmp_path / "data"
    rng = random.Random(SEED + power_loss)
    model = Model()
    for cycle in range(cycles):
        arguments = [PRODUCER, str(model.next_sequence), str(rng.randrange(1 << 30))]
        acknowledged = crash_harness.run_writer_until_killed(
            WRITER,
            tmp_path,
            arguments,
            rng,
            power_loss,
            kill_after_seconds=0.5,
            lines_before_kill=rng.randint(10, 60),
        )
        for line in acknowledged:
            model.acknowledge(line)
        intent = json.loads((tmp_path / "intent.json").read_text())
        if power_loss:
            restore(str(data_dir))
        with odradek.open(data_dir, retention_check_seconds=3600) as client:
            topic = client.engine._topic(TOPIC)
            companion = topic.snapshots.companion()
            # A merge left unmerged finishes under a temporary name: the topic's key
            # index and its snapshot log's (the soak found the latter's run-*.tmp).
            for index in [topic.keys] + ([] if companion is None else [companion.keys]):
                for thread in list(index._threads):
                    thread.join(timeout=60)
            assert crash_harness.temporary_files(data_dir) == [], f"cycle {cycle}: temporary files left"
            pending = intent["seq"] >= model.next_sequence
            written = pending and client.describe_topic(TOPIC).next_offset > model.next_offset
            if written:
                model.add(intent["seq"], model.next_offset, intent["keys"])
            check(client, model)
            if pending:
                records = [
                    {"key": key, "value": value_of(intent["seq"], index)}
                    for index, key in enumerate(intent["keys"])
                ]
                result = client.append(TOPIC, records, producer=(PRODUCER, intent["seq"]))
                assert result.duplicate == written, f"cycle {cycle}: the retry's duplicate flag is wrong"
                if not written:
                    model.add(intent["seq"], result.base_offset, intent["keys"])
            client.engine.compact(force=True)
            check(client, model)
    return model


@pytest.mark.slow
def test_sigkill_during_snapshots_and_cleanup_loses_nothing(tmp_path: Path) -> None:
    model = run_cycles(tmp_path, CYCLES, power_loss=False)
    assert model.next_sequence > CYCLES * 3, "the writer acknowledged too little to prove anything"
    assert model.snapshots, "no snapshot was acknowledged: the test proved nothing"
    assert model.dropped_seen > 0, "cleanup never dropped an event: the test proved nothing"


@pytest.mark.slow
def test_power_loss_during_snapshots_and_cleanup_loses_nothing(tmp_path: Path) -> None:
    """A power cut keeps only what was fsync'd: a snapshot must never survive the
    events it covers (the writer waits for them to be durable first)."""
    model = run_cycles(tmp_path, max(1, CYCLES // 2), power_loss=True)
    assert model.snapshots, "no snapshot was acknowledged: the test proved nothing"
