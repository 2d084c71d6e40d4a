"""Crash test: no acknowledged record is ever lost, whatever moment the writer dies at.

Method: a child process (crash_writer.py) appends random keyed and keyless records
with an idempotent producer and fsync on, printing one line per acknowledged append.
The test SIGKILLs it at a random moment, then opens the data directory itself and
checks the invariants:

* every acknowledged append is present at its acknowledged offsets, with its values;
* offsets are dense from 0;
* each key's versions are 1, 2, 3… in offset order, ``key_version`` equals its record
  count, and ``read_key`` returns exactly its records;
* retrying the last attempted append (acknowledged or not) with the same producer
  sequence never writes it twice;

then restarts the writer for the next cycle. Small segments and a small key-index
memtable put crashes inside segment rolls and index flushes too.

The number of cycles is ``ODRADEK_CRASH_CYCLES`` (default 30); ``scripts/crash-soak.sh``
runs the same test with thousands.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

import odradek

WRITER = Path(__file__).with_name("crash_writer.py")
CYCLES = int(os.environ.get("ODRADEK_CRASH_CYCLES", "30"))
PRODUCER = "crash-producer"
TOPIC = "crash.test"


def run_writer_until_killed(data_dir: Path, first_sequence: int, seed: int, rng: random.Random) -> list[dict]:
    stderr_path = data_dir.parent / "writer.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(WRITER), str(data_dir), PRODUCER, str(first_sequence), str(seed)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    lines: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    # Let it start (imports, recovery) and write for a random while.
    deadline = time.monotonic() + 30
    while not lines and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not lines:
        process.kill()
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        raise AssertionError(f"writer acknowledged nothing: {stderr_path.read_text()}")
    time.sleep(rng.uniform(0.0, 0.25))
    process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    process.stdout.close()  # type: ignore[union-attr]
    acknowledged = []
    for line in lines:
        if line.endswith(b"\n"):  # a torn last line was never a complete acknowledgement
            acknowledged.append(json.loads(line))
    return acknowledged


def check_invariants(client: odradek.EmbeddedClient, acks: dict[int, dict]) -> pa.Table:
    batches = list(client.read(TOPIC, wait=0))
    assert batches, "the topic is empty although appends were acknowledged"
    table = pa.Table.from_batches(batches)
    offsets = table.column("offset").to_pylist()
    assert offsets == list(range(len(offsets))), "offsets are not dense from 0"
    values = table.column("value").to_pylist()
    keys = table.column("key").to_pylist()
    versions = table.column("version").to_pylist()
    for ack in acks.values():
        base, count, sequence = ack["base"], ack["count"], ack["seq"]
        assert base + count <= len(values), f"acknowledged append {sequence} at {base} is missing"
        for index in range(count):
            assert values[base + index] == f"{sequence}:{index}".encode(), (
                f"acknowledged record {sequence}:{index} is not at offset {base + index}"
            )
    seen: dict[bytes, int] = {}
    for key, version in zip(keys, versions):
        if key is None:
            assert version is None
            continue
        seen[key] = seen.get(key, 0) + 1
        assert version == seen[key], f"key {key!r} jumps to version {version} after {seen[key] - 1}"
    for key, count in seen.items():
        assert client.key_version(TOPIC, key) == count
        replay = client.read_key(TOPIC, key)
        assert replay.column("version").to_pylist() == list(range(1, count + 1))
    # Every sequence appears at most once (one append = one sequence = one frame).
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    for position, value in enumerate(values):
        sequence = int(value.split(b":")[0])
        first.setdefault(sequence, position)
        last[sequence] = position
        count[sequence] = count.get(sequence, 0) + 1
    for sequence, total in count.items():
        contiguous = last[sequence] - first[sequence] + 1 == total
        assert contiguous, f"sequence {sequence} was written more than once"
    return table


@pytest.mark.slow
def test_sigkill_never_loses_acknowledged_records(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(int(os.environ.get("ODRADEK_CRASH_SEED", "1234")))
    acks: dict[int, dict] = {}
    next_sequence = 0
    for cycle in range(CYCLES):
        for ack in run_writer_until_killed(data_dir, next_sequence, rng.randrange(1 << 30), rng):
            acks[ack["seq"]] = ack
        with odradek.open(data_dir, retention_check_seconds=3600) as client:
            table = check_invariants(client, acks)
            # Retry the last attempted append with the same sequence: whether or not it
            # was written before the crash, it must end up in the log exactly once.
            intent = json.loads((tmp_path / "intent.json").read_text())
            records = [{"key": k, "value": v.encode()} for k, v in intent["records"]]
            before = client.describe_topic(TOPIC).next_offset
            result = client.append(TOPIC, records, producer=(PRODUCER, intent["seq"]))
            written_before = intent["seq"] in {
                int(v.split(b":")[0]) for v in table.column("value").to_pylist()
            }
            assert result.duplicate == written_before, f"cycle {cycle}: retry duplicate flag is wrong"
            if written_before:
                assert client.describe_topic(TOPIC).next_offset == before
            if intent["seq"] in acks:
                assert result.base_offset == acks[intent["seq"]]["base"]
            acks[intent["seq"]] = {
                "seq": intent["seq"],
                "base": result.base_offset,
                "count": result.count,
                "versions": {},
            }
            check_invariants(client, acks)
            next_sequence = intent["seq"] + 1
    assert len(acks) > CYCLES, "the writer acknowledged too little to prove anything"
