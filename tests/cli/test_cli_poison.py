"""`odradek consume` writes out any stored record, also one no reader could decode.

Goal: issue 11's finding, reproduced: a record with a header name that is not UTF-8
made `odradek consume` exit with a traceback. Now every record is written out: bytes
that are not text in base64 under a ``_b64`` field name (DESIGN §3), and a record whose
header names are not all UTF-8 with ``headers_b64`` (names and values in base64); a
timestamp outside what Python's datetime holds is still formatted. A group consumer
prints and acks it like any other record; one whose reader goes away (``| head``)
stops cleanly: what it held goes back to the group without counting an attempt.

Method: a data directory holding such records, written by the engine with its
append-time checks switched off (as an older version wrote them); then a real
`odradek serve` on it and the `consume` command, plain and as a group member; and the
JSON Lines formatter called directly on the same batch. The reader that goes away is
a pipe closed after the first line, while a batch larger than the pipe is written.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from odradek_process import ODRADEK, Server, run

import odradek
from odradek import limits, records
from odradek.cli import output
from odradek.engine import Engine

BAD_NAME = b"\xff\xfetrace"
FAR_FUTURE = limits.timestamp_micros_max + 1  # the first microsecond of the year 10000


def _poison_batch() -> pa.RecordBatch:
    names = [b"ok", BAD_NAME, b"plain"]
    data_offsets = np.concatenate(([0], np.cumsum([len(n) for n in names]))).astype(np.int32)
    keys = pa.Array.from_buffers(
        pa.utf8(), 3, [None, pa.py_buffer(data_offsets), pa.py_buffer(b"".join(names))]
    )
    headers = pa.MapArray.from_arrays(
        pa.array([0, 1, 2, 3], pa.int32()), keys, pa.array([b"a", b"\x00b", None])
    )
    stamps = pa.array([1_700_000_000_000_000, 1_700_000_000_000_001, FAR_FUTURE]).view(records.TIMESTAMP_TYPE)
    return pa.RecordBatch.from_arrays(
        [pa.array([b"k0", b"k1", b"k2"]), pa.array([b"v0", b"\xff", b"v2"]), headers, stamps],
        names=records.INPUT_SCHEMA.names,
    )


def _check_lines(lines: list[dict[str, object]]) -> None:
    assert [line["offset"] for line in lines] == [0, 1, 2]
    assert lines[0]["headers"] == {"ok": "a"}
    assert lines[1]["headers_b64"] == {
        base64.b64encode(BAD_NAME).decode(): base64.b64encode(b"\x00b").decode()
    }
    assert "headers" not in lines[1]
    assert lines[1]["value_b64"] == base64.b64encode(b"\xff").decode()
    assert lines[2]["headers"] == {"plain": None}
    assert lines[2]["timestamp"] == "10000-01-01T00:00:00.000000Z"


@pytest.fixture
def poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    engine = Engine(data_dir, fsync=False)
    try:
        engine.create_topic("t")
        with monkeypatch.context() as patch:  # written before appends refused such records
            patch.setattr(records, "_check_decodable", lambda batch, names_checked=False: None)
            patch.setattr(records, "_check_header_names", lambda headers: None)
            engine.append("t", _poison_batch())
    finally:
        engine.close()
    return data_dir


def test_the_jsonl_formatter_writes_out_any_record() -> None:
    batch = _poison_batch()
    stored = batch.append_column("offset", pa.array([0, 1, 2], pa.int64())).append_column(
        "version", pa.array([1, 1, 1], pa.int64())
    )
    _check_lines([json.loads(line) for line in output.jsonl(stored, "t").splitlines()])


def test_consume_writes_out_a_record_no_reader_could_decode(
    poisoned: Path, start_server: type[Server]
) -> None:
    server = start_server(poisoned)
    plain = run("consume", "t", "--from-beginning", "--max", "3", "--format", "jsonl", server=server)
    assert plain.returncode == 0, plain.stderr.decode()
    assert b"Traceback" not in plain.stderr
    _check_lines([json.loads(line) for line in plain.stdout.splitlines()])
    grouped = run(
        "consume", "t", "--group", "g", "--from-beginning", "--max", "3", "--format", "jsonl", server=server
    )
    assert grouped.returncode == 0, grouped.stderr.decode()
    _check_lines([json.loads(line) for line in grouped.stdout.splitlines()])
    again = run("consume", "t", "--group", "g", "--wait", "0.5", server=server)
    assert (again.returncode, again.stdout) == (0, b""), "the group did not ack what it printed"


def test_a_group_consumer_whose_reader_goes_away_stops_cleanly(start_server: type[Server]) -> None:
    server = start_server()
    with odradek.connect(server.url) as client:
        client.create_topic("t")
        client.append("t", [{"key": f"k{i}", "value": b"x" * 200} for i in range(2000)])
    command = [*ODRADEK, "--server", server.url, "consume", "t", "--group", "g", "--from-beginning"]
    command += ["--wait", "5", "--format", "jsonl"]
    consumer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert consumer.stdout is not None and consumer.stdout.readline().startswith(b"{")
    consumer.stdout.close()  # like `| head -1`: the rest of the batch cannot be written
    _, errors = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, errors.decode()
    with odradek.connect(server.url) as client, client.subscribe("t", group="g") as again:
        deliveries = again.poll(10, timeout=30)
        assert deliveries and {d.attempt for d in deliveries} == {1}, "a reader going away counted an attempt"
