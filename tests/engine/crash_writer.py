"""Child process of the crash test: appends until it is killed.

Usage: python crash_writer.py DATA_DIR PRODUCER_ID FIRST_SEQUENCE SEED

Before each append it writes the append's intent (sequence and records) to
``DATA_DIR/../intent.json``; after the append returns (fsync'd) it prints one JSON line
``{"seq", "base", "count", "versions"}`` to stdout. A line on stdout is therefore an
acknowledgement, exactly what a client of a server would have received.
"""

from __future__ import annotations

import json
import os
import random
import sys

import odradek
from odradek import limits

TOPIC = "crash.test"
KEYS = [f"key-{i}" for i in range(40)]


def main() -> None:
    data_dir, producer_id, first_sequence, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # Small limits so that crashes land in segment rolls and key-index flushes too.
    limits.key_index_memtable_entries_max = 400
    rng = random.Random(seed)
    client = odradek.open(data_dir, retention_check_seconds=3600)
    client.create_topic(TOPIC, segment_bytes="64KiB", retention=None, exist_ok=True)
    intent_path = os.path.join(os.path.dirname(data_dir), "intent.json")
    sequence = first_sequence
    while True:
        count = rng.choice([1, 1, 2, 5, 20, 120])
        records = []
        for index in range(count):
            key = rng.choice(KEYS) if rng.random() < 0.9 else None
            records.append({"key": key, "value": f"{sequence}:{index}".encode()})
        with open(intent_path + ".tmp", "w") as handle:
            json.dump(
                {"seq": sequence, "records": [[r["key"], r["value"].decode()] for r in records]}, handle
            )
        os.replace(intent_path + ".tmp", intent_path)  # a kill never leaves half an intent
        result = client.append(TOPIC, records, producer=(producer_id, sequence))
        line = {
            "seq": sequence,
            "base": result.base_offset,
            "count": result.count,
            "versions": {k.decode(): v for k, v in result.versions.items()},
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        sequence += 1


if __name__ == "__main__":
    main()
