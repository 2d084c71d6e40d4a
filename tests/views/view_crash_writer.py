"""Child process of the view crash test: appends to a topic with a view until killed.

Usage: python view_crash_writer.py DATA_DIR FIRST_SEQUENCE SEED

It opens DATA_DIR (with view checkpoints every 20 ms instead of every second, so that a
kill lands in checkpoint writes as often as in applying), creates the topic and a view
``latest`` over it (``odradek.views.reducers:latest``: a record with a null value, a
tombstone, deletes its key from the view) unless they exist, and appends batches of
random keys with random values and tombstones, every other batch with
``wait_for=["view:latest"]``. After an append returns it prints ``{"seq", "base",
"keys", "values"}`` (values null for tombstones): the acknowledgements. A value is
``"<seq>:<index>"``.
"""

from __future__ import annotations

import json
import random
import sys

import odradek
from odradek import limits

TOPIC = "view.crash"
VIEW = "latest"
KEYS = [f"key-{i}" for i in range(30)]


def main() -> None:
    data_dir, first_sequence, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limits.view_checkpoint_seconds = 0.02  # kills land in checkpoints too
    rng = random.Random(seed)
    client = odradek.open(data_dir, retention_check_seconds=3600)
    client.create_topic(TOPIC, exist_ok=True)
    if VIEW not in client.list_views():
        client.create_view(VIEW, TOPIC, "odradek.views.reducers:latest")
    sequence = first_sequence
    while True:
        keys = [rng.choice(KEYS) for _ in range(rng.choice([1, 3, 10, 40]))]
        values = [None if rng.random() < 0.2 else f"{sequence}:{index}" for index in range(len(keys))]
        records = [
            {"key": key.encode(), "value": None if value is None else value.encode()}
            for key, value in zip(keys, values, strict=True)
        ]
        wait_for = [f"view:{VIEW}"] if sequence % 2 else None
        result = client.append(TOPIC, records, wait_for=wait_for, timeout=60.0)
        line = {"seq": sequence, "base": result.base_offset, "keys": keys, "values": values}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        sequence += 1


if __name__ == "__main__":
    main()
