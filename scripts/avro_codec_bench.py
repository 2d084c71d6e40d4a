"""Throughput of the vectorized Avro codec: decode and encode of 100,000 payment records.

The record is the shape a Kafka producer with Confluent's AvroSerializer typically sends
(eight fields: numbers, short strings, an enum, an optional string, a timestamp and a
short array). Payloads are made once with fastavro, the reference implementation; each
figure is the median of five timed runs, in records per second.

    python scripts/avro_codec_bench.py [--records N] [--runs N]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import fastavro
import pyarrow as pa

from odradek.schemas.avro import compile_avro

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Payment",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP"]}},
        {"name": "paid", "type": "boolean"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}

# Milliseconds since the epoch around 2024, so `created` is a realistic 6-byte varint.
_CREATED_BASE_MILLISECONDS = 1_704_067_200_000


def make_records(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Records with ~10-character customers, half the notes null and 0-3 tags."""
    generator = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        {
            "id": index,
            "customer": "".join(generator.choices(letters, k=10)),
            "amount": round(generator.uniform(1, 1000), 2),
            "currency": generator.choice(["EUR", "USD", "GBP"]),
            "paid": generator.random() < 0.5,
            "note": None if generator.random() < 0.5 else "gift wrap please",
            "created": _CREATED_BASE_MILLISECONDS + generator.randrange(10**9),
            "tags": generator.sample(["new", "vip", "promo", "eu"], k=generator.randrange(4)),
        }
        for index in range(count)
    ]


def encode_with_fastavro(records: list[dict[str, Any]]) -> pa.Array:
    parsed = fastavro.parse_schema(SCHEMA)
    payloads = []
    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        payloads.append(buffer.getvalue())
    return pa.array(payloads, type=pa.binary())


def median_seconds(action: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    compiled = compile_avro(SCHEMA)
    codec = compiled.codec
    payloads = encode_with_fastavro(make_records(arguments.records))
    values = codec.decode(payloads)
    if not codec.encode(values).equals(payloads):
        raise SystemExit("encode(decode(payloads)) differs from the fastavro payloads")
    decode_seconds = median_seconds(lambda: codec.decode(payloads), arguments.runs)
    encode_seconds = median_seconds(lambda: codec.encode(values), arguments.runs)
    check_seconds = median_seconds(lambda: codec.check(values), arguments.runs)
    payload_bytes = payloads.buffers()[2].size
    print(
        f"records: {arguments.records:,}  payload bytes: {payload_bytes:,}  runs: {arguments.runs} (median)"
    )
    for name, seconds in (("decode", decode_seconds), ("encode", encode_seconds), ("check", check_seconds)):
        print(f"{name:>6}: {arguments.records / seconds:>12,.0f} records/s  ({seconds * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
