"""Corruption matrix: damaged files are detected, reported and never become silent loss.

Goal: for every kind of file in a data directory, and for a flipped byte, a truncation
and a deletion, in the active and in a sealed segment, Odradek (1) opens and keeps
serving every other topic, (2) never hands out an acknowledged offset again, (3) never
loses an acknowledged record without reporting its offsets as damaged, (4) never returns
a wrong record, (5) never assigns a key version twice unless an operator accepted a
loss, and (6) does exactly what docs/reliability.md's table says for that case.

Method: build a data directory with keyed idempotent appends over several 64 KiB
segments, key-index runs (a small memtable), producer snapshots, a consumer group with
acknowledged progress, a schema'd topic, the Kafka door's files and the Schema
Registry's subjects; close it; damage one file; reopen and check the invariants, then
the case's own expectation. The case table is ``CASES``; docs/reliability.md is
written from it (a test checks the doc lists every case).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek import limits
from odradek.groups.state import ProgressStore
from odradek.protocols.kafka.store import DoorStore
from odradek.protocols.registry.subjects import SubjectStore

VICTIM = "victim"
OTHER = "other"
KEYS = [f"k{i}" for i in range(20)]
BATCHES = 24
PER_BATCH = 40
ACKED_BY_GROUP = 200  # the group acks the first this many records, in two acks
DOCS = Path(__file__).parents[2] / "docs" / "reliability.md"


@dataclasses.dataclass
class Built:
    data: Path
    acked: pa.Table  # offset, key, value, version of every acknowledged record
    next_offset: int
    last_sequence: int
    first_done_frame: tuple[int, int]  # byte range of the group's first DONE frame


def build(data: Path) -> Built:
    rows: dict[str, list[Any]] = {"offset": [], "key": [], "value": [], "version": []}
    with odradek.open(data, retention_check_seconds=3600) as client:
        client.create_topic(VICTIM, segment_bytes="64KiB", retention=None)
        client.create_topic(OTHER)
        client.create_topic(
            "typed", schema={"type": "record", "name": "T", "fields": [{"name": "a", "type": "long"}]}
        )
        client.append(OTHER, [{"key": "o", "value": b"x"}] * 10)
        sequence = 0
        for batch in range(BATCHES):
            keys = [KEYS[(batch * PER_BATCH + i) % len(KEYS)] for i in range(PER_BATCH)]
            records = [
                {"key": key, "value": f"{batch}:{i}:".encode() + b"v" * 300} for i, key in enumerate(keys)
            ]
            result = client.append(VICTIM, records, producer=("producer", sequence))
            sequence += 1
            following = {key: version - keys.count(key.decode()) for key, version in result.versions.items()}
            for i, record in enumerate(records):
                key = record["key"].encode()
                following[key] += 1
                rows["offset"].append(result.base_offset + i)
                rows["key"].append(key)
                rows["value"].append(record["value"])
                rows["version"].append(following[key])
        consumer = client.subscribe(VICTIM, group="g", start="earliest", ordering="topic")
        delivered: list[Any] = []
        while len(delivered) < ACKED_BY_GROUP:
            delivered.extend(consumer.poll(max_records=ACKED_BY_GROUP - len(delivered), timeout=1.0))
        consumer.ack(delivered[:100])
        consumer.ack(delivered[100:ACKED_BY_GROUP])
        consumer.close()
        next_offset = client.describe_topic(VICTIM).next_offset
    doors = DoorStore(str(data))
    doors.set_partitions(VICTIM, "1" * 32, 3)
    doors.next_producer_id()
    doors.save_group("kafka-group", {(VICTIM, 0): (100, 0, None)})
    doors.save_group("kafka-group", {(VICTIM, 0): (150, 0, None)})
    SubjectStore(str(data)).add_version("extra-value", "AVRO", '"string"', 99)
    return Built(data, pa.table(rows), next_offset, sequence - 1, _first_done_frame(data))


def _first_done_frame(data: Path) -> tuple[int, int]:
    raw = (data / "groups" / "g.state").read_bytes()
    position = 0
    while position < len(raw):
        length, kind = int.from_bytes(raw[position + 8 : position + 12], "little"), raw[position + 12]
        end = position + 13 + length
        if kind == 3:
            return position, end
        position = end
    raise AssertionError("no DONE frame")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Built:
    saved = limits.key_index_memtable_entries_max
    limits.key_index_memtable_entries_max = 150  # several key-index runs
    try:
        return build(tmp_path_factory.mktemp("pristine") / "data")
    finally:
        limits.key_index_memtable_entries_max = saved


@pytest.fixture
def built(pristine: Built, tmp_path: Path) -> Built:
    copy = tmp_path / "data"
    shutil.copytree(pristine.data, copy)
    return dataclasses.replace(pristine, data=copy)


# -- damage ------------------------------------------------------------------------------


def _segments(built: Built) -> list[Path]:
    return sorted((built.data / "topics" / VICTIM).glob("*.log"))


def _files(kind: str, where: str, built: Built) -> list[Path]:
    topic = built.data / "topics" / VICTIM
    if kind == "segment":
        segments = _segments(built)
        return [segments[-1] if where == "active" else segments[1]]
    if kind == "index":
        return [sorted(topic.glob("*.index"))[1]]
    if kind == "key-index run":
        return [sorted((topic / "keys").glob("run-*.arrow"))[0]]
    if kind == "producer snapshot":
        return [sorted((topic / "producers").glob("*.json"))[-1]]
    if kind == "topic.json":
        both = [topic / "topic.json", topic / "topic.json.copy"]
        return both[:1] if where == "one copy" else both
    if kind == "head":
        return [topic / "head"]
    if kind == "group progress":
        return [built.data / "groups" / "g.state"]
    if kind == "schema ids":
        return [built.data / "schemas" / "ids.json"]
    if kind == "kafka door":
        return sorted((built.data / "kafka").glob("*.json"))  # every first copy; the copies stay
    if kind == "kafka group offsets":
        newest = max(
            (built.data / "kafka" / "groups").iterdir(),
            key=lambda p: int(re.search(rb"generation=(\d+)", p.read_bytes()).group(1)),  # type: ignore[union-attr]
        )
        return [newest]
    if kind == "registry subjects":
        return [built.data / "registry" / "subjects.json"]
    raise AssertionError(kind)


def damage(path: Path, mode: str, built: Built, kind: str, where: str) -> None:
    if mode == "delete":
        path.unlink()
        return
    raw = bytearray(path.read_bytes())
    if mode == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
        return
    if kind == "group progress":
        position = (built.first_done_frame[0] + built.first_done_frame[1]) // 2  # inside the first ack
    elif kind == "segment" and where == "active":
        position = len(raw) // 3  # a frame that valid frames follow
    else:
        position = len(raw) // 2
    raw[position] ^= 0x10
    path.write_bytes(bytes(raw))


# -- the cases ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str
    where: str
    mode: str
    status: str  # victim's status after reopen and a full read: ok | damaged | read-only | unavailable
    behaviour: str  # what Odradek does (the row of docs/reliability.md)

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.where}-{self.mode}".replace(" ", "_")


# fmt: off
CASES = [
    Case("segment", "active", "flip", "read-only",
         "the frames after the damaged one are kept; its offsets are reported damaged and never reused; "
         "appends wait for `topic repair` (key versions were rebuilt across the damage)"),
    Case("segment", "active", "truncate", "read-only",
         "the head file proves acknowledged offsets are missing: reported damaged, never reused; "
         "appends wait for `topic repair`"),
    Case("segment", "active", "delete", "read-only",
         "as for a truncation: the missing offsets are reported and never reused"),
    Case("segment", "sealed", "flip", "damaged",
         "the frame fails its checksum when first read: reported damaged and skipped; key versions come from "
         "the key index, so appends go on"),
    Case("segment", "sealed", "truncate", "damaged",
         "the index no longer fits the file: the segment is rescanned, the lost offsets reported; "
         "appends go on"),
    Case("segment", "sealed", "delete", "damaged",
         "the offsets no segment holds are reported damaged; the rest serves; appends go on"),
    Case("index", "sealed", "flip", "ok", "the index fails its checksum: rebuilt by scanning its segment"),
    Case("index", "sealed", "truncate", "ok", "rebuilt by scanning its segment"),
    Case("index", "sealed", "delete", "ok", "rebuilt by scanning its segment"),
    Case("key-index run", "any", "flip", "ok",
         "the run fails its checksum: discarded and the key index rebuilt from the log"),
    Case("key-index run", "any", "truncate", "ok", "discarded and rebuilt from the log"),
    Case("key-index run", "any", "delete", "ok",
         "the runs after the gap are discarded; rebuilt from the log"),
    Case("producer snapshot", "any", "flip", "ok",
         "fails its checksum: an older snapshot and the log's frames rebuild the producer state"),
    Case("producer snapshot", "any", "truncate", "ok", "as for a flipped byte"),
    Case("producer snapshot", "any", "delete", "ok", "as for a flipped byte"),
    Case("topic.json", "one copy", "flip", "ok", "fails its checksum: the other copy is used"),
    Case("topic.json", "one copy", "truncate", "ok", "the other copy is used"),
    Case("topic.json", "one copy", "delete", "ok", "the other copy is used"),
    Case("topic.json", "both copies", "flip", "unavailable",
         "the topic is listed as unavailable with the file and the reason; every other topic serves"),
    Case("topic.json", "both copies", "truncate", "unavailable",
         "the topic is listed as unavailable with the file and the reason; every other topic serves"),
    Case("topic.json", "both copies", "delete", "unavailable",
         "the topic is unavailable (its metadata is missing), never silently gone; other topics serve"),
    Case("head", "any", "flip", "ok",
         "fails its checksum and is ignored (it is a hint); rewritten by the next append"),
    Case("head", "any", "delete", "ok", "ignored; rewritten by the next append"),
    Case("group progress", "any", "flip", "ok",
         "the frames after the damage are kept; only the acks in the damaged frame are delivered again; "
         "the damaged file is kept as `.damaged` and the progress rewritten"),
    Case("group progress", "any", "truncate", "ok",
         "a torn tail: the acks after the cut are delivered again (at least once, never skipped)"),
    Case("group progress", "any", "delete", "ok",
         "the group is gone: a member joining it again starts from its `start` (delivered again, "
         "never skipped)"),
    Case("schema ids", "one copy", "flip", "ok", "fails its checksum: the other copy is used"),
    Case("kafka door", "first copies", "flip", "ok",
         "cluster id, topic settings, producer-id block: each fails its checksum and its other copy is used"),
    Case("kafka group offsets", "newest copy", "flip", "ok",
         "the previous commit is used (the consumer re-reads from it)"),
    Case("registry subjects", "one copy", "flip", "ok", "fails its checksum: the other copy is used"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corruption_case(built: Built, case: Case) -> None:
    files = _files(case.kind, case.where, built)
    assert files, f"no file to damage for {case.id}"
    for path in files:
        damage(path, case.mode, built, case.kind, case.where)
    with odradek.open(built.data, retention_check_seconds=3600) as client:
        assert _table(client, OTHER).num_rows == 10  # every other topic serves
        if case.status == "unavailable":
            _check_unavailable(client)
            return
        _check_victim(client, built, case)
        _check_group(client, built, case)
        _check_documents(built, case)
        assert client.engine.unavailable_topics() == {}


def _table(client: odradek.EmbeddedClient, topic: str) -> pa.Table:
    return pa.Table.from_batches(list(client.read(topic, wait=0)))


def _check_unavailable(client: odradek.EmbeddedClient) -> None:
    assert VICTIM not in client.list_topics()
    (reason,) = client.engine.unavailable_topics().values()
    assert "topic.json" in reason
    with pytest.raises(odradek.DataDamaged, match=r"topic\.json"):
        client.describe_topic(VICTIM)
    with pytest.raises(odradek.TopicExists, match="unavailable"):
        client.create_topic(VICTIM)
    client.delete_topic(VICTIM)  # an operator can remove it, then create it anew
    client.create_topic(VICTIM)


def _check_victim(client: odradek.EmbeddedClient, built: Built, case: Case) -> None:
    table = _table(client, VICTIM)
    info = client.describe_topic(VICTIM)
    assert info.status == case.status, info
    damaged = [(d["first_offset"], d["end_offset"]) for d in info.damaged]
    acked = built.acked
    acked_offsets = acked.column("offset").to_pylist()
    read = dict(zip(table.column("offset").to_pylist(), range(table.num_rows)))
    missing = [o for o in acked_offsets if o not in read]
    # No silent loss: every acknowledged record is readable or inside a reported range.
    assert all(any(a <= o < b for a, b in damaged) for o in missing), (missing[:5], damaged)
    assert bool(missing) == (case.status in ("damaged", "read-only"))
    # Never a wrong record: what is read is what was acknowledged at that offset.
    positions = [read[o] for o in acked_offsets if o in read]
    rows = [i for i, o in enumerate(acked_offsets) if o in read]
    for column in ("key", "value", "version"):
        assert table.column(column).take(positions).to_pylist() == acked.column(column).take(rows).to_pylist()
    # Never an offset or a key version handed out twice.
    k0_max = max(
        v for k, v in zip(acked.column("key").to_pylist(), acked.column("version").to_pylist()) if k == b"k0"
    )
    if case.status == "read-only":
        with pytest.raises(odradek.DataDamaged, match="topic repair"):
            client.append(VICTIM, [{"key": "k0", "value": b"new"}])
        lost = [(a, b - 1) for a, b in damaged]
        client.repair_topic(VICTIM, drop_range=lost)
        assert client.describe_topic(VICTIM).status == "damaged"
    result = client.append(VICTIM, [{"key": "k0", "value": b"new"}])
    assert result.base_offset >= built.next_offset
    if case.status == "ok":
        assert result.versions[b"k0"] == k0_max + 1
        assert client.key_version(VICTIM, "k0") == k0_max + 1
        assert client.read_key(VICTIM, "k0").column("version").to_pylist() == list(range(1, k0_max + 2))
        retry = client.append(
            VICTIM, [{"key": "x", "value": b"x"}], producer=("producer", built.last_sequence)
        )
        assert retry.duplicate  # the producer state came back too
    else:
        assert result.versions[b"k0"] >= 1


def _check_group(client: odradek.EmbeddedClient, built: Built, case: Case) -> None:
    """Acked records are never lost from the group's view in a way that skips records:
    a record is either settled in the progress file or delivered again."""
    store = ProgressStore(str(built.data / "groups" / "g.state"), fsync=False)
    state = store.load()
    store.close()
    if case.kind == "group progress" and case.mode == "delete":
        assert state is None
        return
    assert state is not None
    if case.kind == "group progress" and case.mode == "truncate" and VICTIM not in state.topics:
        return  # the cut went through the group's first frames: everything is delivered again
    progress = state.topics[VICTIM]
    settled = set(range(progress.committed))
    for start, end in zip(progress.starts.tolist(), progress.ends.tolist()):
        settled.update(range(start, end))
    assert settled <= set(range(ACKED_BY_GROUP))  # nothing unacked counts as settled
    if case.kind == "group progress" and case.mode == "flip":
        assert settled == set(range(100, ACKED_BY_GROUP))  # only the damaged ack is lost
        assert (built.data / "groups" / "g.state.damaged").exists()
    elif case.kind == "group progress" and case.mode == "truncate":
        assert settled in (set(), set(range(100)))
    else:
        assert settled == set(range(ACKED_BY_GROUP))


def _check_documents(built: Built, case: Case) -> None:
    doors = DoorStore(str(built.data))
    assert doors.partitions(VICTIM, "1" * 32) == 3
    offsets = doors.load_groups()["kafka-group"][(VICTIM, 0)][0]
    assert offsets == (100 if case.kind == "kafka group offsets" else 150)
    assert doors.next_producer_id() > 1  # never an id handed out before
    assert [v.version for v in SubjectStore(str(built.data)).versions("extra-value") or []] == [1]


def test_the_reliability_page_lists_every_case() -> None:
    text = DOCS.read_text()
    for case in CASES:
        row = f"| {case.kind} | {case.where} | {case.mode} | {case.status} | {case.behaviour} |"
        assert row in text, f"docs/reliability.md lacks the row {row}"


def table_rows() -> str:
    """The corruption table of docs/reliability.md (printed by `python -m ...`)."""
    return "\n".join(f"| {c.kind} | {c.where} | {c.mode} | {c.status} | {c.behaviour} |" for c in CASES)


if __name__ == "__main__":
    print(table_rows())
