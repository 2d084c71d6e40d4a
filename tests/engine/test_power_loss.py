"""Power-loss test: nothing acknowledged is lost when the power fails at any moment.

A SIGKILL cannot catch a missing fsync (the page cache survives a killed process); a
power cut can. Method: a child process (power_loss_child.py) runs random operations on
a PowerLossDisk, which records what a power cut would keep (file contents as of their
last fsync, directory entries as of their directory's last fsync), and prints one line
per acknowledged operation. The test SIGKILLs it at a random moment, replaces the data
directory by what the power cut kept (``powerloss.restore``), opens it with a normal
engine and checks it against a model built from the acknowledgements:

* the main topic holds exactly the acknowledged appends, each at its acknowledged
  offsets with its values (refused appends: nothing), offsets dense from 0, no damage
  reported (``damaged`` empty, status ``ok``); each key's versions are 1, 2, 3…,
  ``key_version`` is its count, and ``read_key`` replays its records (every key's last
  20 versions, four random keys' whole streams); acknowledged versions were the right ones;
* an idempotent retry of the last acknowledged producer sequence is a duplicate with
  the original offsets;
* acknowledged topic creations exist (with their creation time, retention and
  schema), acknowledged deletions are gone, acknowledged retention changes and schema
  versions are there with their schema ids, every schema id names the schema the
  topics say it does, and no two different schemas ever shared an id;
* every offset an acknowledged consumer-group ack settled is settled in the group's
  progress file, nothing else is, and a member of the group is not handed them again;
* the Kafka door's committed offset of the Kafka group is the acknowledged one.

The one operation in flight at the kill (its intent was written, no acknowledgement
came) may or may not have happened, but entirely or not at all: the state must be the
model or the model with that operation applied; the test then takes what it finds, and
retries an unacknowledged producer append with its sequence (a duplicate exactly when
it was written). The next cycle starts a child again on the same directory. Segments
of 64 KiB and a small key-index memtable put kills inside segment rolls and index
flushes. Cycles: ``ODRADEK_POWER_LOSS_CYCLES`` (default 30), seed:
``ODRADEK_POWER_LOSS_SEED``; ``scripts/power-loss-soak.sh`` runs thousands.

The checker bites: ``test_the_checker_finds_a_sabotaged_durability_step`` removes one
durability step in the child (verified: the group commit's segment fsync, the topics
directory's fsync, the group progress file's fsync, the Kafka door's file fsyncs, the
schema ids' fsync) and makes the child run, first, an operation that the sabotage loses;
the checker must then report that loss by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import odradek
from odradek.config import TopicConfig
from odradek.groups.state import ProgressStore
from odradek.protocols.kafka.store import DoorStore
from odradek.schemas import compile_schema
from odradek.storage.powerloss import PowerLossDisk, restore

CHILD = Path(__file__).with_name("power_loss_child.py")
CYCLES = int(os.environ.get("ODRADEK_POWER_LOSS_CYCLES", "30"))
SEED = int(os.environ.get("ODRADEK_POWER_LOSS_SEED", "2468"))
KEYS_REPLAYED_WHOLE = 4  # keys whose whole stream read_key replays each cycle
TAIL_VERSIONS = 20  # the last versions of every other key that read_key replays each cycle
KILL_AFTER_SECONDS_MAX = 0.6  # random time the child runs after its first acknowledgement
START_SECONDS_MAX = 60.0  # hang guard for the child's imports and recovery, not a speed test

# The child's names (power_loss_child.py; test files do not import each other).
MAIN = "pl.main"
POOL = [f"pl.pool.{i}" for i in range(4)]
KEYS = [f"key-{i}" for i in range(40)]
PRODUCER = "pl-producer"
GROUP = "pl-group"
KAFKA_GROUP = "pl-kafka"


class Loss(AssertionError):
    """The restored data directory lost an acknowledged operation or is inconsistent."""


# -- the model: what the acknowledgements say the data directory holds ------------------


@dataclasses.dataclass
class PoolTopic:
    created_at: float
    retention_seconds: int | None
    values: list[str]
    schema: list[tuple[int, int, str]]  # (version, id, canonical text); [] if schemaless


@dataclasses.dataclass
class Model:
    main: list[tuple[str | None, str]] = dataclasses.field(default_factory=list)  # (key, value)
    main_retention_seconds: int | None = None
    key_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    last_producer: dict[str, Any] | None = None  # the last acknowledged producer append
    pool: dict[str, PoolTopic] = dataclasses.field(default_factory=dict)
    schema_ids: dict[int, str] = dataclasses.field(default_factory=dict)  # every id seen -> text
    group_settled: set[int] = dataclasses.field(default_factory=set)
    kafka_offset: int | None = None
    next_op: int = 0
    next_sequence: int = 0
    acknowledged: dict[str, int] = dataclasses.field(default_factory=dict)  # kind -> count
    in_flight_applied: int = 0  # unacknowledged operations found done after a cut
    in_flight_lost: int = 0  # unacknowledged operations found not done

    # Applying one operation (acknowledged, or in flight and found done) -------------------

    def apply_append(self, line: dict[str, Any], base: int) -> None:
        op, keys, topic = line["op"], line["keys"], line["topic"]
        values = [f"{op}:{index}" for index in range(len(keys))]
        if topic != MAIN:
            pool = self.pool[topic]
            if base != len(pool.values):
                raise Loss(
                    f"op {op}: append to {topic} acknowledged at offset {base}, expected {len(pool.values)}"
                )
            pool.values.extend(values)
            return
        if base != len(self.main):
            raise Loss(f"op {op}: append acknowledged at offset {base}, but the log held {len(self.main)}")
        versions: dict[str, int] = {}
        for key in keys:
            if key is not None:
                self.key_counts[key] = self.key_counts.get(key, 0) + 1
                versions[key] = self.key_counts[key]
        if "versions" in line and line["versions"] != versions:
            raise Loss(f"op {op}: acknowledged versions {line['versions']}, expected {versions}")
        self.main.extend(zip(keys, values))
        if line.get("producer") is not None:
            self.last_producer = {**line, "base": base}
            self.next_sequence = line["producer"] + 1

    def apply_settled(self, op: int, offsets: list[int]) -> None:
        again = self.group_settled.intersection(offsets)
        if again:
            raise Loss(f"op {op}: the group delivered settled offsets again: {sorted(again)[:10]}")
        self.group_settled.update(offsets)

    def apply_acknowledged(self, line: dict[str, Any]) -> None:
        kind, op = line["kind"], line["op"]
        self.acknowledged[kind] = self.acknowledged.get(kind, 0) + 1
        if line.get("refused"):
            self.acknowledged["refused"] = self.acknowledged.get("refused", 0) + 1
        elif kind == "append":
            self.apply_append(line, line["base"])
        elif kind == "create":
            info = line["schema_info"]
            schema = [] if info is None else [(info["version"], info["id"], info["text"])]
            self.pool[line["topic"]] = PoolTopic(line["created_at"], line["retention_seconds"], [], schema)
            self.remember_schemas(op, schema)
        elif kind == "delete":
            del self.pool[line["topic"]]
        elif kind == "alter":
            if line["topic"] == MAIN:
                self.main_retention_seconds = line["retention_seconds"]
            else:
                self.pool[line["topic"]].retention_seconds = line["retention_seconds"]
        elif kind == "schema":
            version = (line["version"], line["id"], line["text"])
            self.pool[line["topic"]].schema.append(version)
            self.remember_schemas(op, [version])
        elif kind == "group_ack":
            self.apply_settled(op, line["settled"])
        elif kind == "kafka_commit":
            self.kafka_offset = line["offset"]
        else:
            raise AssertionError(f"unknown operation {kind}")
        self.next_op = max(self.next_op, op + 1)

    def remember_schemas(self, op: int, versions: list[tuple[int, int, str]]) -> None:
        for _, schema_id, text in versions:
            known = self.schema_ids.setdefault(schema_id, text)
            if known != text:
                raise Loss(f"op {op}: schema id {schema_id} names two different schemas: {known} and {text}")


# -- running the child ------------------------------------------------------------------


def run_child_until_killed(
    tmp_path: Path, model: Model, seed: int, linger: float, sabotage: str | None = None
) -> list[dict[str, Any]]:
    """Start the child, SIGKILL it ``linger`` s after its first acknowledgement (a
    sabotaged child: once it waits); return its complete acknowledgement lines."""
    stderr_path = tmp_path / "child.stderr"
    arguments = [str(tmp_path / "data"), str(tmp_path / "intent.json"), str(model.next_op)]
    arguments += [str(model.next_sequence), str(seed)] + ([sabotage] if sabotage else [])
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), *arguments], stdout=subprocess.PIPE, stderr=stderr
        )
    lines: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    # A sabotaged child says when it waits for the kill (after the operation it loses).
    started = (lambda: b'"waiting"' in lines[-1]) if sabotage else (lambda: bool(lines))
    deadline = time.monotonic() + START_SECONDS_MAX
    while not (lines and started()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if lines:
        time.sleep(linger)
    died = process.poll()
    process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=30)
    assert process.stdout is not None
    process.stdout.close()
    if died is not None or not lines or not started():
        raise AssertionError(
            f"the child died by itself, acknowledged nothing or never waited: {stderr_path.read_text()}"
        )
    complete = [json.loads(line) for line in lines if line.endswith(b"\n")]  # a torn line is no ack
    return [line for line in complete if "waiting" not in line]


def in_flight(tmp_path: Path, acknowledged: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The operation the child had started and not acknowledged when it was killed."""
    intent = json.loads((tmp_path / "intent.json").read_text())
    if acknowledged and intent["op"] <= acknowledged[-1]["op"]:
        return None
    return dict(intent)


