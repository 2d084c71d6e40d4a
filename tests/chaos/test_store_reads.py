"""The chaos run's store readers' check (odradek/chaos/store_reads.py): a fetched record
that is not the log's at its offset is a ``misread``; the kept records are bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from odradek.chaos.store_reads import Fetched, StoreReader, StoreReadSettings, check_store_reads
from odradek.chaos.workload import LOG_SCHEMA
from odradek.errors import InvalidRequest


def _log(rows: list[tuple[int, bytes, bytes]]) -> pa.Table:
    return pa.table(
        {
            "offset": [r[0] for r in rows],
            "key": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "version": [1] * len(rows),
        },
        schema=LOG_SCHEMA,
    )


def _batch(rows: list[tuple[int, bytes | None, bytes | None]]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "offset": pa.array([r[0] for r in rows], pa.int64()),
            "key": pa.array([r[1] for r in rows], pa.binary()),
            "value": pa.array([r[2] for r in rows], pa.binary()),
        }
    )


def test_records_that_are_the_logs_pass_and_others_are_misreads() -> None:
    logs = {"t": _log([(0, b"a", b"1"), (1, b"b", b"2"), (2, b"a", b"3")])}
    fetched = Fetched(100)
    fetched.add("t", _batch([(0, b"a", b"1"), (1, b"b", b"2")]))
    fetched.add("t", _batch([(1, b"b", b"2"), (2, b"a", b"3")]))  # read twice: fine
    assert check_store_reads(fetched, logs)[0] == {"misread": 0, "torn_read": 0}
    fetched.add("t", _batch([(2, b"a", b"not it")]))  # another value at the offset
    fetched.add("t", _batch([(3, b"a", b"4")]))  # an offset the log does not hold
    fetched.add("gone", _batch([(0, b"a", b"1")]))  # a topic read back as nothing
    anomalies, examples, figures = check_store_reads(fetched, logs)
    assert anomalies == {"misread": 3, "torn_read": 0}
    assert [e["offset"] for e in examples["misread"]] == [2, 3, 0]
    assert examples["misread"][0]["log"] == ["a", "3"] and examples["misread"][1]["log"] is None
    assert figures == {"records_checked": 7, "records_not_kept": 0}


def test_the_records_kept_are_bounded() -> None:
    fetched = Fetched(3)
    fetched.add("t", _batch([(n, b"k", b"v") for n in range(5)]))
    fetched.add("t", _batch([(5, b"k", b"v")]))
    assert len(fetched.rows) == 3 and fetched.dropped == 3
    assert check_store_reads(fetched, {"t": _log([(n, b"k", b"v") for n in range(6)])})[2] == {
        "records_checked": 3,
        "records_not_kept": 3,
    }


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidRequest):
        StoreReadSettings(readers=-1)
    with pytest.raises(InvalidRequest):
        StoreReadSettings(rows_max=0)


class _Reading:
    """A client whose wildcard read gives ``batches`` (the reader's wildcard turn)."""

    def __init__(self, batches: list[pa.RecordBatch]) -> None:
        self.batches = batches

    def read(self, pattern: str, **options: object) -> Iterator[pa.RecordBatch]:
        assert pattern == "t.*" and options["start"] == "earliest"
        yield from self.batches

    def close(self) -> None:
        pass


def _topic_batch(topic: str, offsets: list[int]) -> pa.RecordBatch:
    batch = _batch([(n, b"k", b"v%d" % n) for n in offsets])
    return batch.append_column("topic", pa.array([topic] * len(offsets), pa.utf8()))


def _read_with(batches: list[pa.RecordBatch]) -> Fetched:
    fetched = Fetched(100)
    reader = StoreReader(0, fetched, lambda: ["grpc://a"], lambda url: _Reading(batches), ["t.a"], 1, "t.*")  # type: ignore[arg-type, return-value]
    reader._read()
    assert reader.reads == 1 and not reader.failures
    return fetched


def test_a_wildcard_read_whose_topics_skip_or_repeat_an_offset_is_torn() -> None:
    logs = {"t.a": _log([(n, b"k", b"v%d" % n) for n in range(6)]), "t.b": _log([(0, b"k", b"v0")])}
    whole = _read_with(
        [
            _topic_batch("t.a", [0, 1, 2]),
            pa.concat_tables(  # a batch holding two topics' rows
                [
                    pa.Table.from_batches([_topic_batch("t.b", [0])]),
                    pa.Table.from_batches([_topic_batch("t.a", [3])]),
                ]
            )
            .combine_chunks()
            .to_batches()[0],
            _topic_batch("t.a", [4, 5]),
        ]
    )
    assert check_store_reads(whole, logs)[0] == {"misread": 0, "torn_read": 0}
    assert len(whole.rows) == 7
    gap = _read_with([_topic_batch("t.a", [0, 1]), _topic_batch("t.a", [3, 4])])  # 2 skipped at a seam
    repeat = _read_with([_topic_batch("t.a", [0, 1, 2]), _topic_batch("t.a", [2, 3])])
    late = _read_with([_topic_batch("t.a", [1, 2])])  # not from the topic's first offset
    for fetched in (gap, repeat, late):
        anomalies, examples, _ = check_store_reads(fetched, logs)
        assert anomalies == {"misread": 0, "torn_read": 1}
        assert examples["torn_read"][0]["topic"] == "t.a"
