"""Child process of the snapshot crash test: appends, snapshots and cleans until killed.

Usage: python snapshot_crash_writer.py DATA_DIR PRODUCER_ID FIRST_SEQUENCE SEED [powerloss]

It opens DATA_DIR (on a PowerLossDisk with ``powerloss``, which records what a power cut
would keep) and appends keyed records to a ``cleanup="snapshot"`` topic with 64
KiB segments and no compaction lag, with an idempotent producer; after about every
other append it snapshots a random key: it reads the key from its latest snapshot,
folds what it read (``fold``: a SHA-256 chain of the values) and stores the result as
of the last version read. A second thread runs ``Engine.compact(force=True)`` over and
over, so a kill lands in snapshot writes (the snapshot log's appends and fsyncs) and in
cleanup rounds (segment rewrites and swaps) as often as in appends.

Before each append it writes the append's intent (sequence and keys) to
``DATA_DIR/../intent.json``. After an append returns it prints ``{"seq", "base",
"keys"}``; after a snapshot returns ``{"snapshot": key, "version": V}``: the
acknowledgements. A record's value is ``"<seq>:<index>"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
from collections.abc import Iterable

import odradek
from odradek import limits
from odradek.storage.powerloss import PowerLossDisk

TOPIC = "snapshot.crash"
KEYS = [f"key-{i}" for i in range(20)]


def value_of(sequence: int, index: int) -> bytes:
    return f"{sequence}:{index}".encode()


def fold(state: bytes | None, values: Iterable[bytes]) -> bytes:
    """The state after ``values``: a SHA-256 chain, so a missing, extra or reordered
    event gives another state."""
    current = state or b""
    for value in values:
        current = hashlib.sha256(current + value).digest()
    return current


def compact_forever(client: odradek.EmbeddedClient) -> None:
    while True:
        client.engine.compact(force=True)


def main() -> None:
    data_dir, producer_id, first_sequence, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    power_loss = len(sys.argv) > 5 and sys.argv[5] == "powerloss"
    limits.key_index_memtable_entries_max = 400  # kills land in key-index flushes too
    rng = random.Random(seed)
    options: dict[str, object] = {"retention_check_seconds": 3600}
    if power_loss:
        options["disk"] = PowerLossDisk(data_dir)
    client = odradek.open(data_dir, **options)
    client.create_topic(TOPIC, cleanup="snapshot", segment_bytes="64KiB", min_compaction_lag=0, exist_ok=True)
    threading.Thread(target=compact_forever, args=(client,), daemon=True).start()
    intent_path = os.path.join(os.path.dirname(data_dir), "intent.json")
    sequence = first_sequence
    while True:
        keys = [rng.choice(KEYS) for _ in range(rng.choice([1, 2, 5, 20, 60]))]
        with open(intent_path + ".tmp", "w") as handle:
            json.dump({"seq": sequence, "keys": keys}, handle)
        os.replace(intent_path + ".tmp", intent_path)  # a kill never leaves half an intent
        records = [{"key": key, "value": value_of(sequence, index)} for index, key in enumerate(keys)]
        result = client.append(TOPIC, records, producer=(producer_id, sequence))
        sys.stdout.write(json.dumps({"seq": sequence, "base": result.base_offset, "keys": keys}) + "\n")
        sys.stdout.flush()
        sequence += 1
        if rng.random() < 0.5:
            key = rng.choice(KEYS).encode()
            rows = client.read_key(TOPIC, key, from_snapshot=True).to_pylist()
            if rows:
                snapshot = rows[0]["value"] if rows[0]["snapshot"] else None
                state = fold(snapshot, [row["value"] for row in rows if not row["snapshot"]])
                version = rows[-1]["version"]
                client.snapshot(TOPIC, key, state, version=version)
                sys.stdout.write(json.dumps({"snapshot": key.decode(), "version": version}) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