# -- the checks -------------------------------------------------------------------------


def retention_seconds(retention: object) -> int | None:
    return TopicConfig.build(retention=retention).retention_seconds


def check_main(client: odradek.EmbeddedClient, model: Model, pending: dict[str, Any] | None) -> None:
    batches = list(client.read(MAIN, wait=0))
    table = pa.Table.from_batches(batches) if batches else None
    found: list[tuple[str | None, str]] = []
    if table is not None:
        if table.column("offset").to_pylist() != list(range(table.num_rows)):
            raise Loss("the main topic's offsets are not dense from 0")
        keys = [None if k is None else k.decode() for k in table.column("key").to_pylist()]
        found = list(zip(keys, [v.decode() for v in table.column("value").to_pylist()]))
    expected = model.main
    if found != expected:
        tail = None
        if pending is not None and pending["kind"] == "append" and pending["topic"] == MAIN:
            tail = [(key, f"{pending['op']}:{index}") for index, key in enumerate(pending["keys"])]
        if tail is None or found != expected + tail:
            raise Loss(describe_difference(expected, found))
        model.apply_append(pending, len(expected))  # type: ignore[arg-type]
        model.in_flight_applied += 1
        pending["done"] = True  # type: ignore[index]
    info = client.describe_topic(MAIN)
    if info.damaged or info.status != "ok":
        raise Loss(f"the main topic reports damage: status {info.status}, {info.damaged}")
    if info.next_offset != len(model.main):
        raise Loss(f"the main topic's next offset is {info.next_offset}, it holds {len(model.main)} records")
    if table is not None:
        check_versions(table)
    for key in KEYS:
        if client.key_version(MAIN, key) != model.key_counts.get(key, 0):
            raise Loss(
                f"key_version of {key} is {client.key_version(MAIN, key)}, not {model.key_counts.get(key, 0)}"
            )
    if info.config["retention_seconds"] != model.main_retention_seconds:
        if not is_in_flight_alter(MAIN, info.config["retention_seconds"], pending):
            raise Loss(
                f"acknowledged retention of {MAIN} lost: {info.config['retention_seconds']} s, "
                f"acknowledged {model.main_retention_seconds} s"
            )
        model.main_retention_seconds = info.config["retention_seconds"]
        model.in_flight_applied += 1
        pending["done"] = True  # type: ignore[index]


