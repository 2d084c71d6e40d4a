"""The chaos run's store readers' check (odradek/chaos/store_reads.py): a fetched record
that is not the log's at its offset is a ``misread``; the kept records are bounded."""

from __future__ import annotations

import pyarrow as pa
import pytest

from odradek.chaos.store_reads import Fetched, StoreReadSettings, check_store_reads
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
    assert check_store_reads(fetched, logs)[0] == {"misread": 0}
    fetched.add("t", _batch([(2, b"a", b"not it")]))  # another value at the offset
    fetched.add("t", _batch([(3, b"a", b"4")]))  # an offset the log does not hold
    fetched.add("gone", _batch([(0, b"a", b"1")]))  # a topic read back as nothing
    anomalies, examples, figures = check_store_reads(fetched, logs)
    assert anomalies == {"misread": 3}
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
