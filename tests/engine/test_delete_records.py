"""Deleting records below an offset (Kafka's DeleteRecords): the topic's log start.

Goal: ``Engine.delete_records(topic, before)`` moves the topic's first offset to
``before`` for every reader: a read from "earliest", ``fetch``, ``read_key`` and
``describe_topic`` show nothing below it, a read starting below it is refused as out of
range, key versions go on where they were, the start never moves back, and all of it
holds after the engine is closed and opened again. Whole segments below the start are
removed from the disk; a start past the durable end is refused and changes nothing.

Method: an embedded client over a temporary data directory (and one over a file://
object store, opened again on an empty cache); topics with 64 KiB segments and ~8 KiB
records so a few dozen appends roll several segments, whose boundaries are read from
the segment file names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.errors import InvalidRequest, OffsetOutOfRange

RECORD = 8000


def segment_bases(data_dir: str, topic: str) -> list[int]:
    directory = os.path.join(data_dir, "topics", topic)
    return sorted(int(name[:-4]) for name in os.listdir(directory) if name.endswith(".log"))


def fill(client: odradek.EmbeddedClient, topic: str, count: int, size: int = 8) -> None:
    for index in range(count):
        client.append(topic, [{"key": f"k{index % 3}", "value": bytes([index % 256]) * size}])


def offsets(client: odradek.EmbeddedClient, topic: str, **options: Any) -> list[int]:
    batches = list(client.read(topic, start="earliest", wait=0, **options))
    return pa.Table.from_batches(batches).column("offset").to_pylist() if batches else []


def test_records_below_the_start_are_gone_for_every_reader(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    fill(client, "t", 10)
    assert client.engine.delete_records("t", 4) == 4
    assert offsets(client, "t") == list(range(4, 10))
    info = client.describe_topic("t")
    assert (info.first_offset, info.next_offset, info.records) == (4, 10, 6)
    # k0 was written at offsets 0, 3, 6, 9 (versions 1-4): versions 1 and 2 are gone.
    assert client.read_key("t", "k0").column("version").to_pylist() == [3, 4]
    assert client.read_key("t", "k0").column("offset").to_pylist() == [6, 9]
    with pytest.raises(OffsetOutOfRange):
        client.engine.fetch("t", 3)
    assert client.engine.fetch("t", 4)[0].column("offset")[0].as_py() == 4
    # Versions go on: the next k0 record is version 5.
    assert client.append("t", [{"key": "k0", "value": b"x"}]).versions == {b"k0": 5}


def test_the_start_never_moves_back_and_may_reach_the_end(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    fill(client, "t", 5)
    assert client.engine.delete_records("t", 3) == 3
    assert client.engine.delete_records("t", 1) == 3
    assert client.engine.delete_records("t", 5) == 5
    assert offsets(client, "t") == []
    assert client.read_key("t", "k1").num_rows == 0
    fill(client, "t", 2)
    assert offsets(client, "t") == [5, 6]


def test_past_the_end_is_refused_and_changes_nothing(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    fill(client, "t", 5)
    with pytest.raises(OffsetOutOfRange):
        client.engine.delete_records("t", 6)
    with pytest.raises(InvalidRequest):
        client.engine.delete_records("t", -1)
    assert offsets(client, "t") == list(range(5))


def test_the_start_survives_a_restart_and_whole_segments_go(
    client: odradek.EmbeddedClient,
    data_dir: str,
    reopen: Callable[..., odradek.EmbeddedClient],
) -> None:
    client.create_topic("t", segment_bytes="64KiB")
    fill(client, "t", 40, size=RECORD)
    bases = segment_bases(data_dir, "t")
    assert len(bases) >= 4
    cut = bases[2] + 1  # inside the third segment
    assert client.engine.delete_records("t", cut) == cut
    assert segment_bases(data_dir, "t") == bases[2:]  # the two below it are removed
    versions = client.read_key("t", "k0").column("version").to_pylist()
    client = reopen(client)
    assert offsets(client, "t") == list(range(cut, 40))
    assert client.describe_topic("t").first_offset == cut
    assert client.read_key("t", "k0").column("version").to_pylist() == versions
    assert min(client.read_key("t", "k2").column("offset").to_pylist()) >= cut
    assert client.append("t", [{"key": "k0", "value": b"x"}]).versions == {b"k0": versions[-1] + 1}
    with pytest.raises(OffsetOutOfRange):
        list(client.read("t", start=cut - 1, wait=0))


def test_the_start_is_kept_in_an_object_store(tmp_path: os.PathLike[str]) -> None:
    """Through the storage seam: a second engine on an empty cache reads the start from
    the store."""
    root = os.fspath(tmp_path)
    bucket = os.path.join(root, "bucket")
    os.makedirs(bucket)
    first = odradek.open(os.path.join(root, "cache-1"), store="file://" + bucket)
    try:
        first.create_topic("t")
        fill(first, "t", 10)
        assert first.engine.delete_records("t", 4) == 4
    finally:
        first.close()
    second = odradek.open(os.path.join(root, "cache-2"), store="file://" + bucket)
    try:
        assert offsets(second, "t") == list(range(4, 10))
        assert second.describe_topic("t").first_offset == 4
        assert second.read_key("t", "k0").column("offset").to_pylist() == [6, 9]
    finally:
        second.close()
