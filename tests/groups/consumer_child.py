"""Child process of the group durability test: consumes and acks until it is killed.

Usage: python consumer_child.py DATA_DIR SEED

It joins group ``durable`` on topic ``durable.events`` (fsync on) and loops: poll a
random number of records, then ack a random part of what it holds, nack another part
(so keys held back move on), keep the rest in flight. Before each ack it writes the
offsets it is about to ack to ``DATA_DIR/../ack-intent.json`` (atomically); after the
ack returns it prints one JSON line ``{"acked": [offsets]}``. A printed line is
therefore an acknowledged ack, exactly what a client of a server would have seen.
The progress file is rewritten as a snapshot every few KiB, so kills also land in
the middle of rewrites.
"""

from __future__ import annotations

import json
import os
import random
import sys

import odradek
from odradek import limits

TOPIC = "durable.events"
GROUP = "durable"


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    limits.group_state_log_bytes_max = 4096
    rng = random.Random(seed)
    intent_path = os.path.join(os.path.dirname(data_dir), "ack-intent.json")
    client = odradek.open(data_dir, retention_check_seconds=3600)
    consumer = client.subscribe(TOPIC, group=GROUP, ack_timeout=3600, max_deliveries=1000)
    held: list[odradek.groups.Delivery] = []
    while True:
        held.extend(consumer.poll(rng.randint(1, 60), timeout=0.2))
        rng.shuffle(held)
        cut_ack = int(len(held) * rng.uniform(0.3, 0.9))
        cut_nack = cut_ack + int((len(held) - cut_ack) * rng.uniform(0.0, 0.5))
        to_ack, to_nack, held = held[:cut_ack], held[cut_ack:cut_nack], held[cut_nack:]
        if to_ack:
            offsets = sorted(d.offset for d in to_ack)
            with open(intent_path + ".tmp", "w") as handle:
                json.dump({"acking": offsets}, handle)
            os.replace(intent_path + ".tmp", intent_path)
            result = consumer.ack(to_ack)
            if not result.ok:
                raise SystemExit(f"ack refused: {result.rejected[:3]}")
            sys.stdout.write(json.dumps({"acked": offsets}) + "\n")
            sys.stdout.flush()
        if to_nack:
            consumer.nack(to_nack)


if __name__ == "__main__":
    main()
