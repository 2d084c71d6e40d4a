"""Faust app of the Faust client tests: forwards records, in a transaction if asked.

Usage: python faust_forward.py BOOTSTRAP DATA_DIR GUARANTEE [INSTANCE_ID]

An agent reads topic ``letters`` (raw keys and values; the test creates it with two
partitions) and sends each record on to topic ``forwarded`` (two partitions too), counts
it in a Table, then prints ``SENT <value> <partition>`` to stdout, flushed. GUARANTEE
is Faust's ``processing_guarantee``: with ``exactly_once`` the sends, the Table's
changelog records and the offsets of the records read go through the transactions of
Faust's transactional producers (one per partition: ``forward-<group>-<partition>``),
and Faust's consumer reads ``read_committed``. INSTANCE_ID, when given, is the
consumer's ``group.instance.id`` (a static member). The environment variable
``FORWARD_SASL``, when set, holds the JSON ``{"mechanism", "username", "password",
"cafile"}`` of Faust's ``broker_credentials``: SASL over TLS with that CA.

Faust puts a send in a transaction only when its consumer knows the topic (Faust's
TransactionManager.send takes the transactional id from the consumer's metadata of the
topic, faust/transport/consumer.py; the consumer's metadata holds the topics it
subscribes to) and the topic is co-partitioned with the input (same partition count,
same subscribers): a send to any other topic goes out through the app's plain
producer, outside every transaction. So an agent subscribes to ``forwarded``.

A second agent subscribes to topic ``declared``, which Faust creates itself at start
(``internal=True``) with the partitions, retention, cleanup policy and extra config
set below: what the test of Faust's topic creation checks. It never gets a record.

Faust commits from a task of its own while the agent processes a record: the output
of the record being processed can be in a transaction that commits before its offset
is (the record's output is sent, its offset not yet acknowledged). Seen in the test as
one output more than the committed offsets account for, always the record at a
partition's committed offset; after a crash that record would be processed and its
output committed twice. The agent sleeps before its send, not after, to keep that
window short; the test allows that one record.

The settings that make a test quick are those of faust_wordcount.py (a 6 s session
unless static: a static member's session is 30 s, so that the test would see a
restarted member wait for it).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from datetime import timedelta

import faust

LETTERS_PARTITIONS = 2  # as the test creates ``letters``
DECLARED_PARTITIONS = 3
DECLARED_RETENTION = timedelta(hours=6)
DECLARED_CONFIG = {"segment.ms": "3600000", "min.compaction.lag.ms": "60000"}
SLOW_SECONDS = 0.02  # per record: the test stops the app inside an open transaction


def main() -> None:
    bootstrap, data_dir, guarantee = sys.argv[1:4]
    instance = sys.argv[4] if len(sys.argv) > 4 else None
    credentials = None
    if "FORWARD_SASL" in os.environ:
        sasl = json.loads(os.environ["FORWARD_SASL"])
        context = ssl.create_default_context(cafile=sasl["cafile"])
        credentials = faust.SASLCredentials(
            username=sasl["username"],
            password=sasl["password"],
            mechanism=sasl["mechanism"],
            ssl_context=context,
        )
    app = faust.App(
        "forward",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        processing_guarantee=guarantee,
        consumer_group_instance_id=instance,
        broker_credentials=credentials,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        broker_session_timeout=30.0 if instance else 6.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=10.0,
        table_standby_replicas=0,
        stream_wait_empty=False,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    letters = app.topic("letters", **raw)  # type: ignore[arg-type]
    forwarded = app.topic("forwarded", **raw)  # type: ignore[arg-type]
    declared = app.topic(
        "declared",
        internal=True,
        partitions=DECLARED_PARTITIONS,
        retention=DECLARED_RETENTION,
        compacting=True,
        deleting=True,
        config=DECLARED_CONFIG,
        **raw,  # type: ignore[arg-type]
    )

    # Records forwarded per key, in a Table: its changelog is written in the
    # transactions too. Faust 0.15.3 also needs it for exactly_once: an app with no
    # changelog table (and no standby replica) gets aiokafka's round-robin assignor
    # instead of Faust's, and its transaction manager then fails on the first
    # assignment (KeyError in PartitionAssignor.group_for_topic).
    forwarded_count = app.Table("forwarded_count", default=int, partitions=LETTERS_PARTITIONS)

    @app.agent(letters)
    async def forward(stream: faust.Stream) -> None:  # type: ignore[type-arg]
        async for event in stream.events():
            await asyncio.sleep(SLOW_SECONDS)  # before the send (the module's docstring)
            await forwarded.send(key=event.key, value=event.value)
            forwarded_count[event.value.decode()] += 1  # a str key: the changelog keys are JSON
            print(f"SENT {event.value.decode()} {event.message.partition}", flush=True)

    @app.agent(declared)
    async def ignore(stream: faust.Stream) -> None:  # type: ignore[type-arg]
        async for _ in stream:
            pass

    @app.agent(forwarded)
    async def landed(stream: faust.Stream) -> None:  # type: ignore[type-arg]
        async for _ in stream:  # see the module's docstring
            pass

    # --without-web: see faust_wordcount.py.
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