def describe_difference(expected: list[tuple[str | None, str]], found: list[tuple[str | None, str]]) -> str:
    for offset, (want, got) in enumerate(zip(expected, found)):
        if want != got:
            return f"acknowledged append lost: offset {offset} holds {got}, acknowledged {want}"
    if len(found) < len(expected):
        return (
            f"acknowledged append lost: the main topic ends at {len(found)}, acknowledged records "
            f"go to {len(expected)} (first missing: {expected[len(found)]})"
        )
    return f"records nobody appended: {found[len(expected) : len(expected) + 3]} at {len(expected)}"


def check_versions(table: pa.Table) -> None:
    """Each key's versions are 1, 2, 3… in offset order, keyless records have none.
    Vectorized: the soak checks hundreds of thousands of records a cycle."""
    keys, versions = table.column("key"), table.column("version")
    if not pc.all(pc.equal(pc.is_null(keys), pc.is_null(versions))).as_py():
        raise Loss("a keyless record has a version, or a keyed one has none")
    keyed = pc.is_valid(keys)
    codes = pc.dictionary_encode(pc.filter(keys, keyed)).combine_chunks()
    groups = codes.indices.to_numpy()
    found = pc.filter(versions, keyed).to_numpy()
    order = np.argsort(groups, kind="stable")  # each key's records, in offset order
    groups, found = groups[order], found[order]
    starts = np.flatnonzero(np.diff(groups, prepend=-1))
    first = np.repeat(starts, np.diff(np.append(starts, len(groups))))
    wrong = np.flatnonzero(found != np.arange(len(groups)) - first + 1)
    if len(wrong):
        at = int(wrong[0])
        key = codes.dictionary[int(groups[at])].as_py()
        raise Loss(f"key {key!r} has version {found[at]} where {at - first[at] + 1} was due")


