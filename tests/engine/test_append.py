"""Appends: formats, atomicity, dense offsets, per-key versions, timestamps, headers,
limits, refusals; plus a stateful model test of the whole write/read path.

Goal: an append of a list of dicts, a RecordBatch or a (multi-chunk) Table is written
as one unit at dense offsets; each keyed record gets the next version of its key
(1, 2, 3…), keyless records none; absent timestamps are set by the server, given ones
and headers are kept exactly; str keys and values are UTF-8 bytes; every refusal
(malformed or oversized input, unknown topic, bad options) is a typed error that
writes nothing, after which the engine keeps working.

Method: an embedded client (fsync off: durability is test_crash.py's subject) checked
through reads of what was written. The last part is a hypothesis
RuleBasedStateMachine that appends (with and without expectations and idempotent
producers), reads, reads keys and reopens the directory at random, comparing every
answer with an in-memory model of the log.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import odradek
from odradek import limits
from odradek.errors import (
    ConflictError,
    InvalidRequest,
    OdradekError,
    RequestTooLarge,
    SequenceError,
    TopicNotFound,
)
from odradek.records import STORED_SCHEMA, TIMESTAMP_TYPE
from odradek.types import AppendResult

UTC = datetime.UTC


def micros(value: datetime.datetime) -> int:
    return (value - datetime.datetime(1970, 1, 1, tzinfo=UTC)) // datetime.timedelta(microseconds=1)


def stored_micros(table: pa.Table) -> list[int]:
    return table.column("timestamp").cast(pa.int64()).to_pylist()


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


# -- formats and assigned columns ------------------------------------------------------------


def test_append_dicts_assigns_offsets_and_versions(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    result = client.append(
        topic,
        [
            {"key": b"a", "value": b"1"},
            {"key": b"b", "value": b"2"},
            {"value": b"3"},
            {"key": b"a", "value": b"4"},
        ],
    )
    assert result == AppendResult(0, 4, {b"a": 2, b"b": 1})
    assert result.next_offset == 4
    table = read_all(client, topic)
    assert table.schema == STORED_SCHEMA
    assert table.column("offset").to_pylist() == [0, 1, 2, 3]
    assert table.column("key").to_pylist() == [b"a", b"b", None, b"a"]
    assert table.column("value").to_pylist() == [b"1", b"2", b"3", b"4"]
    assert table.column("version").to_pylist() == [1, 1, None, 2]


def test_offsets_are_dense_and_versions_continue_across_appends(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    results = [
        client.append(topic, [{"key": b"k", "value": b"v"}] * n + [{"value": b"-"}]) for n in (1, 3, 2)
    ]
    assert [(r.base_offset, r.count) for r in results] == [(0, 2), (2, 4), (6, 3)]
    assert [r.versions for r in results] == [{b"k": 1}, {b"k": 4}, {b"k": 6}]
    table = read_all(client, topic)
    assert table.column("offset").to_pylist() == list(range(9))
    assert table.column("version").to_pylist() == [1, None, 2, 3, 4, None, 5, 6, None]
    assert client.key_version(topic, b"k") == 6


def test_keyless_only_append(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    result = client.append(topic, [{"value": b"a"}, {"value": b"b", "key": None}])
    assert result.versions == {}
    assert read_all(client, topic).column("version").null_count == 2
    assert client.describe_topic(topic).keys == 0


def test_str_keys_and_values_are_utf8_bytes(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    result = client.append(
        topic, [{"key": "ключ", "value": "значение"}, {"key": "ключ".encode(), "value": b"x"}]
    )
    assert result.versions == {"ключ".encode(): 2}
    assert client.key_version(topic, "ключ") == 2
    table = read_all(client, topic)
    assert table.column("value").to_pylist() == ["значение".encode(), b"x"]
    assert client.read_key(topic, "ключ").column("offset").to_pylist() == [0, 1]


def test_empty_and_nul_suffixed_keys_are_distinct_keys(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    keys = [b"", b"a", b"a\x00", b"a\x00\x00", b"", b"a\x00", None]
    result = client.append(topic, [{"key": k, "value": b"v"} for k in keys])
    assert result.versions == {b"": 2, b"a": 1, b"a\x00": 2, b"a\x00\x00": 1}
    assert read_all(client, topic).column("version").to_pylist() == [1, 1, 1, 1, 2, 2, None]
    assert client.key_version(topic, b"") == 2
    assert client.key_version(topic, b"a\x00\x00") == 1
    assert client.read_key(topic, b"a\x00").column("offset").to_pylist() == [2, 5]
    assert client.read_key(topic, b"").column("offset").to_pylist() == [0, 4]


def test_record_batch(client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]) -> None:
    batch = pa.record_batch({"key": pa.array([b"x", None, b"x"]), "value": pa.array(["1", "2", "3"])})
    assert client.append(topic, batch) == AppendResult(0, 3, {b"x": 2})
    table = read_all(client, topic)
    assert table.column("value").to_pylist() == [b"1", b"2", b"3"]
    assert table.column("version").to_pylist() == [1, None, 2]


def test_multi_chunk_table_is_one_atomic_append(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    chunks = [
        pa.record_batch(
            {
                "key": pa.array([f"k{i % 2}".encode() for i in range(4)]),
                "value": pa.array([f"{c}{i}".encode() for i in range(4)]),
            }
        )
        for c in "abc"
    ]
    table = pa.Table.from_batches(chunks)
    assert table.column("value").num_chunks == 3
    result = client.append(topic, table)
    assert result == AppendResult(0, 12, {b"k0": 6, b"k1": 6})
    back = read_all(client, topic, max_records=100)
    assert back.column("value").to_pylist() == [f"{c}{i}".encode() for c in "abc" for i in range(4)]
    assert back.column("version").to_pylist() == [v for v in range(1, 7) for _ in range(2)]
    # One append is one frame: a read limited to one frame returns all 12 records.
    assert [b.num_rows for b in client.fetch(topic, 0, max_bytes=1)] == [12]


def test_table_with_one_chunk_and_columns_in_any_order(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    table = pa.table(
        {
            "value": pa.array([b"v"]),
            "headers": pa.array([[("h", b"1")]], pa.map_(pa.utf8(), pa.binary())),
            "key": pa.array([b"k"]),
        }
    )
    client.append(topic, table)
    row = read_all(client, topic).to_pylist()[0]
    assert (row["key"], row["value"], row["headers"], row["version"]) == (b"k", b"v", [("h", b"1")], 1)


def test_a_large_append_gets_the_reference_versions(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    rng = np.random.default_rng(1)
    expected: list[int | None] = []
    heads: dict[bytes, int] = {}
    for _ in range(2):
        picks = rng.integers(0, 300, 10_000).tolist()
        keys = [None if p < 10 else f"key-{p}".encode() for p in picks]
        for key in keys:
            if key is None:
                expected.append(None)
            else:
                heads[key] = heads.get(key, 0) + 1
                expected.append(heads[key])
        result = client.append(
            topic,
            pa.record_batch({"key": pa.array(keys, pa.binary()), "value": pa.array([b"v"] * len(keys))}),
        )
        assert result.versions == {k: heads[k] for k in set(keys) if k is not None}
    table = read_all(client, topic)
    assert table.column("version").to_pylist() == expected
    assert client.describe_topic(topic).keys == len(heads)


def test_a_sliced_batch_appends_only_its_rows(
    client: odradek.EmbeddedClient,
    topic: str,
    read_all: Callable[..., pa.Table],
    reopen: Callable[..., odradek.EmbeddedClient],
) -> None:
    whole = pa.record_batch(
        {
            "key": pa.array([b"x", b"k", None, b"k", b"y", b"z"]),
            "value": pa.array([b"0", b"1", b"2", b"3", b"4", b"5"]),
            "headers": pa.array(
                [[("i", str(i).encode())] for i in range(6)], pa.map_(pa.utf8(), pa.binary())
            ),
        }
    )
    assert client.append(topic, whole.slice(1, 4)) == AppendResult(0, 4, {b"k": 2, b"y": 1})
    table = read_all(client, topic)
    assert table.column("value").to_pylist() == [b"1", b"2", b"3", b"4"]
    assert table.column("headers").to_pylist() == [[("i", str(i).encode())] for i in range(1, 5)]
    assert client.key_version(topic, b"x") == 0
    client = reopen(client)
    assert client.read_key(topic, b"k").column("value").to_pylist() == [b"1", b"3"]
    assert client.read_key(topic, b"x").num_rows == 0


@pytest.mark.parametrize("fsync", [False, True], ids=["fsync off", "fsync on"])
@pytest.mark.parametrize("window", [1, 3, 100])
def test_append_many_is_a_pipelined_sequence_of_appends(
    open_client: Callable[..., odradek.EmbeddedClient],
    read_all: Callable[..., pa.Table],
    fsync: bool,
    window: int,
) -> None:
    client = open_client(fsync=fsync)
    client.create_topic("t")
    batches: list[Any] = [[{"key": b"k", "value": f"{i}.{j}"} for j in range(i % 3 + 1)] for i in range(20)]
    batches[5] = pa.record_batch({"key": pa.array([b"k", None]), "value": pa.array([b"5.0", b"5.1"])})
    results = client.append_many("t", iter(batches), window=window)
    sizes = [len(b) if isinstance(b, list) else b.num_rows for b in batches]
    bases = [sum(sizes[:i]) for i in range(len(sizes))]
    assert [(r.base_offset, r.count) for r in results] == list(zip(bases, sizes))
    table = read_all(client, "t")
    assert table.column("offset").to_pylist() == list(range(sum(sizes)))
    keyed = [v for v in table.column("version").to_pylist() if v is not None]
    assert keyed == list(range(1, len(keyed) + 1))
    assert [r.versions[b"k"] for r in results][-1] == len(keyed)


def test_append_many_stops_at_a_refusal(client: odradek.EmbeddedClient, topic: str) -> None:
    batches = [[{"value": b"0"}], [{"value": b"1"}, {"value": b"2"}], [], [{"value": b"never"}]]
    with pytest.raises(InvalidRequest, match="at least one record"):
        client.append_many(topic, batches, window=8)
    assert client.describe_topic(topic).next_offset == 3  # the two before it, acknowledged
    with pytest.raises(InvalidRequest, match="could not convert"):
        client.append_many(topic, [[{"value": b"3"}], [{"value": 4}], [{"value": b"never"}]], window=1)
    with pytest.raises(InvalidRequest, match="window"):
        client.append_many(topic, [[{"value": b"x"}]], window=0)
    assert client.describe_topic(topic).next_offset == 4


# -- timestamps and headers ---------------------------------------------------------------------


def test_absent_timestamps_are_set_by_the_server(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    before = time.time_ns() // 1000
    client.append(topic, [{"value": b"a"}, {"value": b"b", "timestamp": None}])
    after = time.time_ns() // 1000
    for stamp in stored_micros(read_all(client, topic)):
        assert before <= stamp <= after


def test_given_timestamps_are_kept(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    aware = datetime.datetime(
        2021, 3, 4, 5, 6, 7, 891011, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
    )
    naive = datetime.datetime(2019, 12, 31, 23, 59, 59, 999999)
    client.append(
        topic,
        [
            {"value": b"1", "timestamp": aware},
            {"value": b"2", "timestamp": naive},
            {"value": b"3", "timestamp": 0},
            {"value": b"4", "timestamp": 4_102_444_800_000_000},  # 2100
        ],
    )
    assert stored_micros(read_all(client, topic)) == [
        micros(aware),
        micros(naive.replace(tzinfo=UTC)),
        0,
        4_102_444_800_000_000,
    ]


def test_a_batch_with_some_timestamps_keeps_them_and_fills_the_rest(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    before = time.time_ns() // 1000
    batch = pa.record_batch(
        {"value": pa.array([b"a", b"b", b"c"]), "timestamp": pa.array([123, None, 456], TIMESTAMP_TYPE)}
    )
    client.append(topic, batch)
    stamps = stored_micros(read_all(client, topic))
    assert stamps[0] == 123 and stamps[2] == 456
    assert before <= stamps[1] <= time.time_ns() // 1000


def test_headers_are_kept(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    many = {f"h{i}": bytes([i % 256]) * (i % 100) for i in range(limits.header_count_max)}
    client.append(
        topic,
        [
            {"value": b"1", "headers": {"content-type": b"application/json", "trace": b"\x00\xff"}},
            {"value": b"2", "headers": {"text": "ünïcode"}},
            {"value": b"3", "headers": {}},
            {"value": b"4"},
            {"value": b"5", "headers": many},
        ],
    )
    headers = read_all(client, topic).column("headers").to_pylist()
    assert headers[0] == [("content-type", b"application/json"), ("trace", b"\x00\xff")]
    assert headers[1] == [("text", "ünïcode".encode())]
    assert headers[2] == []
    assert headers[3] is None
    assert dict(headers[4]) == many


def test_appended_data_survives_reopen(
    client: odradek.EmbeddedClient,
    topic: str,
    read_all: Callable[..., pa.Table],
    reopen: Callable[..., odradek.EmbeddedClient],
) -> None:
    client.append(topic, [{"key": b"k", "value": b"1", "headers": {"h": b"x"}, "timestamp": 5}])
    client.append(topic, [{"key": b"k", "value": b"2"}, {"value": b"3"}])
    before = read_all(client, topic)
    client = reopen(client)
    assert read_all(client, topic).equals(before)
    assert client.append(topic, [{"key": b"k", "value": b"4"}]) == AppendResult(3, 1, {b"k": 3})


# -- limits -------------------------------------------------------------------------------------


def test_max_append_size_is_request_too_large(
    open_client: Callable[..., odradek.EmbeddedClient], read_all: Callable[..., pa.Table]
) -> None:
    client = open_client(append_bytes_max=20_000)
    client.create_topic("t")
    client.append("t", [{"key": b"k", "value": b"x" * 1000}] * 5)
    with pytest.raises(RequestTooLarge, match="20000"):
        client.append("t", [{"key": b"k", "value": b"x" * 1000}] * 40)
    with pytest.raises(RequestTooLarge):
        client.append("t", [{"value": b"x" * 30_000}])
    assert client.describe_topic("t").next_offset == 5
    assert client.key_version("t", b"k") == 5
    assert client.append("t", [{"key": b"k", "value": b"y"}]) == AppendResult(5, 1, {b"k": 6})
    assert read_all(client, "t").num_rows == 6


def test_a_key_over_the_limit_is_request_too_large(client: odradek.EmbeddedClient, topic: str) -> None:
    with pytest.raises(RequestTooLarge, match="key"):
        client.append(
            topic, [{"key": b"k", "value": b""}, {"key": b"k" * (limits.key_bytes_max + 1), "value": b""}]
        )
    assert client.describe_topic(topic).next_offset == 0
    assert client.append(topic, [{"key": b"k" * limits.key_bytes_max, "value": b""}]).count == 1


# -- refusals -----------------------------------------------------------------------------------

BAD_APPENDS: list[tuple[str, Any, dict[str, Any], type[OdradekError]]] = [
    ("empty list", [], {}, InvalidRequest),
    ("empty batch", pa.record_batch({"value": pa.array([], pa.binary())}), {}, InvalidRequest),
    ("not records", "hello", {}, InvalidRequest),
    ("a dict, not a list", {"value": b"v"}, {}, InvalidRequest),
    (
        "non-dict among dicts",
        [{"key": b"a", "value": b"v"}, 7, {"key": b"a", "value": b"v"}],
        {},
        InvalidRequest,
    ),
    ("int value", [{"key": b"a", "value": b"v"}, {"value": 12}], {}, InvalidRequest),
    ("float key", [{"key": 1.5, "value": b"v"}], {}, InvalidRequest),
    ("bad header value", [{"key": b"a", "value": b"v", "headers": {"h": 1}}], {}, InvalidRequest),
    ("bad timestamp", [{"key": b"a", "value": b"v", "timestamp": "noon"}], {}, InvalidRequest),
    (
        "int key column",
        pa.record_batch({"key": pa.array([1, 2]), "value": pa.array([b"a", b"b"])}),
        {},
        InvalidRequest,
    ),
    ("list value column", pa.record_batch({"value": pa.array([[1], [2]])}), {}, InvalidRequest),
    (
        "string timestamp column",
        pa.record_batch({"value": pa.array([b"a"]), "timestamp": pa.array(["x"])}),
        {},
        InvalidRequest,
    ),
    (
        "unknown column",
        pa.record_batch({"key": pa.array([b"a"]), "value": pa.array([b"v"]), "partition": pa.array([0])}),
        {},
        InvalidRequest,
    ),
    ("no value column", pa.record_batch({"key": pa.array([b"a"])}), {}, InvalidRequest),
    ("expect not a dict", [{"key": b"a", "value": b"v"}], {"expect": [(b"a", 0)]}, InvalidRequest),
    ("expect negative", [{"key": b"a", "value": b"v"}], {"expect": {b"a": -1}}, InvalidRequest),
    ("expect bool", [{"key": b"a", "value": b"v"}], {"expect": {b"a": True}}, InvalidRequest),
    ("expect int key", [{"key": b"a", "value": b"v"}], {"expect": {1: 0}}, InvalidRequest),
    ("expect_offset str", [{"key": b"a", "value": b"v"}], {"expect_offset": "3"}, InvalidRequest),
    ("producer str", [{"key": b"a", "value": b"v"}], {"producer": "p"}, InvalidRequest),
    ("producer negative", [{"key": b"a", "value": b"v"}], {"producer": ("p", -1)}, InvalidRequest),
    ("expect conflict", [{"key": b"a", "value": b"v"}], {"expect": {b"a": 7}}, ConflictError),
    ("expect_offset conflict", [{"key": b"a", "value": b"v"}], {"expect_offset": 99}, ConflictError),
    ("producer gap", [{"key": b"a", "value": b"v"}], {"producer": ("p", 9)}, SequenceError),
]


@pytest.mark.parametrize(
    ("records", "options", "error"), [case[1:] for case in BAD_APPENDS], ids=[case[0] for case in BAD_APPENDS]
)
def test_refusals_write_nothing_and_the_engine_keeps_working(
    client: odradek.EmbeddedClient,
    topic: str,
    read_all: Callable[..., pa.Table],
    records: Any,
    options: dict[str, Any],
    error: type[OdradekError],
) -> None:
    client.append(topic, [{"key": b"a", "value": b"first"}], producer=("p", 0))
    before = read_all(client, topic)
    info = client.describe_topic(topic)
    with pytest.raises(error) as caught:
        client.append(topic, records, **options)
    assert type(caught.value) is error
    assert caught.value.message
    assert client.describe_topic(topic) == info
    assert client.key_version(topic, b"a") == 1
    assert read_all(client, topic).equals(before)
    result = client.append(topic, [{"key": b"a", "value": b"next"}], producer=("p", 1))
    assert result == AppendResult(1, 1, {b"a": 2})


def test_unknown_topic_and_bad_topic_names(client: odradek.EmbeddedClient) -> None:
    with pytest.raises(TopicNotFound):
        client.append("missing", [{"value": b"v"}])
    with pytest.raises(InvalidRequest):
        client.append("bad name", [{"value": b"v"}])
    with pytest.raises(TopicNotFound):
        client.append("_reserved", [{"value": b"v"}])
    assert client.list_topics() == []


# -- stateful model test ------------------------------------------------------------------------

MODEL_KEYS = st.sampled_from([b"", b"a", b"a\x00", b"b", "a", None])
VALUE_SIZES = st.sampled_from([0, 7, 3000])


def normalized(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def as_form(records: list[dict[str, Any]], form: str) -> Any:
    """The records as dicts, as a slice of a larger RecordBatch (its arrays have an
    offset), or as a Table of two chunks."""
    if form == "dicts":
        return records
    keys = pa.array([normalized(r["key"]) for r in records], pa.binary())
    values = pa.array([r["value"] for r in records], pa.binary())
    if form == "sliced batch":
        padding_keys = pa.array([b"pad", None], pa.binary())
        padding_values = pa.array([b"pad", b"pad"], pa.binary())
        keys = pa.concat_arrays([padding_keys, keys, padding_keys])
        values = pa.concat_arrays([padding_values, values, padding_values])
        return pa.record_batch({"key": keys, "value": values}).slice(2, len(records))
    whole = pa.record_batch({"key": keys, "value": values})
    middle = len(records) // 2
    return pa.Table.from_batches([whole.slice(0, middle), whole.slice(middle)])


class AppendMachine(RuleBasedStateMachine):
    """The engine against a list of (key, value, version) and a dict of key heads."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="odradek-model-")
        self.client = odradek.open(self.directory, fsync=False)
        self.client.create_topic("m", segment_bytes="64KiB")
        self.log: list[tuple[bytes | None, bytes, int | None]] = []
        self.heads: dict[bytes, int] = {}
        self.sequence = -1  # last sequence of producer "p"
        self.idempotent: list[tuple[int, AppendResult]] = []  # (sequence, result), last 5

    def teardown(self) -> None:
        self.client.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _records(self, pairs: list[tuple[bytes | str | None, int]]) -> list[dict[str, Any]]:
        records = []
        for key, size in pairs:
            value = f"{len(self.log) + len(records)}:".encode().ljust(size, b"~")
            records.append({"key": key, "value": value})
        return records

    @rule(
        pairs=st.lists(st.tuples(MODEL_KEYS, VALUE_SIZES), min_size=1, max_size=8),
        expectations=st.lists(
            st.tuples(MODEL_KEYS.filter(lambda k: k is not None), st.sampled_from([0, 0, 0, -1, 1])),
            max_size=3,
        ),
        offset_skew=st.sampled_from([None, None, 0, 1, -1]),
        idempotent=st.booleans(),
        form=st.sampled_from(["dicts", "sliced batch", "two-chunk table"]),
    )
    def append(
        self,
        pairs: list[tuple[bytes | str | None, int]],
        expectations: list[tuple[bytes | str, int]],
        offset_skew: int | None,
        idempotent: bool,
        form: str,
    ) -> None:
        records = self._records(pairs)
        appended: Any = as_form(records, form)
        expect: dict[bytes | str, int] = {}
        model_expect: dict[bytes, int] = {}
        for key, skew in expectations:
            expect[key] = max(0, self.heads.get(normalized(key), 0) + skew)  # type: ignore[arg-type]
        contradictory = False
        for key, version in expect.items():  # "a" and b"a" are one key
            contradictory |= model_expect.get(normalized(key), version) != version  # type: ignore[arg-type]
            model_expect[normalized(key)] = version  # type: ignore[index]
        if contradictory:  # one key expected at two versions: refused, nothing written
            with pytest.raises(InvalidRequest, match="twice"):
                self.client.append("m", appended, expect=expect)
            return
        expect_offset = None if offset_skew is None else max(0, len(self.log) + offset_skew)
        producer = ("p", self.sequence + 1) if idempotent else None
        conflict: tuple[bytes | None, int, int] | None = None
        if expect_offset is not None and expect_offset != len(self.log):
            conflict = (None, expect_offset, len(self.log))
        else:
            for key, version in model_expect.items():
                if self.heads.get(key, 0) != version:
                    conflict = (key, version, self.heads.get(key, 0))
                    break
        if conflict is not None:
            with pytest.raises(ConflictError) as caught:
                self.client.append(
                    "m", appended, expect=expect, expect_offset=expect_offset, producer=producer
                )
            assert (caught.value.key, caught.value.expected, caught.value.actual) == conflict
            return
        result = self.client.append(
            "m", appended, expect=expect, expect_offset=expect_offset, producer=producer
        )
        base = len(self.log)
        touched: dict[bytes, int] = {}
        for record in records:
            key = normalized(record["key"])
            version = None
            if key is not None:
                version = self.heads[key] = self.heads.get(key, 0) + 1
                touched[key] = version
            self.log.append((key, record["value"], version))
        assert result == AppendResult(base, len(records), touched)
        if producer is not None:
            self.sequence += 1
            self.idempotent = [*self.idempotent, (self.sequence, result)][
                -limits.producer_results_remembered :
            ]

    @precondition(lambda self: self.idempotent)
    @rule(data=st.data())
    def retry_an_idempotent_append(self, data: st.DataObject) -> None:
        sequence, original = data.draw(st.sampled_from(self.idempotent), label="retried")
        retried = self.client.append(
            "m", [{"key": b"zzz", "value": b"retry"}], producer=("p", sequence), expect={b"zzz": 5}
        )
        assert retried == AppendResult(
            original.base_offset, original.count, original.versions, duplicate=True
        )

    @precondition(lambda self: self.sequence >= 0)
    @rule(ahead=st.integers(2, 4))
    def a_sequence_gap_is_refused(self, ahead: int) -> None:
        with pytest.raises(SequenceError) as caught:
            self.client.append("m", [{"value": b"gap"}], producer=("p", self.sequence + ahead))
        assert (caught.value.expected, caught.value.actual) == (self.sequence + 1, self.sequence + ahead)

    @rule(key=MODEL_KEYS.filter(lambda k: k is not None), from_version=st.integers(1, 4))
    def read_key(self, key: bytes | str, from_version: int) -> None:
        table = self.client.read_key("m", key, from_version=from_version)
        wanted = normalized(key)
        expected = [
            (o, v, ver)
            for o, (k, v, ver) in enumerate(self.log)
            if k == wanted and ver is not None and ver >= from_version
        ]
        got = list(
            zip(
                table.column("offset").to_pylist(),
                table.column("value").to_pylist(),
                table.column("version").to_pylist(),
            )
        )
        assert got == expected

    @rule(key=MODEL_KEYS.filter(lambda k: k is not None))
    def key_version(self, key: bytes | str) -> None:
        assert self.client.key_version("m", key) == self.heads.get(normalized(key), 0)  # type: ignore[arg-type]

    @rule(start=st.integers(0, 40))
    def read(self, start: int) -> None:
        start = min(start, len(self.log))
        batches = list(self.client.read("m", start=start, wait=0, max_records=7))
        rows = [row for batch in batches for row in batch.to_pylist()]
        assert [r["offset"] for r in rows] == list(range(start, len(self.log)))
        assert [(r["key"], r["value"], r["version"]) for r in rows] == self.log[start:]

    @rule()
    def reopen(self) -> None:
        self.client.close()
        self.client = odradek.open(self.directory, fsync=False)

    @invariant()
    def description_matches(self) -> None:
        info = self.client.describe_topic("m")
        assert (info.first_offset, info.next_offset, info.keys) == (0, len(self.log), len(self.heads))


AppendMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, database=None
)
test_append_model = AppendMachine.TestCase
