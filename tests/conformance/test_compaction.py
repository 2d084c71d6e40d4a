"""Conformance of compacted topics: ``cleanup="compact"`` behaves the same through every
door.

Goal: a compacted topic is created and described alike everywhere; after a round a read
holds each key's latest record of the sealed segments (offsets keep their gaps) and the
whole active segment, a tombstone reads back as a null value, ``read_key`` still answers
the latest and ``key_version`` never moves; keyless records are refused with the same
error class. Method: the ``door`` fixture (conftest.py) runs each test through every
client and storage backend; the round is the background thread's, run here by hand on
the node behind the door (``Engine.compact(force=True)``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import InvalidRequest

Client = Any
KEYS = 5
ROUNDS = 12
VALUE_BYTES = 8000  # 12 rounds of 5 keys: several 64 KiB segments


def _read(client: Client, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    rows: list[tuple[int, bytes, bytes | None]] = []
    for batch in client.read(topic, start="earliest", wait=0):
        table = pa.Table.from_batches([batch])
        rows += zip(*(table.column(name).to_pylist() for name in ("offset", "key", "value")), strict=True)
    return rows


def test_a_round_keeps_the_latest_record_of_each_key_everywhere(door: Any) -> None:
    client = door.client
    info = client.create_topic("changelog", cleanup="compact", segment_bytes="64KiB")
    assert info.config["cleanup"] == "compact"
    for round_number in range(ROUNDS):
        records = [
            {"key": b"k%d" % key, "value": b"%d-%d:" % (round_number, key) + b"." * VALUE_BYTES}
            for key in range(KEYS)
        ]
        if round_number == ROUNDS - 1:
            records[0]["value"] = None  # a tombstone for k0, kept for delete_retention
        client.append("changelog", records)
    before = _read(client, "changelog")
    door.node.engine.compact(force=True)
    after = _read(client, "changelog")
    assert len(after) < len(before), "the round removed nothing: the test proved nothing"
    assert set(after) <= set(before)  # every record kept as it was, at its offset
    latest = {row[1]: row for row in before}  # the last of each key
    for key, row in latest.items():
        assert row in after, f"{key!r}: its latest record is gone"
        assert [r for r in after if r[1] == key][-1] == row
    assert latest[b"k0"][2] is None  # the tombstone reads back as a null value
    assert client.read_key("changelog", b"k1").column("value").to_pylist()[-1] == latest[b"k1"][2]
    assert client.key_version("changelog", b"k1") == ROUNDS
    assert client.describe_topic("changelog").next_offset == ROUNDS * KEYS


def test_a_compacted_topic_refuses_keyless_records_everywhere(client: Client) -> None:
    client.create_topic("changelog", cleanup="compact")
    with pytest.raises(InvalidRequest) as refused:
        client.append("changelog", [{"key": b"a", "value": b"1"}, {"value": b"keyless"}])
    assert type(refused.value) is InvalidRequest
    assert client.describe_topic("changelog").next_offset == 0  # nothing of it was written
