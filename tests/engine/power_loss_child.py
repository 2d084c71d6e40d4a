"""Child process of the power-loss test: random operations until it is killed.

Usage: python power_loss_child.py DATA_DIR INTENT_PATH FIRST_OP NEXT_SEQUENCE SEED [SABOTAGE]

It opens DATA_DIR on a PowerLossDisk, which records what a power cut would keep, with
64 KiB segments and a small key-index memtable so that cycles cross segment rolls and
index flushes; starts the Kafka listener on a free loopback port; then runs random
operations forever. Before each operation it writes the operation's intent (its number,
kind and arguments) to INTENT_PATH, replaced atomically; after the operation returns it
prints one JSON line to stdout, flushed: the acknowledgement, exactly what a client of a
server would have received. Operations are numbered from FIRST_OP; record values are
``"<op>:<index>"``, so every record says which operation wrote it.

Operations (``kind`` of the intent and of the acknowledgement):

* ``append`` to the main topic, one of: keyed records with the idempotent producer
  ``(PRODUCER, sequence)``, sequences from NEXT_SEQUENCE; ``expect={key: version}``
  (sometimes a wrong version on purpose: the acknowledgement is then the refusal);
  ``expect_offset=`` (sometimes wrong too); keyless records;
* ``create`` and ``delete`` of a topic of a small pool (some created with a JSON
  Schema, whose id and version the acknowledgement carries); ``append`` to a pool topic;
* ``alter``: a new retention for the main topic or a pool topic;
* ``schema``: ``set_schema`` adding an optional field to a schema'd pool topic;
* ``group_ack``: poll the consumer group GROUP on the main topic and ack what came (the
  acknowledgement carries the offsets the ack settled; the intent, the polled ones);
* ``kafka_commit``: a synchronous offset commit of KAFKA_GROUP through the Kafka door
  with kafka-python (a standalone consumer: assign(), not subscribe()).

SABOTAGE removes one durability step, for the test that proves the checker bites. The
sabotaged child first runs an operation that the sabotage loses, acknowledges it,
prints ``{"waiting": SABOTAGE}`` and waits to be killed, so that the loss is certain:

* ``group-commit-fsync``: the group commit never syncs a segment; an append is lost.
* ``topics-directory-fsync``: the topics directory is never fsync'd after the setup;
  a pool topic's creation (or deletion) is lost.
* ``group-progress-fsync``: consumer-group progress files are never synced; an ack is lost.
* ``kafka-store-fsync``: the Kafka door's files are written without fsync; a commit is lost.
* ``schema-ids-fsync``: schema ids are written without fsync; a schema'd topic's id is lost.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

import odradek
from odradek import limits
from odradek.storage.powerloss import PowerLossDisk

MAIN = "pl.main"
POOL = [f"pl.pool.{i}" for i in range(4)]
KEYS = [f"key-{i}" for i in range(40)]
PRODUCER = "pl-producer"
GROUP = "pl-group"
KAFKA_GROUP = "pl-kafka"
RETENTIONS = [None, "1d", "7d", "30d", "365d"]
SCHEMA_VERSIONS_MAX = 8  # a pool topic's schema stops growing here (it is deleted sooner or later)

# kind, weight
OPERATIONS = [
    ("produce", 30),
    ("expect", 10),
    ("expect_offset", 8),
    ("keyless", 8),
    ("toggle", 6),
    ("pool_append", 6),
    ("alter", 5),
    ("schema", 5),
    ("group_ack", 10),
    ("kafka_commit", 5),
]

FIRST_OPERATION = {
    "group-commit-fsync": "produce",
    "topics-directory-fsync": "toggle",
    "group-progress-fsync": "append_and_ack",
    "kafka-store-fsync": "kafka_commit",
    "schema-ids-fsync": "create_schemad",
}


def base_schema(op: int) -> dict[str, Any]:
    """A schema no other operation uses (a new global id), with a required field."""
    return {
        "type": "object",
        "properties": {"id": {"type": "integer"}, f"t{op}": {"type": "string"}},
        "required": ["id"],
    }


class Child:
    def __init__(self, data_dir: str, intent_path: str, first_op: int, sequence: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.intent_path = intent_path
        self.op = first_op - 1  # the number of the last intent
        self.sequence = sequence
        self.disk = PowerLossDisk(data_dir)
        self.data_dir = data_dir
        self.client: odradek.EmbeddedClient | None = None
        self.consumer: Any = None
        self.kafka: Any = None
        self.listener: Any = None

    # -- setup ------------------------------------------------------------------------

    def open(self) -> None:
        from odradek.protocols.kafka import start_kafka_listener

        self.client = odradek.open(self.data_dir, disk=self.disk, retention_check_seconds=3600)
        self.client.create_topic(MAIN, segment_bytes="64KiB", retention=None, exist_ok=True)
        self.listener = start_kafka_listener(self.client.engine, "127.0.0.1", 0)
        info = self.client.describe_topic(MAIN)
        self.main_next = info.next_offset
        self.versions = {key: self.client.key_version(MAIN, key) for key in KEYS}
        # Pool topics: name -> the schema document of their newest version, or None.
        self.pool: dict[str, dict[str, Any] | None] = {}
        for name in POOL:
            if name in self.client.list_topics():
                schema = self.client.get_schema(name)
                self.pool[name] = None if schema is None else json.loads(schema.text)

    # -- protocol with the parent -----------------------------------------------------

    def intent(self, kind: str, **details: Any) -> int:
        """Say what the next operation is about to do; return its number."""
        self.op += 1
        self.current = {"op": self.op, "kind": kind, **details}
        temporary = self.intent_path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(self.current, handle)
        os.replace(temporary, self.intent_path)  # a kill never leaves half an intent
        return self.op

    def ack(self, **results: Any) -> None:
        """Acknowledge the operation of the last intent: its intent and its results."""
        sys.stdout.write(json.dumps({**self.current, **results}) + "\n")
        sys.stdout.flush()

    # -- appends to the main topic ----------------------------------------------------

    def _append_main(self, keys: list[str | None], **options: Any) -> None:
        assert self.client is not None
        op = self.intent("append", topic=MAIN, keys=keys, **options)
        batch = [{"key": key, "value": f"{op}:{index}".encode()} for index, key in enumerate(keys)]
        arguments = dict(options)
        if "producer" in arguments:
            arguments["producer"] = (PRODUCER, arguments["producer"])
        try:
            result = self.client.append(MAIN, batch, **arguments)
        except odradek.ConflictError as exc:
            self.ack(refused=exc.message)
            return
        self.main_next = result.base_offset + result.count
        versions = {k.decode(): v for k, v in result.versions.items()}
        self.versions.update(versions)
        self.ack(base=result.base_offset, count=result.count, versions=versions)

    def keys(self, count: int, keyed: float) -> list[str | None]:
        return [self.rng.choice(KEYS) if self.rng.random() < keyed else None for _ in range(count)]

    def produce(self) -> None:
        count = self.rng.choice([1, 1, 2, 5, 20, 120])
        self._append_main(self.keys(count, 0.9), producer=self.sequence)
        self.sequence += 1

    def expect(self) -> None:
        keys = self.rng.sample(KEYS, self.rng.choice([1, 2, 3]))
        expected = {key: self.versions[key] for key in keys}
        if self.rng.random() < 0.2:
            expected[keys[0]] += self.rng.choice([-1, 1]) if expected[keys[0]] else 1
        self._append_main(list(keys), expect=expected)

    def expect_offset(self) -> None:
        offset = self.main_next + (self.rng.choice([-1, 1, 5]) if self.rng.random() < 0.2 else 0)
        self._append_main(self.keys(self.rng.choice([1, 3, 10]), 0.5), expect_offset=max(offset, 0))

    def keyless(self) -> None:
        self._append_main(self.keys(self.rng.choice([1, 4, 30]), 0.0))

    # -- the topic pool ---------------------------------------------------------------

    def toggle(self, name: str | None = None, schema: bool | None = None) -> None:
        assert self.client is not None
        name = name or self.rng.choice(POOL)
        if name in self.pool and schema is None:
            self.intent("delete", topic=name)
            self.client.delete_topic(name)
            del self.pool[name]
            self.ack()
            return
        if name in self.pool:
            self.toggle(name)  # a schema'd creation was asked for: make room first
        retention = self.rng.choice(RETENTIONS)
        schemad = self.rng.random() < 0.5 if schema is None else schema
        document = base_schema(self.op + 1) if schemad else None
        self.intent("create", topic=name, retention=retention, schema=document)
        info = self.client.create_topic(name, retention=retention, schema=document)
        self.pool[name] = document
        described = None
        if document is not None:
            got = self.client.get_schema(name)
            assert got is not None
            described = {"version": got.version, "id": got.id, "text": got.text}
        self.ack(
            created_at=info.created_at,
            retention_seconds=info.config["retention_seconds"],
            schema_info=described,
        )

    def create_schemad(self) -> None:
        self.toggle(POOL[0], schema=True)

    def pool_append(self) -> None:
        assert self.client is not None
        schemaless = [name for name, schema in self.pool.items() if schema is None]
        if not schemaless:
            self.toggle()
            return
        name = self.rng.choice(schemaless)
        count = self.rng.choice([1, 3, 20])
        op = self.intent("append", topic=name, keys=[None] * count)
        result = self.client.append(name, [{"value": f"{op}:{i}".encode()} for i in range(count)])
        self.ack(base=result.base_offset, count=result.count, versions={})

    def alter(self) -> None:
        assert self.client is not None
        name = self.rng.choice([MAIN, *self.pool])
        retention = self.rng.choice(RETENTIONS)
        self.intent("alter", topic=name, retention=retention)
        info = self.client.engine.alter_topic(name, retention=retention)
        self.ack(retention_seconds=info.config["retention_seconds"])

    def schema(self) -> None:
        assert self.client is not None
        growing = [
            name
            for name, schema in self.pool.items()
            if schema is not None and len(schema["properties"]) < SCHEMA_VERSIONS_MAX + 1
        ]
        if not growing:
            self.toggle()
            return
        name = self.rng.choice(growing)
        current = self.pool[name]
        assert current is not None
        document = json.loads(json.dumps(current))
        document["properties"][f"f{len(document['properties'])}"] = {"type": "string"}  # optional
        self.intent("schema", topic=name, schema=document)
        info = self.client.set_schema(name, document)
        self.pool[name] = document
        self.ack(version=info.version, id=info.id, text=info.text)

    # -- consumers --------------------------------------------------------------------

    def group_ack(self) -> None:
        assert self.client is not None
        if self.consumer is None:
            self.consumer = self.client.subscribe(MAIN, group=GROUP, start="earliest")
        deliveries = self.consumer.poll(max_records=self.rng.choice([1, 10, 100]), timeout=0.2)
        if not deliveries:
            return
        offsets = sorted(d.offset for d in deliveries)
        self.intent("group_ack", topic=MAIN, offsets=offsets)
        result = self.consumer.ack(deliveries)
        rejected = {r.offset for r in result.rejected}
        self.ack(settled=[o for o in offsets if o not in rejected])

    def append_and_ack(self) -> None:
        """An append, then group acks until one settles something (its records at least)."""
        self.produce()
        while self.current["kind"] != "group_ack":
            self.group_ack()

    def kafka_commit(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        if self.kafka is None:
            self.kafka = KafkaConsumer(
                bootstrap_servers=self.listener.bootstrap,
                group_id=KAFKA_GROUP,
                enable_auto_commit=False,
                request_timeout_ms=30_000,
            )
            self.kafka.assign([TopicPartition(MAIN, 0)])
        offset = self.rng.randint(0, self.main_next)
        self.intent("kafka_commit", group=KAFKA_GROUP, topic=MAIN, offset=offset)
        self.kafka.commit({TopicPartition(MAIN, 0): OffsetAndMetadata(offset, None, -1)})
        self.ack()

    # -- the loop ---------------------------------------------------------------------

    def run(self, sabotage: str | None) -> None:
        kinds = [kind for kind, _ in OPERATIONS]
        weights = [weight for _, weight in OPERATIONS]
        if sabotage is not None:
            getattr(self, FIRST_OPERATION[sabotage])()
            sys.stdout.write(json.dumps({"waiting": sabotage}) + "\n")  # not an acknowledgement
            sys.stdout.flush()
            while True:  # the loss is certain now; the parent kills us
                time.sleep(1)
        while True:
            getattr(self, self.rng.choices(kinds, weights)[0])()


def sabotage_before_open(sabotage: str | None) -> None:
    """Remove a durability step inside the engine (only for the test that proves the
    checker finds the loss)."""
    if sabotage == "group-commit-fsync":
        from odradek.engine import commit

        original = commit.GroupCommit.__init__

        def without_sync(self: Any, durable: int, take_handle: Any, fsync: bool, *rest: Any) -> None:
            original(self, durable, take_handle, False, *rest)

        commit.GroupCommit.__init__ = without_sync  # type: ignore[method-assign]
    elif sabotage == "group-progress-fsync":
        from odradek.groups import state

        original_store = state.ProgressStore.__init__

        def store_without_sync(self: Any, path: str, *, fsync: bool, **rest: Any) -> None:
            original_store(self, path, fsync=False, **rest)

        state.ProgressStore.__init__ = store_without_sync  # type: ignore[method-assign]
    elif sabotage == "kafka-store-fsync":
        from odradek.protocols.kafka import store

        original_door = store.DoorStore.__init__

        def door_without_sync(self: Any, data_dir: str, disk: Any, *, fsync: bool = True) -> None:
            original_door(self, data_dir, disk, fsync=False)

        store.DoorStore.__init__ = door_without_sync  # type: ignore[method-assign]
    elif sabotage == "schema-ids-fsync":
        from odradek.schemas import ids

        original_ids = ids.SchemaIds.__init__

        def ids_without_sync(
            self: Any, directory: str, disk: Any, *, fsync: bool = True, base: int = 0
        ) -> None:
            original_ids(self, directory, disk, fsync=False, base=base)

        ids.SchemaIds.__init__ = ids_without_sync  # type: ignore[method-assign]


def sabotage_after_open(child: Child, sabotage: str | None) -> None:
    if sabotage == "topics-directory-fsync":
        topics = os.path.join(os.path.abspath(child.data_dir), "topics")
        original = child.disk.fsync_directory

        def fsync_directory(path: str) -> None:
            if os.path.abspath(path) != topics:
                original(path)

        child.disk.fsync_directory = fsync_directory  # type: ignore[method-assign]


def main() -> None:
    data_dir, intent_path = sys.argv[1], sys.argv[2]
    first_op, sequence, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    sabotage = sys.argv[6] if len(sys.argv) > 6 else None
    if sabotage is not None and sabotage not in FIRST_OPERATION:
        raise SystemExit(f"unknown sabotage {sabotage!r}: one of {sorted(FIRST_OPERATION)}")
    # Small limits so that kills land in segment rolls and key-index flushes too, the
    # runs written by age (a fraction of a second here) as well as full ones.
    limits.key_index_memtable_entries_max = 400
    limits.key_index_spill_entries_min = 16
    limits.key_index_spill_seconds = 0.2
    sabotage_before_open(sabotage)
    child = Child(data_dir, intent_path, first_op, sequence, seed)
    child.open()
    sabotage_after_open(child, sabotage)
    child.run(sabotage)


if __name__ == "__main__":
    main()
