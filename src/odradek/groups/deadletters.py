"""Dead letters: what a record that failed ``max_deliveries`` times becomes.

The record goes to the group's dead-letter topic with its key, value and headers, a
fresh timestamp, and headers that say where it came from and why (values are UTF-8
text). A header name that is not UTF-8 (a record stored before appends refused them)
becomes its base64 with a ``_b64`` suffix, as in the CLI's JSON Lines, since the
dead-letter append would refuse it. Building the batch is a cold path: it may loop
over its few records.
"""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.groups.dispatcher import Cursor
from odradek.records import HEADERS_TYPE, INPUT_SCHEMA, TIMESTAMP_TYPE

# Headers a dead-lettered record carries (values are UTF-8 text).
HEADER_TOPIC = "odradek.dlq.topic"
HEADER_OFFSET = "odradek.dlq.offset"
HEADER_VERSION = "odradek.dlq.version"
HEADER_TIMESTAMP = "odradek.dlq.timestamp"
HEADER_GROUP = "odradek.dlq.group"
HEADER_ATTEMPTS = "odradek.dlq.attempts"
HEADER_REASON = "odradek.dlq.reason"

REASON_NACKED = "nacked"
REASON_TIMEOUT = "ack_timeout"
REASON_EXPIRED = "member_expired"
REASON_FAILED = "member_failed"  # its consumer failed or its stream broke (group.py)


@dataclasses.dataclass
class DeadLetterJob:
    cursor: Cursor
    offsets: npt.NDArray[np.int64]
    records: pa.RecordBatch
    reason: str
    not_before: float = 0.0
    appended: bool = False  # written to the dead-letter topic; its progress may not be


def dead_letter_batch(job: DeadLetterJob, group: str) -> pa.RecordBatch:
    """The records as they go to the dead-letter topic (a cold path: per record)."""
    records = job.records
    count = records.num_rows
    fields = {
        HEADER_TOPIC: [job.cursor.topic] * count,
        HEADER_OFFSET: records.column("offset").to_pylist(),
        HEADER_VERSION: records.column("version").to_pylist(),
        HEADER_TIMESTAMP: records.column("timestamp").view(pa.int64()).to_pylist(),
        HEADER_GROUP: [group] * count,
        HEADER_ATTEMPTS: records.column("attempt").to_pylist(),
        HEADER_REASON: [job.reason] * count,
    }
    # Names as bytes: a name that is not UTF-8 must not fail the conversion.
    originals = records.column("headers").cast(_BYTES_HEADERS).to_pylist()
    headers = []
    for index in range(count):
        pairs: list[tuple[str, bytes]] = [
            (name, value)
            for name, value in map(_named, originals[index] or [])
            if not name.startswith("odradek.dlq.")
        ]
        for name, values in fields.items():
            if values[index] is not None:
                pairs.append((name, str(values[index]).encode()))
        headers.append(pairs)
    return pa.RecordBatch.from_arrays(
        [
            records.column("key"),
            records.column("value"),
            pa.array(headers, HEADERS_TYPE),
            pa.nulls(count, TIMESTAMP_TYPE),
        ],
        schema=INPUT_SCHEMA,
    )


_BYTES_HEADERS = pa.map_(pa.binary(), pa.binary())


def _named(header: tuple[bytes, bytes]) -> tuple[str, bytes]:
    name, value = header
    try:
        return name.decode(), value
    except UnicodeDecodeError:
        return base64.b64encode(name).decode() + "_b64", value
