"""Conformance: every door gives the same answers and the same errors.

Goal: the public API of DESIGN §3 behaves identically through the embedded client,
the sync remote client (Arrow Flight) and the asyncio client, including the class and
attributes of every error. Method: one suite, parametrized by the ``client`` fixture
(conftest.py) over the three doors; each test uses only the public API and checks
results and errors exactly (``type(error) is ...``), never message text.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek import limits
from odradek.errors import (
    ConflictError,
    InvalidRequest,
    OffsetOutOfRange,
    RequestTooLarge,
    SequenceError,
    TopicExists,
    TopicNotFound,
)

Client = Any


def _values(batches: Any) -> list[bytes]:
    return [value for batch in batches for value in batch.column("value").to_pylist()]


def _raises(error_class: type[Exception], call: Any, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(error_class) as caught:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):  # a read: errors may come with the first batch
            list(result)
    assert type(caught.value) is error_class
    return caught.value


# -- topics ----------------------------------------------------------------------------


def test_topics_create_list_describe_delete(client: Client) -> None:
    info = client.create_topic("orders.eu.created", retention="30d")
    assert info.name == "orders.eu.created"
    assert (info.first_offset, info.next_offset, info.records) == (0, 0, 0)
    assert info.config["retention_seconds"] == 30 * 86400
    client.create_topic("orders.us.created")
    client.create_topic("payments")
    assert client.list_topics() == ["orders.eu.created", "orders.us.created", "payments"]
    assert client.list_topics("orders.>") == ["orders.eu.created", "orders.us.created"]
    assert client.list_topics("*.eu.*") == ["orders.eu.created"]
    client.append("payments", [{"key": b"p", "value": b"1"}])
    described = client.describe_topic("payments")
    assert (described.next_offset, described.records, described.keys) == (1, 1, 1)
    client.delete_topic("payments")
    assert client.list_topics() == ["orders.eu.created", "orders.us.created"]


def test_topic_errors(client: Client) -> None:
    client.create_topic("t")
    exists = _raises(TopicExists, client.create_topic, "t")
    assert exists.topic == "t"
    assert client.create_topic("t", exist_ok=True).name == "t"
    missing = _raises(TopicNotFound, client.describe_topic, "nope")
    assert missing.topic == "nope"
    _raises(TopicNotFound, client.delete_topic, "nope")
    _raises(TopicNotFound, client.append, "nope", [{"value": b"x"}])
    _raises(InvalidRequest, client.create_topic, "bad name!")
    _raises(InvalidRequest, client.create_topic, "_reserved")
    _raises(InvalidRequest, client.create_topic, "t2", retention="soon")
    _raises(InvalidRequest, client.list_topics, "a.>.b")


# -- appending ---------------------------------------------------------------------------


def test_append_from_dicts_batch_and_table(client: Client) -> None:
    client.create_topic("t")
    first = client.append("t", [{"key": b"a", "value": b"1"}, {"key": "b", "value": "2"}, {"value": b"3"}])
    assert (first.base_offset, first.count, first.versions) == (0, 3, {b"a": 1, b"b": 1})
    assert first.duplicate is False
    batch = pa.RecordBatch.from_pydict({"key": [b"a", b"a"], "value": [b"4", b"5"]})
    second = client.append("t", batch)
    assert (second.base_offset, second.count, second.versions) == (3, 2, {b"a": 3})
    headers = pa.array([[("h", b"v")], None], pa.map_(pa.utf8(), pa.binary()))
    table = pa.table({"value": pa.array(["6", "7"]), "headers": headers})
    third = client.append("t", table)
    assert (third.base_offset, third.count, third.versions) == (5, 2, {})
    batches = list(client.read("t", wait=0))
    assert _values(batches) == [b"1", b"2", b"3", b"4", b"5", b"6", b"7"]
    merged = pa.Table.from_batches(batches)
    assert merged.column("offset").to_pylist() == list(range(7))
    assert merged.column("version").to_pylist() == [1, 1, None, 2, 3, None, None]
    assert merged.column("headers").to_pylist()[5] == [("h", b"v")]


def test_append_many_keys_returns_every_version(client: Client) -> None:
    client.create_topic("t")
    keys = [b"key-%05d" % i for i in range(5000)]
    batch = pa.RecordBatch.from_pydict({"key": keys + keys[:10], "value": [b"v"] * 5010})
    result = client.append("t", batch)
    assert result.count == 5010
    assert len(result.versions) == 5000
    assert result.versions[keys[0]] == 2 and result.versions[keys[-1]] == 1


def test_timestamps_given_or_assigned(client: Client) -> None:
    client.create_topic("t")
    moment = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    before = datetime.datetime.now(datetime.UTC)
    client.append("t", [{"value": b"old", "timestamp": moment}, {"value": b"now"}])
    stamps = pa.Table.from_batches(list(client.read("t", wait=0))).column("timestamp").to_pylist()
    assert stamps[0] == moment
    assert stamps[1] >= before - datetime.timedelta(seconds=1)


def test_expect_conflicts_carry_key_expected_actual(client: Client) -> None:
    client.create_topic("t")
    client.append("t", [{"key": b"order-1", "value": b"created"}], expect={b"order-1": 0})
    client.append("t", [{"key": b"order-1", "value": b"paid"}], expect={"order-1": 1})
    conflict = _raises(
        ConflictError, client.append, "t", [{"key": b"order-1", "value": b"again"}], expect={b"order-1": 1}
    )
    assert (conflict.key, conflict.expected, conflict.actual) == (b"order-1", 1, 2)
    binary_key = bytes(range(250, 256))
    conflict = _raises(ConflictError, client.append, "t", [{"value": b"x"}], expect={binary_key: 3})
    assert (conflict.key, conflict.expected, conflict.actual) == (binary_key, 3, 0)
    offset_conflict = _raises(ConflictError, client.append, "t", [{"value": b"x"}], expect_offset=5)
    assert (offset_conflict.key, offset_conflict.expected, offset_conflict.actual) == (None, 5, 2)
    assert client.append("t", [{"value": b"ok"}], expect_offset=2).base_offset == 2
    assert client.describe_topic("t").next_offset == 3  # nothing of the refused appends was written
    _raises(InvalidRequest, client.append, "t", [{"value": b"x"}], expect={b"k": -1})


def test_producer_dedupe_and_sequence_errors(client: Client) -> None:
    client.create_topic("t")
    first = client.append("t", [{"key": b"a", "value": b"1"}], producer=("p1", 0))
    second = client.append("t", [{"key": b"a", "value": b"2"}], producer=("p1", 1))
    retry = client.append("t", [{"key": b"a", "value": b"2"}], producer=("p1", 1))
    assert retry.duplicate is True
    assert (retry.base_offset, retry.count, retry.versions) == (second.base_offset, 1, {b"a": 2})
    assert first.duplicate is False
    assert client.describe_topic("t").next_offset == 2
    gap = _raises(SequenceError, client.append, "t", [{"value": b"x"}], producer=("p1", 5))
    assert (gap.producer_id, gap.expected, gap.actual) == ("p1", 2, 5)
    _raises(InvalidRequest, client.append, "t", [{"value": b"x"}], producer="not-a-pair")


def test_invalid_appends(client: Client) -> None:
    client.create_topic("t")
    _raises(InvalidRequest, client.append, "t", [])
    _raises(InvalidRequest, client.append, "t", [{"key": 12, "value": b"x"}])
    _raises(InvalidRequest, client.append, "t", pa.table({"value": pa.array([1, 2])}))
    _raises(InvalidRequest, client.append, "t", "not records")
    _raises(RequestTooLarge, client.append, "t", [{"key": b"k" * (limits.key_bytes_max + 1), "value": b"x"}])


def test_request_too_large_from_the_server(client: Client) -> None:
    client.create_topic("t")
    big = pa.RecordBatch.from_pydict({"value": [b"x" * (256 * 1024)] * 8})  # 2 MiB > the suite's 1 MiB
    _raises(RequestTooLarge, client.append, "t", big)
    assert client.describe_topic("t").next_offset == 0


def test_append_many_appends_each_batch_atomically_in_order(client: Client) -> None:
    client.create_topic("t")
    batches = [[{"key": b"k", "value": b"%d-%d" % (batch, i)} for i in range(3)] for batch in range(20)]
    results = client.append_many("t", (batch for batch in batches), window=4)  # any iterable
    assert [(result.base_offset, result.count) for result in results] == [(3 * i, 3) for i in range(20)]
    assert [dict(result.versions) for result in results] == [{b"k": 3 * i + 3} for i in range(20)]
    assert _values(client.read("t", wait=0)) == [record["value"] for batch in batches for record in batch]
    assert client.append_many("t", []) == []
    one = client.append_many("t", [pa.RecordBatch.from_pydict({"value": [b"x"]})], window=1)
    assert [(result.base_offset, result.count, dict(result.versions)) for result in one] == [(60, 1, {})]


def test_append_many_stops_at_a_refused_batch(client: Client) -> None:
    client.create_topic("t")
    small = [{"value": b"ok"}]
    big = pa.RecordBatch.from_pydict({"value": [b"x" * (256 * 1024)] * 8})  # over the suite's 1 MiB
    _raises(RequestTooLarge, client.append_many, "t", [small, small, big, small])
    assert client.describe_topic("t").next_offset == 2  # the two before it, none after
    _raises(InvalidRequest, client.append_many, "t", [small, [], small])
    assert client.describe_topic("t").next_offset == 3
    _raises(TopicNotFound, client.append_many, "nope", [small])
    _raises(InvalidRequest, client.append_many, "t", [small], window=0)
    _raises(InvalidRequest, client.append_many, "t", [small], window=True)
    assert client.append("t", small).base_offset == 3  # the client still appends afterwards
    assert [result.base_offset for result in client.append_many("t", [small, small])] == [4, 5]


# -- reading -------------------------------------------------------------------------------


def test_read_starts(client: Client) -> None:
    client.create_topic("t")
    client.append("t", [{"value": b"%d" % i} for i in range(5)])
    assert _values(client.read("t", start="earliest", wait=0)) == [b"0", b"1", b"2", b"3", b"4"]
    assert _values(client.read("t", start=3, wait=0)) == [b"3", b"4"]
    assert _values(client.read("t", start="latest", wait=0)) == []
    time.sleep(0.01)
    middle = datetime.datetime.now(datetime.UTC)
    time.sleep(0.01)
    client.append("t", [{"value": b"5"}])
    assert _values(client.read("t", start=middle, wait=0)) == [b"5"]
    assert _values(client.read("t", start=middle.isoformat(), wait=0)) == [b"5"]
    pieces = list(client.read("t", wait=0, max_records=2))
    assert max(batch.num_rows for batch in pieces) == 2
    assert _values(pieces) == [b"0", b"1", b"2", b"3", b"4", b"5"]


def test_read_waits_for_new_records(client: Client) -> None:
    client.create_topic("t")
    client.append("t", [{"value": b"a"}])
    timer = threading.Timer(0.3, lambda: client.append("t", [{"value": b"b"}]))
    timer.start()
    started = time.monotonic()
    try:
        assert _values(client.read("t", start="earliest", wait=2.0)) == [b"a", b"b"]
    finally:
        timer.join()
    assert time.monotonic() - started >= 2.0  # ends `wait` seconds after the last arrival


def test_wildcard_read_adds_topic_and_picks_up_new_topics(client: Client) -> None:
    client.create_topic("orders.eu.created")
    client.create_topic("orders.us.created")
    client.create_topic("payments.eu")
    client.append("orders.eu.created", [{"value": b"eu"}])
    client.append("orders.us.created", [{"value": b"us"}])
    client.append("payments.eu", [{"value": b"pay"}])
    seen: list[tuple[str, bytes]] = []
    stream = client.read("orders.>", start="earliest", wait=5.0)
    try:
        for batch in stream:
            assert batch.schema.names[-1] == "topic"
            topics, values = batch.column("topic").to_pylist(), batch.column("value").to_pylist()
            seen.extend(zip(topics, values, strict=True))
            if len(seen) == 2:  # caught up: a topic created now must be picked up
                client.create_topic("orders.ap.created")
                client.append("orders.ap.created", [{"value": b"ap"}])
            if len(seen) == 3:
                break
    finally:
        if hasattr(stream, "close"):
            stream.close()
    assert sorted(seen) == [
        ("orders.ap.created", b"ap"),
        ("orders.eu.created", b"eu"),
        ("orders.us.created", b"us"),
    ]


def test_read_errors(client: Client) -> None:
    client.create_topic("t")
    client.append("t", [{"value": b"a"}, {"value": b"b"}])
    out_of_range = _raises(OffsetOutOfRange, client.read, "t", start=7, wait=0)
    assert (out_of_range.requested, out_of_range.first, out_of_range.next_offset) == (7, 0, 2)
    _raises(TopicNotFound, client.read, "nope", wait=0)
    _raises(InvalidRequest, client.read, "t", start="yesterday-ish", wait=0)
    _raises(InvalidRequest, client.read, "t", wait=-1)


def test_wildcard_read_errors_and_an_empty_match(client: Client) -> None:
    _raises(InvalidRequest, client.read, "a.>.b", wait=0)
    assert list(client.read("nothing.*", wait=0)) == []


def test_fetch(client: Client) -> None:
    client.create_topic("t")
    client.append("t", [{"value": b"%d" % i} for i in range(10)])
    assert _values(client.fetch("t", 4, max_records=3)) == [b"4", b"5", b"6"]
    assert client.fetch("t", 10) == []
    _raises(OffsetOutOfRange, client.fetch, "t", 11)


def test_read_key_and_key_version(client: Client) -> None:
    client.create_topic("t")
    for step in range(4):
        client.append("t", [{"key": b"k", "value": b"v%d" % step}, {"key": b"other", "value": b"o"}])
    table = client.read_key("t", b"k")
    assert table.column("value").to_pylist() == [b"v0", b"v1", b"v2", b"v3"]
    assert table.column("version").to_pylist() == [1, 2, 3, 4]
    assert table.column("offset").to_pylist() == [0, 2, 4, 6]
    assert client.read_key("t", "k", from_version=2, to_version=3).column("version").to_pylist() == [2, 3]
    assert client.read_key("t", b"missing").num_rows == 0
    assert client.key_version("t", b"k") == 4
    assert client.key_version("t", "other") == 4
    assert client.key_version("t", b"missing") == 0
    _raises(TopicNotFound, client.key_version, "nope", b"k")
    _raises(TopicNotFound, client.read_key, "nope", b"k")
    _raises(InvalidRequest, client.read_key, "t", b"k", from_version=0)


def test_public_names_are_exported() -> None:
    assert odradek.connect is not None and odradek.connect_async is not None
    assert issubclass(odradek.AsyncClient, object)
