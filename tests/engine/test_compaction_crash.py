"""Crash test of compaction: a kill -9 or a power cut in the middle of compaction rounds
never loses a key's latest acknowledged record, never makes a record up, never reuses
an offset.

Method: a child process (compaction_crash_writer.py) appends keyed records (5 %
tombstones) with an idempotent producer to a compacted topic with 64 KiB segments,
tombstone retention 0 and no compaction lag, while a thread of it forces compaction
rounds back to back; one JSON line per acknowledged append. The test SIGKILLs it at a
random moment (for the power-loss variant the child runs on a PowerLossDisk and the
data directory is replaced by what a power cut keeps), opens the directory itself and
checks against a model built from the acknowledgements (plus the one append in flight
at the kill, when the topic's next offset says it was written):

* no ``*.tmp`` file is left after the open;
* every record read is one that was appended, at the offset it was acknowledged at,
  with its key and value (no record made up, no offset reused); offsets only increase
  and the topic's next offset is the model's;
* each key's latest appended record is its last record in a full read and in
  ``read_key`` (a latest tombstone may be gone, and then so is every record of its key);
* every record carries the version its key had (its rank among the key's appends), and
  ``key_version`` is the key's count of appends, whatever compaction removed;
* ``read_key`` returns exactly the key's records of the full read;
* retrying the in-flight append with its producer sequence is a duplicate exactly when
  it was written, and the topic accepts appends.

Cycles: ``ODRADEK_COMPACTION_CRASH_CYCLES`` (default 20; the power-loss variant runs
a quarter as many), seed ``ODRADEK_CRASH_SEED``. Soak: set the cycles to thousands.
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
from odradek.engine.compaction import CompactionStopped
from odradek.storage.powerloss import restore

sys.path.insert(0, str(Path(__file__).parent))  # crash_harness.py, under any --import-mode
import crash_harness

WRITER = Path(__file__).with_name("compaction_crash_writer.py")
CYCLES = int(os.environ.get("ODRADEK_COMPACTION_CRASH_CYCLES", "20"))
SEED = int(os.environ.get("ODRADEK_CRASH_SEED", "4321"))
PRODUCER = "compaction-crash-producer"
TOPIC = "compaction.crash"
VALUE_BYTES = 200


def value_of(sequence: int, index: int) -> bytes:
    return f"{sequence}:{index}".encode().ljust(VALUE_BYTES, b".")


class Model:
    """What was appended, by offset: (key, value or None for a tombstone)."""

    def __init__(self) -> None:
        self.records: dict[int, tuple[bytes, bytes | None]] = {}
        self.next_offset = 0
        self.next_sequence = 0
        self.removed_seen = 0

    def add(self, sequence: int, base: int, described: list[list[Any]]) -> None:
        assert base == self.next_offset, (
            f"append {sequence} acknowledged at {base}, expected {self.next_offset}"
        )
        for index, (key, tombstone) in enumerate(described):
            self.records[base + index] = (key.encode(), None if tombstone else value_of(sequence, index))
        self.next_offset = base + len(described)
        self.next_sequence = max(self.next_sequence, sequence + 1)


def run_writer_until_killed(
    tmp_path: Path, first_sequence: int, seed: int, rng: random.Random, power_loss: bool
) -> list[dict[str, Any]]:
    arguments = [PRODUCER, str(first_sequence), str(seed)]
    return crash_harness.run_writer_until_killed(WRITER, tmp_path, arguments, rng, power_loss)


def check(client: odradek.EmbeddedClient, model: Model) -> None:
    table = pa.Table.from_batches(list(client.read(TOPIC, wait=0)))
    offsets = table.column("offset").to_pylist()
    keys = table.column("key").to_pylist()
    values = table.column("value").to_pylist()
    versions = table.column("version").to_pylist()
    assert client.describe_topic(TOPIC).next_offset == model.next_offset
    assert offsets == sorted(set(offsets)), "offsets repeat or go back"
    # Ranks: the version each appended record got.
    ranks: dict[int, int] = {}
    counts: dict[bytes, int] = {}
    latest: dict[bytes, int] = {}
    for offset in sorted(model.records):
        key = model.records[offset][0]
        counts[key] = counts.get(key, 0) + 1
        ranks[offset] = counts[key]
        latest[key] = offset
    by_key: dict[bytes, list[int]] = {}
    for offset, key, value, version in zip(offsets, keys, values, versions):
        assert offset in model.records, f"offset {offset} holds a record that was never appended"
        assert (key, value) == model.records[offset], f"offset {offset} holds another record than appended"
        assert version == ranks[offset], f"offset {offset} has version {version}, appended as {ranks[offset]}"
        by_key.setdefault(key, []).append(offset)
    model.removed_seen = max(model.removed_seen, len(model.records) - len(offsets))
    for key, last in latest.items():
        held = by_key.get(key, [])
        tombstone = model.records[last][1] is None
        if held or not tombstone:
            assert held and held[-1] == last, (
                f"key {key!r}: its latest record at {last} is not its last one read ({held[-1:]})"
            )
        assert client.key_version(TOPIC, key) == counts[key], f"key {key!r}: key_version moved"
        replay = client.read_key(TOPIC, key)
        assert replay.column("offset").to_pylist() == held, f"key {key!r}: read_key differs from the read"
        assert replay.column("version").to_pylist() == [ranks[o] for o in held]


def run_cycles(tmp_path: Path, cycles: int, power_loss: bool, cycles_max: int | None = None) -> Model:
    """``cycles`` kill cycles, then more (up to ``cycles_max``) while compaction has not
    removed a record yet: a kill that comes before a round finished, or a power cut that
    drops what a round had not synced, proves nothing about compaction, and with few
    cycles all of them may."""
    data_dir = tmp_path / "data"
    rng = random.Random(SEED + power_loss)
    model = Model()
    for cycle in range(max(cycles, cycles_max or 0)):
        if cycle >= cycles and model.removed_seen > 0:
            break
        acknowledged = run_writer_until_killed(
            tmp_path, model.next_sequence, rng.randrange(1 << 30), rng, power_loss
        )
        for line in acknowledged:
            model.add(line["seq"], line["base"], line["records"])
        intent = json.loads((tmp_path / "intent.json").read_text())
        if power_loss:
            restore(str(data_dir))
        with odradek.open(data_dir, retention_check_seconds=3600) as client:
            # The key index may merge runs left unmerged in the background (under a
            # temporary name): what is left once it is done was left by the crash.
            for thread in list(client.engine._topic(TOPIC).keys._threads):
                thread.join(timeout=60)
            assert crash_harness.temporary_files(data_dir) == [], f"cycle {cycle}: temporary files left"
            pending = intent["seq"] >= model.next_sequence
            written = pending and client.describe_topic(TOPIC).next_offset > model.next_offset
            if written:
                model.add(intent["seq"], model.next_offset, intent["records"])
            check(client, model)
            if pending:
                records = [
                    {"key": key, "value": None if tombstone else value_of(intent["seq"], index)}
                    for index, (key, tombstone) in enumerate(intent["records"])
                ]
                result = client.append(TOPIC, records, producer=(PRODUCER, intent["seq"]))
                assert result.duplicate == written, f"cycle {cycle}: the retry's duplicate flag is wrong"
                if not written:
                    model.add(intent["seq"], result.base_offset, intent["records"])
            result = client.append(
                TOPIC,
                [{"key": "after", "value": value_of(model.next_sequence, 0)}],
                producer=(PRODUCER, model.next_sequence),
            )
            model.add(model.next_sequence, result.base_offset, [["after", False]])
            check(client, model)
    return model


@pytest.mark.slow
def test_sigkill_during_compaction_loses_no_latest_record(tmp_path: Path) -> None:
    model = run_cycles(tmp_path, CYCLES, power_loss=False)
    assert model.next_sequence > CYCLES * 3, "the writer acknowledged too little to prove anything"
    assert model.removed_seen > 0, "compaction never removed a record: the test proved nothing"


@pytest.mark.slow
def test_power_loss_during_compaction_loses_no_latest_record(tmp_path: Path) -> None:
    model = run_cycles(tmp_path, max(1, CYCLES // 4), power_loss=True, cycles_max=max(1, CYCLES // 2))
    assert model.next_sequence > CYCLES // 4, "the writer acknowledged too little to prove anything"
    assert model.removed_seen > 0, "compaction never removed a record: the test proved nothing"


def test_a_round_stopped_before_its_swaps_never_resurrects_a_key(tmp_path: Path) -> None:
    """Goal: a round that stopped (kill, engine close) after ``compacted.json`` moved but
    before its segments were swapped leaves segments marked clean that were never
    compacted; a later round must not then drop a tombstone while older records of its
    key stay (the key would come back). Method: stop the first round at its first swap,
    reopen, run a round, read the deleted key."""
    data_dir = tmp_path / "data"
    with odradek.open(data_dir, retention_check_seconds=3600) as client:
        client.create_topic(TOPIC, cleanup="compact", segment_bytes="64KiB", delete_retention=0)
        client.append(TOPIC, [{"key": "gone", "value": b"old".ljust(VALUE_BYTES)} for _ in range(5)])
        client.append(TOPIC, [{"key": "gone", "value": None}])
        for round_number in range(20):
            client.append(
                TOPIC,
                [{"key": f"k{j}", "value": f"{round_number}".encode().ljust(VALUE_BYTES)} for j in range(30)],
            )
        assert client.engine._topic(TOPIC).log.active.base_offset > 6, "the tombstone must be sealed"

        def stopped(*args: object) -> None:
            raise CompactionStopped

        compactor = client.engine._topic(TOPIC).compactor
        compactor._rewrite = stopped  # type: ignore[method-assign]
        with pytest.raises(CompactionStopped):
            client.engine.compact(force=True)
        assert client.engine._topic(TOPIC).log.compacted_until > 6
    with odradek.open(data_dir, retention_check_seconds=3600) as client:
        client.engine.compact(force=True)
        table = pa.Table.from_batches(list(client.read(TOPIC, wait=0)))
        assert b"gone" not in table.column("key").to_pylist(), "a deleted key came back"
        assert client.read_key(TOPIC, b"gone").num_rows == 0
        assert client.key_version(TOPIC, b"gone") == 6