def check_key_streams(client: odradek.EmbeddedClient, model: Model, rng: random.Random) -> None:
    """``read_key`` replays each key's stream (versions and values) through the key index:
    a few keys from version 1, the others their last versions (a whole replay of every
    key each cycle would cost the soak the whole topic once per key)."""
    streams: dict[str, list[str]] = {}
    for key, value in model.main:
        if key is not None:
            streams.setdefault(key, []).append(value)
    whole = set(rng.sample(sorted(streams), min(KEYS_REPLAYED_WHOLE, len(streams))))
    for key, values in streams.items():
        first = 1 if key in whole else max(1, len(values) - TAIL_VERSIONS + 1)
        replay = client.read_key(MAIN, key, from_version=first)
        versions = replay.column("version").to_pylist()
        found = [value.decode() for value in replay.column("value").to_pylist()]
        if versions != list(range(first, len(values) + 1)) or found != values[first - 1 :]:
            raise Loss(f"read_key of {key} from version {first} does not replay its acknowledged records")


def is_in_flight_alter(topic: str, found: int | None, pending: dict[str, Any] | None) -> bool:
    return (
        pending is not None
        and pending["kind"] == "alter"
        and pending["topic"] == topic
        and found == retention_seconds(pending["retention"])
    )


def observe_pool_topic(client: odradek.EmbeddedClient, name: str) -> PoolTopic | None:
    if name not in client.list_topics():
        return None
    info = client.describe_topic(name)
    if info.damaged or info.status != "ok":
        raise Loss(f"topic {name} reports damage: status {info.status}, {info.damaged}")
    values: list[str] = []
    if info.schema is None:
        values = [
            v.decode() for batch in client.read(name, wait=0) for v in batch.column("value").to_pylist()
        ]
    schema = [(v.version, v.id, v.text) for v in client.schema_versions(name)]
    return PoolTopic(info.created_at, info.config["retention_seconds"], values, schema)


