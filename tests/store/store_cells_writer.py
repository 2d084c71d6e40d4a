"""Child process of the cells crash test: crash_writer.py's appends, with the topic
moved between two cells of one store at random between them (decision 0031), so that
kills land inside releases and adoptions across cells.

Usage: python store_cells_writer.py DATA_DIR PRODUCER_ID FIRST_SEQUENCE SEED, with the
store root in ``ODRADEK_CRASH_STORE``; the cells are ``cells/a`` and ``cells/b`` under
it, their caches ``DATA_DIR/a`` and ``DATA_DIR/b``. A line on stdout is an
acknowledgement, as crash_writer.py's; each move adds ``begun`` then ``done`` to
``DATA_DIR/../handoffs.log``.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import crash_writer
import store_crash_writer

import odradek
from odradek import limits
from odradek.storage.objects import open_store

MOVE_EVERY = 5  # one append in about this many is preceded by a move


def open_cells(data_dir: str, url: str) -> list[tuple[odradek.EmbeddedClient, object]]:
    """Both cells' clients and stores, each topic released to one of them adopted (the
    test and the writer both start this way)."""
    root = open_store(url)
    cells = [root.child("cells/a"), root.child("cells/b")]
    clients = [
        odradek.open(
            os.path.join(data_dir, name),
            store=cell,
            store_settings=store_crash_writer.settings(),
            retention_check_seconds=3600,
        )
        for name, cell in zip("ab", cells, strict=True)
    ]
    for index, client in enumerate(clients):
        if crash_writer.TOPIC in client.engine.released_topics():
            clients[1 - index].engine.adopt_topic(crash_writer.TOPIC, source=cells[index])
    return list(zip(clients, cells, strict=True))


def main() -> None:
    data_dir, producer_id, first_sequence, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limits.key_index_memtable_entries_max = 400
    rng = random.Random(seed)
    cells = open_cells(data_dir, os.environ["ODRADEK_CRASH_STORE"])
    holder = next((i for i, (c, _) in enumerate(cells) if crash_writer.TOPIC in c.list_topics()), None)
    if holder is None:
        holder = 0
        cells[0][0].create_topic(crash_writer.TOPIC, segment_bytes="64KiB", retention=None)
    journal = os.path.join(os.path.dirname(data_dir), "handoffs.log")
    intent_path = os.path.join(os.path.dirname(data_dir), "intent.json")
    sequence = first_sequence
    while True:
        if rng.randrange(MOVE_EVERY) == 0:
            with open(journal, "a") as handle:
                handle.write("begun\n")
            source, store = cells[holder]
            source.engine.release_topic(crash_writer.TOPIC)
            holder = 1 - holder
            cells[holder][0].engine.adopt_topic(crash_writer.TOPIC, source=store)  # type: ignore[arg-type]
            with open(journal, "a") as handle:
                handle.write("done\n")
        count = rng.choice([1, 1, 2, 5, 20, 120])
        records = []
        for index in range(count):
            key = rng.choice(crash_writer.KEYS) if rng.random() < 0.9 else None
            records.append({"key": key, "value": f"{sequence}:{index}".encode()})
        with open(intent_path + ".tmp", "w") as handle:
            json.dump(
                {"seq": sequence, "records": [[r["key"], r["value"].decode()] for r in records]}, handle
            )
        os.replace(intent_path + ".tmp", intent_path)
        result = cells[holder][0].append(crash_writer.TOPIC, records, producer=(producer_id, sequence))
        line = {"seq": sequence, "base": result.base_offset, "count": result.count}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        sequence += 1


if __name__ == "__main__":
    main()
