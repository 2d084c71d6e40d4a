"""Quix Streams app of the Quix tests: counts words with a state store.

Usage: python quix_counter.py BOOTSTRAP STATE_DIR GUARANTEE COMMIT_SECONDS

Runs with the interpreter of the Quix side environment (``./dev setup`` makes
``.venv-quix``: Quix Streams 3.28 needs confluent-kafka < 2.13, the project's kafka
extra pins a newer one). A StreamingDataFrame reads topic ``words`` (a word per record,
the word as key and value) and adds one to the word's count in its state store, whose
changelog topic Quix creates itself (compacted). For each record it prints
``COUNT <word> <n>`` to stdout, flushed, and produces ``<n>`` under the word's key to
topic ``counts``. GUARANTEE is Quix's ``processing_guarantee``: ``at-least-once`` or
``exactly-once`` (each record's count, its changelog update and its input offset
committed in one Kafka transaction); COMMIT_SECONDS its ``commit_interval``.

Quix's defaults are made for production; the settings below make a test quick. After
a SIGKILL the dead member stays in group ``quixcount`` until its session expires, and
the restarted app's JoinGroup waits for it, as Kafka's coordinator does: a 6 s session
(heartbeats every 0.5 s) bounds that wait.
"""

from __future__ import annotations

import sys
from typing import Any

from quixstreams import Application
from quixstreams.state import State


def main() -> None:
    bootstrap, state_dir, guarantee, commit_seconds = sys.argv[1:5]
    app = Application(
        broker_address=bootstrap,
        consumer_group="quixcount",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee=guarantee,  # type: ignore[arg-type]
        commit_interval=float(commit_seconds),
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        loglevel="WARNING",
    )
    words = app.topic("words", key_deserializer="bytes", value_deserializer="bytes")
    counts = app.topic("counts", key_serializer="bytes", value_serializer="bytes")

    def count(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> bytes:
        total = int(state.get("count", 0)) + 1
        state.set("count", total)
        print(f"COUNT {key.decode()} {total}", flush=True)
        return str(total).encode()

    frame = app.dataframe(words)
    frame = frame.apply(count, stateful=True, metadata=True)
    frame.to_topic(counts)
    app.run()


if __name__ == "__main__":
    main()