def with_in_flight(
    current: PoolTopic | None, pending: dict[str, Any], found: PoolTopic | None
) -> PoolTopic | None:
    """``current`` with the in-flight operation applied (details the operation chose
    itself, a creation time or a schema id, taken from what was found)."""
    kind = pending["kind"]
    if kind == "delete" or found is None:
        return None if kind == "delete" else current
    if kind == "create":
        schema = []
        if pending["schema"] is not None:
            schema = [(1, found.schema[0][1] if found.schema else -1, compile_schema(pending["schema"]).text)]
        return PoolTopic(found.created_at, retention_seconds(pending["retention"]), [], schema)
    if current is None:
        return None
    if kind == "alter":
        return dataclasses.replace(current, retention_seconds=retention_seconds(pending["retention"]))
    if kind == "append":
        values = [f"{pending['op']}:{index}" for index in range(len(pending["keys"]))]
        return dataclasses.replace(current, values=current.values + values)
    if kind == "schema":
        number = len(current.schema) + 1
        schema_id = found.schema[-1][1] if len(found.schema) == number else -1
        version = (number, schema_id, compile_schema(pending["schema"]).text)
        return dataclasses.replace(current, schema=[*current.schema, version])
    return current


def check_pool(client: odradek.EmbeddedClient, model: Model, pending: dict[str, Any] | None) -> None:
    if client.engine.unavailable_topics():
        raise Loss(f"unavailable topics: {client.engine.unavailable_topics()}")
    for name in POOL:
        found = observe_pool_topic(client, name)
        expected = model.pool.get(name)
        if found == expected:
            continue
        if (
            pending is None
            or pending.get("topic") != name
            or found != with_in_flight(expected, pending, found)
        ):
            raise Loss(describe_pool_difference(name, expected, found))
        if found is None:
            del model.pool[name]
        else:
            model.pool[name] = found
            model.remember_schemas(pending["op"], found.schema)
        model.in_flight_applied += 1
        pending["done"] = True


def describe_pool_difference(name: str, expected: PoolTopic | None, found: PoolTopic | None) -> str:
    if expected is None:
        return f"acknowledged deletion of {name} lost: the topic is back ({found})"
    if found is None:
        return f"acknowledged creation of {name} lost: the topic is gone"
    if found.created_at != expected.created_at:
        return (
            f"acknowledged deletion or creation of {name} lost: created at {found.created_at}, "
            f"not {expected.created_at}"
        )
    if found.retention_seconds != expected.retention_seconds:
        return (
            f"acknowledged retention of {name} lost: {found.retention_seconds} s, "
            f"acknowledged {expected.retention_seconds} s"
        )
    if found.schema != expected.schema:
        return f"acknowledged schema versions of {name} lost: {found.schema}, acknowledged {expected.schema}"
    return f"acknowledged append to {name} lost: {found.values[-3:]}, acknowledged {expected.values[-3:]}"


def check_schema_ids(client: odradek.EmbeddedClient, model: Model) -> None:
    """Every id names the schema it was acknowledged with, and the one topics use."""
    for schema_id, text in model.schema_ids.items():
        stored = client.engine.schema_by_id(schema_id)
        if stored != ("JSON", text):
            raise Loss(f"acknowledged schema id {schema_id} lost: it names {stored}, acknowledged {text}")
    for name in client.list_topics():
        for version in client.schema_versions(name):
            if client.engine.schema_by_id(version.id) != (version.kind, version.text):
                raise Loss(
                    f"{name} version {version.version} has id {version.id}, which names another schema"
                )


def check_group(data_dir: Path, model: Model, pending: dict[str, Any] | None) -> None:
    """What a restart considers settled is exactly what acks settled (the in-flight ack
    entirely or not at all)."""
    store = ProgressStore(str(data_dir / "groups" / f"{GROUP}.state"), fsync=False)
    state = store.load()
    store.close()
    settled = np.zeros(len(model.main), dtype=bool)
    if state is not None and MAIN in state.topics:
        progress = state.topics[MAIN]
        if max(progress.committed, *progress.ends.tolist(), 0) > len(model.main):
            raise Loss(f"the group settled offsets past the end of the log ({len(model.main)})")
        settled[: progress.committed] = True
        for start, end in zip(progress.starts.tolist(), progress.ends.tolist()):
            settled[start:end] = True
    acknowledged = np.zeros(len(model.main), dtype=bool)
    acknowledged[np.fromiter(model.group_settled, dtype=np.int64, count=len(model.group_settled))] = True
    lost = np.flatnonzero(acknowledged & ~settled)
    if len(lost):
        raise Loss(f"acknowledged group acks lost: offsets {lost[:10].tolist()} are not settled")
    extra = np.flatnonzero(settled & ~acknowledged).tolist()
    if extra:
        if pending is None or pending["kind"] != "group_ack" or not set(extra) <= set(pending["offsets"]):
            raise Loss(f"the group settled offsets no ack asked for: {extra[:10]}")
        model.apply_settled(pending["op"], extra)
        model.in_flight_applied += 1
        pending["done"] = True


