"""A transactional id's staging file (staging.py, decision 0016): a transactional
Produce's frame holds its record batches as the client sent them, and a file written
before that form, with Arrow IPC frames, is still read, so that a commit decided before
an upgrade is applied after it."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from odradek.protocols.kafka.codec.records import decode_batches, encode_batch
from odradek.protocols.kafka.staging import StageFile, _frame, batches_frame, read_stage
from odradek.storage.disk import Disk


def records_frame(topic: str, partition: int, records: pa.Table) -> bytes:
    """A frame of ``records`` as an Arrow IPC stream: the form staged before the Kafka
    one (batches_frame), which staging files written before may still hold."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, records.schema) as writer:
        writer.write_table(records)
    return _frame({"t": topic, "p": partition, "n": records.num_rows}, sink.getvalue().to_pybytes())


def _stored(values: list[bytes], keys: list[bytes | None]) -> pa.Table:
    count = len(values)
    return pa.table(
        {
            "offset": pa.array(range(count), pa.int64()),
            "timestamp": pa.array(
                [1_700_000_000_000_000 + i * 1000 for i in range(count)], pa.timestamp("us")
            ),
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.binary()),
            "headers": pa.array(
                [[("h", b"1")] if i % 2 else None for i in range(count)],
                pa.map_(pa.string(), pa.binary()),
            ),
        }
    )


def test_kafka_and_arrow_frames_are_read_back_as_the_produce_decoded_them(tmp_path: Path) -> None:
    disk = Disk()
    path = os.path.join(tmp_path, "id.0.stage")
    sent = encode_batch(
        _stored([b"a" * 100, b"bb", b""], [None, b"k", b"k2"]),
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
    )
    more = encode_batch(_stored([b"c"], [b"k"]), producer_id=7, producer_epoch=0, base_sequence=3)
    decoded = pa.Table.from_batches([b.records for b in decode_batches(sent + more)])
    older = pa.Table.from_batches(
        [b.records for b in decode_batches(encode_batch(_stored([b"old"], [None])))]
    )

    stage = StageFile(disk, path, 4, sync=False)
    stage.append(records_frame("t.old", 1, older))
    stage.decide({"ranges": [["t", 0, 0]]}, batches_frame("t", 0, sent + more, 4))
    stage.close()

    read = read_stage(disk, path)
    assert read is not None
    assert (read.number, read.decision) == (4, {"ranges": [["t", 0, 0]]})
    assert [(topic, partition) for topic, partition, _ in read.frames] == [("t.old", 1), ("t", 0)]
    assert read.frames[0][2].equals(older)
    assert read.frames[1][2].equals(decoded)
    assert read.frames[1][2].column("value").to_pylist() == [b"a" * 100, b"bb", b"", b"c"]
    assert read.frames[1][2].column("key").to_pylist() == [None, b"k", b"k2", b"k"]


def test_a_damaged_kafka_frame_ends_the_file_there(tmp_path: Path) -> None:
    disk = Disk()
    path = os.path.join(tmp_path, "id.1.stage")
    sent = encode_batch(_stored([b"x", b"y"], [None, None]), producer_id=7, producer_epoch=0, base_sequence=0)
    stage = StageFile(disk, path, 9, sync=False)
    stage.append(batches_frame("t", 0, sent, 2))
    stage.decide({"ranges": []})
    stage.close()
    data = bytearray(disk.read_bytes(path))
    whole = read_stage(disk, path)
    assert whole is not None and whole.decision == {"ranges": []} and len(whole.frames) == 1
    data[len(data) // 2] ^= 0xFF  # inside the records frame: its checksum fails
    with open(path, "wb") as file:
        file.write(data)
    damaged = read_stage(disk, path)
    assert damaged is not None
    assert (damaged.number, damaged.frames, damaged.decision) == (9, [], None)
