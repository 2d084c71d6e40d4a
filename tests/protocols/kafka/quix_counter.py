"""Quix Streams app of the Quix tests: counts words with a state store.

Usage: python quix_counter.py BOOTSTRAP STATE_DIR GUARANTEE COMMIT_SECONDS

Runs with the interpreter of the Quix side environment (``./dev setup`` makes
``.venv-quix``: Quix Streams 3.28 needs confluent-kafka < 2.13, the project's kafka
extra pins a newer one). A StreamingDataFrame reads topic ``words`` (a word per record,
the word as key and value) and adds one to the word's count in its state store, whose
changelog topic Quix creates itself (compacted). For each record it prints
``COUNT <word> <n> <partition>`` to stdout, flushed, and produces ``<n>`` under the
word's key to topic ``counts``. Quix also creates topic ``quix-declared`` at start,
with the partitions and config set below (what the test of its topic creation
checks); nothing is written to it. GUARANTEE is Quix's ``processing_guarantee``: ``at-least-once`` or
``exactly-once`` (each record's count, its changelog update and its input offset
committed in one Kafka transaction); COMMIT_SECONDS its ``commit_interval``.

Quix's defaults are made for production; the settings below make a test quick. After
a SIGKILL the dead member stays in group ``quixcount`` until its session expires, and
the restarted app's JoinGroup waits for it, as Kafka's coordinator does: a 6 s session
(heartbeats every 0.5 s) bounds that wait.

From the environment: ``QUIX_INSTANCE`` makes the consumer a static member
(``group.instance.id``) with a 30 s session (a test would see a restarted member wait
for it); ``QUIX_SASL``, the JSON ``{"mechanism", "username", "password", "cafile"}``,
connects over SASL_SSL.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from quixstreams import Application, message_context
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models.topics import TopicConfig
from quixstreams.state import State


def main() -> None:
    bootstrap, state_dir, guarantee, commit_seconds = sys.argv[1:5]
    session: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    if "QUIX_INSTANCE" in os.environ:
        session = {**session, "group.instance.id": os.environ["QUIX_INSTANCE"], "session.timeout.ms": 30000}
    broker: str | ConnectionConfig = bootstrap
    if "QUIX_SASL" in os.environ:
        sasl = json.loads(os.environ["QUIX_SASL"])
        broker = ConnectionConfig(
            bootstrap_servers=bootstrap,
            security_protocol="sasl_ssl",
            sasl_mechanism=sasl["mechanism"],
            sasl_username=sasl["username"],
            sasl_password=sasl["password"],
            ssl_ca_location=sasl["cafile"],
        )
    app = Application(
        broker_address=broker,
        consumer_group="quixcount",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        processing_guarantee=guarantee,  # type: ignore[arg-type]
        commit_interval=float(commit_seconds),
        consumer_extra_config=session,
        loglevel="WARNING",
    )
    words = app.topic("words", key_deserializer="bytes", value_deserializer="bytes")
    counts = app.topic("counts", key_serializer="bytes", value_serializer="bytes")
    declared = TopicConfig(
        num_partitions=3,
        replication_factor=1,
        extra_config={
            "retention.ms": "21600000",
            "cleanup.policy": "compact,delete",
            "segment.ms": "3600000",
        },
    )
    app.topic("quix-declared", config=declared)

    def count(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> bytes:
        total = int(state.get("count", 0)) + 1
        state.set("count", total)
        print(f"COUNT {key.decode()} {total} {message_context().partition}", flush=True)
        return str(total).encode()

    frame = app.dataframe(words)
    frame = frame.apply(count, stateful=True, metadata=True)
    frame.to_topic(counts)
    app.run()


if __name__ == "__main__":
    main()