def check_group_redelivery(client: odradek.EmbeddedClient, model: Model) -> None:
    """A member of the group is not handed what acks settled."""
    consumer = client.subscribe(MAIN, group=GROUP, start="earliest")
    try:
        delivered = {d.offset for d in consumer.poll(max_records=500, timeout=0)}
    finally:
        consumer.close()
    again = delivered & model.group_settled
    if again:
        raise Loss(f"the group delivers acknowledged offsets again: {sorted(again)[:10]}")


def check_kafka(data_dir: Path, model: Model, pending: dict[str, Any] | None) -> None:
    entry = DoorStore(str(data_dir)).load_groups().get(KAFKA_GROUP, {}).get((MAIN, 0))
    found = None if entry is None else entry[0]
    if found == model.kafka_offset:
        return
    if pending is not None and pending["kind"] == "kafka_commit" and found == pending["offset"]:
        model.kafka_offset = found
        model.in_flight_applied += 1
        pending["done"] = True
        return
    raise Loss(f"acknowledged Kafka offset commit lost: committed {found}, acknowledged {model.kafka_offset}")


def check_producer_retries(
    client: odradek.EmbeddedClient, model: Model, pending: dict[str, Any] | None
) -> None:
    """Retrying the last acknowledged producer sequence is a duplicate; retrying the
    in-flight one is a duplicate exactly when it was written (else it writes it now)."""
    last = model.last_producer
    if last is not None:
        records = [{"key": k, "value": f"{last['op']}:{i}".encode()} for i, k in enumerate(last["keys"])]
        result = client.append(MAIN, records, producer=(PRODUCER, last["producer"]))
        if not result.duplicate or result.base_offset != last["base"] or result.count != len(records):
            raise Loss(
                f"retry of acknowledged sequence {last['producer']} is not its duplicate: {result} "
                f"(acknowledged at {last['base']})"
            )
    if pending is None or pending["kind"] != "append" or pending.get("producer") is None:
        return
    records = [{"key": k, "value": f"{pending['op']}:{i}".encode()} for i, k in enumerate(pending["keys"])]
    result = client.append(MAIN, records, producer=(PRODUCER, pending["producer"]))
    if result.duplicate != bool(pending.get("done")):
        raise Loss(f"retry of in-flight sequence {pending['producer']}: duplicate is {result.duplicate}")
    if not result.duplicate:
        model.apply_append(pending, result.base_offset)


# -- one cycle --------------------------------------------------------------------------


def run_cycle(
    tmp_path: Path, model: Model, rng: random.Random, linger: float, sabotage: str | None = None
) -> dict[str, Any] | None:
    """Run a child, cut the power, check; return the in-flight operation, if any."""
    data_dir = tmp_path / "data"
    acknowledged = run_child_until_killed(tmp_path, model, rng.randrange(1 << 30), linger, sabotage)
    for line in acknowledged:
        model.apply_acknowledged(line)
    pending = in_flight(tmp_path, acknowledged)
    if pending is not None:
        model.next_op = max(model.next_op, pending["op"] + 1)
    restore(str(data_dir))
    check_group(data_dir, model, pending)
    check_kafka(data_dir, model, pending)
    with odradek.open(data_dir, retention_check_seconds=3600) as client:
        check_main(client, model, pending)
        check_key_streams(client, model, rng)
        check_pool(client, model, pending)
        check_schema_ids(client, model)
        check_group_redelivery(client, model)
        check_producer_retries(client, model, pending)
        check_main(client, model, None)  # the retries wrote nothing else
    if pending is not None and not pending.get("done"):
        model.in_flight_lost += 1
    return pending


