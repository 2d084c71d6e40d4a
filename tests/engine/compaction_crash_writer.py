"""Child process of the compaction crash test: appends and compacts until it is killed.

Usage: python compaction_crash_writer.py DATA_DIR PRODUCER_ID FIRST_SEQUENCE SEED [powerloss]

It opens DATA_DIR (on a PowerLossDisk with ``powerloss``, which records what a power cut
would keep) and appends keyed records, some of them tombstones, to a compacted topic
with 64 KiB segments, a tombstone retention of 0 and no compaction lag, while a second
thread runs ``Engine.compact(force=True)`` over and over: a kill lands in compaction
rounds (segment rewrites, swaps, ``compacted.json``) as often as in appends.

Before each append it writes the append's intent (sequence and records) to
``DATA_DIR/../intent.json``; after the append returns (fsync'd) it prints one JSON line
``{"seq", "base", "count", "records"}`` to stdout, where ``records`` is a list of
``[key, tombstone]``: the acknowledgement. A record's value is ``"<seq>:<index>"``
padded to 200 bytes (a tombstone has none).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading

import odradek
from odradek import limits
from odradek.storage.powerloss import PowerLossDisk

TOPIC = "compaction.crash"
KEYS = [f"key-{i}" for i in range(40)]
VALUE_BYTES = 200


def value_of(sequence: int, index: int) -> bytes:
    return f"{sequence}:{index}".encode().ljust(VALUE_BYTES, b".")


def compact_forever(client: odradek.EmbeddedClient) -> None:
    while True:
        client.engine.compact(force=True)


def main() -> None:
    data_dir, producer_id, first_sequence, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    power_loss = len(sys.argv) > 5 and sys.argv[5] == "powerloss"
    # Small limits so that kills land in key-index flushes as well.
    limits.key_index_memtable_entries_max = 400
    rng = random.Random(seed)
    options: dict[str, object] = {"retention_check_seconds": 3600}
    if power_loss:
        options["disk"] = PowerLossDisk(data_dir)
    client = odradek.open(data_dir, **options)
    client.create_topic(
        TOPIC,
        cleanup="compact",
        segment_bytes="64KiB",
        retention=None,
        delete_retention=0,
        min_compaction_lag=0,
        exist_ok=True,
    )
    threading.Thread(target=compact_forever, args=(client,), daemon=True).start()
    intent_path = os.path.join(os.path.dirname(data_dir), "intent.json")
    sequence = first_sequence
    while True:
        count = rng.choice([1, 1, 2, 5, 20, 60])
        records = []
        for index in range(count):
            key = rng.choice(KEYS)
            tombstone = rng.random() < 0.05
            records.append({"key": key, "value": None if tombstone else value_of(sequence, index)})
        described = [[r["key"], r["value"] is None] for r in records]
        with open(intent_path + ".tmp", "w") as handle:
            json.dump({"seq": sequence, "records": described}, handle)
        os.replace(intent_path + ".tmp", intent_path)  # a kill never leaves half an intent
        result = client.append(TOPIC, records, producer=(producer_id, sequence))
        line = {"seq": sequence, "base": result.base_offset, "count": result.count, "records": described}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        sequence += 1


if __name__ == "__main__":
    main()
