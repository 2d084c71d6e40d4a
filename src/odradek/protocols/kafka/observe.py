"""The Kafka door's requests for ``/metrics`` (protocols/observe.py): one call per answered
request, from the door's dispatch (server.py ``_respond`` and, for a Produce, ``_finish``).

The operation is the request's ApiKey name; the outcome ``ok``, or the Kafka error code
(lower case) of the answer: its top-level ``error_code``, else the first partition's
error of a Produce or Fetch. Produced and fetched records are counted per record batch
from the v2 batch headers (quota_api.py), never per record.
"""

from __future__ import annotations

import time
from typing import Any

from odradek.protocols import observe
from odradek.protocols.kafka.codec import messages_data
from odradek.protocols.kafka.codec.api import ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.quota_api import batch_records


def answered(request: Request, body: Any, started: float) -> None:
    """Report ``request``, answered with ``body`` (None: Kafka sends no answer)."""
    seconds = time.perf_counter() - started
    code = getattr(body, "error_code", 0) or 0
    records_in = bytes_in = records_out = bytes_out = 0
    if request.api_key == ApiKey.PRODUCE:
        for topic in request.body.topic_data:
            for part in topic.partition_data:
                if part.records:
                    bytes_in += len(part.records)
                    records_in += batch_records(part.records)
        if isinstance(body, messages_data.ProduceResponse):
            code = code or _first_error(
                part.error_code for topic in body.responses for part in topic.partition_responses
            )
            if code:  # refused: nothing was appended
                records_in = bytes_in = 0
    elif isinstance(body, messages_data.FetchResponse):
        for topic in body.responses:
            for part in topic.partitions:
                if part.records:
                    bytes_out += len(part.records)
                    records_out += batch_records(part.records)
                code = code or part.error_code
    outcome = "ok" if not code else _name(code)
    observe.request(
        "kafka",
        ApiKey(request.api_key).name.lower(),
        outcome,
        seconds,
        records_in=records_in,
        bytes_in=bytes_in,
        records_out=records_out,
        bytes_out=bytes_out,
    )


def _first_error(codes: Any) -> int:
    for code in codes:
        if code:
            return int(code)
    return 0


def _name(code: int) -> str:
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return "unknown_server_error"