@pytest.mark.slow
def test_power_loss_never_loses_an_acknowledged_operation(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    model = Model()
    for cycle in range(CYCLES):
        try:
            run_cycle(tmp_path, model, rng, rng.uniform(0.0, KILL_AFTER_SECONDS_MAX))
        except Loss as loss:
            raise Loss(f"cycle {cycle} (seed {SEED}): {loss}") from loss
    kinds = {"append", "refused", "create", "delete", "alter", "schema", "group_ack", "kafka_commit"}
    assert kinds <= set(model.acknowledged), (
        f"operations never acknowledged: {kinds - set(model.acknowledged)}"
    )
    print(
        f"power loss: {CYCLES} cycles, seed {SEED}, {sum(model.acknowledged.values())} operations "
        f"acknowledged {dict(sorted(model.acknowledged.items()))}, in flight at the cut: "
        f"{model.in_flight_applied} found done, {model.in_flight_lost} not done; losses: 0"
    )


SABOTAGES = {
    "group-commit-fsync": "acknowledged append lost",
    "topics-directory-fsync": "acknowledged (creation|deletion) of pl.pool.* lost",
    "group-progress-fsync": "acknowledged group acks lost",
    "kafka-store-fsync": "acknowledged Kafka offset commit lost",
    "schema-ids-fsync": "acknowledged schema id .* lost",
}


@pytest.mark.slow
@pytest.mark.parametrize("sabotage", sorted(SABOTAGES))
def test_the_checker_finds_a_sabotaged_durability_step(tmp_path: Path, sabotage: str) -> None:
    rng = random.Random(SEED)
    model = Model()
    run_cycle(tmp_path, model, rng, 0.3)  # an honest cycle first: a history to lose from
    with pytest.raises(Loss, match=SABOTAGES[sabotage]):
        run_cycle(tmp_path, model, rng, 0.0, sabotage)


def test_power_loss_disk_syncs_a_write_only_file(tmp_path: Path) -> None:
    """Goal: a file written atomically through a PowerLossDisk survives the cut.
    Method: write_atomically (write_new opens O_WRONLY, then fsync), restore, read back."""
    data_dir = tmp_path / "data"
    disk = PowerLossDisk(str(data_dir))
    disk.write_atomically(str(data_dir / "document.json"), b"{}")
    restore(str(data_dir))
    assert (data_dir / "document.json").read_bytes() == b"{}"


STALE_RUN_CHILD = Path(__file__).with_name("stale_run_child.py")


def cut_power_after(data_dir: Path, phase: str) -> None:
    """Run stale_run_child.py's phase until it is done, SIGKILL it, restore."""
    process = subprocess.Popen(
        [sys.executable, str(STALE_RUN_CHILD), str(data_dir), phase],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ready = process.stdout.readline()  # type: ignore[union-attr]
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert ready == b"ready\n", stderr.decode()
    restore(str(data_dir))


def test_a_key_index_run_removed_at_open_stays_removed(tmp_path: Path) -> None:
    """Goal: a key-index run written ahead of the log's fsync never describes records the
    log does not hold, across two power cuts.
    Method (stale_run_child.py): cut 1 keeps the run [4, 8) of 4 records of key b that
    were written but never synced, so the log ends at 4; the next open removes the run,
    and 4 keyless records are acknowledged (the log reaches 8, no run is written); cut 2.
    Key b then has no record: version 0, an empty replay, and ``expect={b: 0}`` holds."""
    data_dir = tmp_path / "data"
    cut_power_after(data_dir, "1")
    cut_power_after(data_dir, "2")
    with odradek.open(data_dir, retention_check_seconds=3600) as client:
        assert client.describe_topic("t").next_offset == 8
        assert client.key_version("t", b"a") == 4
        assert client.key_version("t", b"b") == 0, "key b has versions from records the power cut lost"
        assert client.read_key("t", b"b").num_rows == 0
        client.append("t", [{"key": b"b", "value": b"first"}], expect={b"b": 0})
