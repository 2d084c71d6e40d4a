"""Throughput of schema'd topics: Avro-validated ingest and typed catch-up reads.

Records are orders of eight fields (id long, customer string, amount double, currency
enum, paid boolean, note optional string, created timestamp-millis, tags array of
strings), about 60 bytes of Avro each, sent in the Schema Registry wire format (magic
byte, schema id, Avro payload) as Confluent's AvroSerializer sends them. Measured:

* embedded ingest: ``append_many`` of 10,000-record batches of wire-format values into
  a topic with the Avro schema; every value is decoded, checked and stored as typed
  columns (fsync on) -> records/s; the same bytes into a schemaless topic for scale;
* embedded typed catch-up read: ``read`` of the whole topic, values as a struct column;
* native door: the same append and read through ``odradek serve`` (Arrow Flight);
* Kafka door: librdkafka producing the pre-serialized wire-format values (acks=all),
  then a consumer reading them back (typed values re-encoded to Avro by the broker).

Usage: python scripts/schema_bench.py [--records N] [--no-fsync] [--json]
Numbers depend on the machine; the measured figures go in the report, not in tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_bench

import odradek
from odradek.schemas import compile_schema, wire

ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "bench",
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
BATCH_RECORDS = 10_000


def order_values(count: int) -> pa.StructArray:
    """Typed order values, built with NumPy (the bench measures Odradek, not this)."""
    rng = np.random.default_rng(7)
    ids = np.arange(count, dtype=np.int64)
    customers = pa.array(np.char.add("customer-", (ids % 5000).astype(str)).tolist(), pa.utf8())
    currency = pa.array(np.array(["EUR", "USD", "GBP"])[rng.integers(0, 3, count)].tolist(), pa.utf8())
    notes = pa.array([None if i % 3 else "gift wrap" for i in range(count)], pa.utf8())
    created = pa.array(1_700_000_000_000 + ids, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    lengths = rng.integers(0, 4, count)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    words = pa.array(np.array(["new", "vip", "eu", "promo"])[rng.integers(0, 4, int(offsets[-1]))].tolist())
    tags = pa.ListArray.from_arrays(pa.array(offsets), words)
    return pa.StructArray.from_arrays(
        [
            pa.array(ids),
            customers,
            pa.array(rng.random(count) * 100),
            currency,
            pa.array(rng.random(count) < 0.5),
            notes,
            created,
            tags,
        ],
        names=["id", "customer", "amount", "currency", "paid", "note", "created", "tags"],
    )


def wire_batches(values: pa.StructArray, schema_id: int) -> list[pa.RecordBatch]:
    compiled = compile_schema(ORDER)
    typed = values.cast(compiled.value_type)
    payloads = wire.add_header(compiled.codec.encode(typed), schema_id)
    keys = pa.array([f"order-{i % 100_000:06d}".encode() for i in range(len(values))], pa.binary())
    return [
        pa.RecordBatch.from_arrays(
            [keys.slice(i, BATCH_RECORDS), payloads.slice(i, BATCH_RECORDS)], ["key", "value"]
        )
        for i in range(0, len(values), BATCH_RECORDS)
    ]


def timed_ingest(client: Any, topic: str, batches: list[pa.RecordBatch]) -> float:
    count = sum(b.num_rows for b in batches)
    started = time.perf_counter()
    client.append_many(topic, batches)
    return count / (time.perf_counter() - started)


def timed_read(client: Any, topic: str, count: int) -> float:
    started = time.perf_counter()
    seen = 0
    typed = False
    for batch in client.read(topic, wait=0):
        seen += batch.num_rows
        typed = pa.types.is_struct(batch.schema.field("value").type)
    elapsed = time.perf_counter() - started
    if seen != count or not typed:
        raise SystemExit(f"read {seen} of {count} records (typed: {typed})")
    return count / elapsed


def kafka_figures(bootstrap: str, topic: str, values: list[bytes]) -> dict[str, float]:
    return {
        "kafka_produce_records_per_s": kafka_bench.produce(bootstrap, topic, len(values), values),
        "kafka_consume_records_per_s": kafka_bench.consume(bootstrap, topic, len(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--kafka-records", type=int, default=500_000)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    fsync = not args.no_fsync
    values = order_values(args.records)
    figures: dict[str, float] = {}
    work = tempfile.mkdtemp(prefix="odradek-schema-bench-")
    try:
        with odradek.open(os.path.join(work, "embedded"), fsync=fsync) as client:
            client.create_topic("orders", schema=ORDER)
            client.create_topic("orders.raw")
            batches = wire_batches(values, client.get_schema("orders").id)
            figures["avro_payload_bytes_mean"] = float(
                np.mean([len(v) for v in batches[0].column("value").to_pylist()])
            )
            figures["embedded_ingest_avro_records_per_s"] = timed_ingest(client, "orders", batches)
            figures["embedded_ingest_schemaless_records_per_s"] = timed_ingest(client, "orders.raw", batches)
            figures["embedded_typed_read_records_per_s"] = timed_read(client, "orders", args.records)
        server, bootstrap, url = kafka_bench.start_server(os.path.join(work, "served"), fsync)
        try:
            remote = odradek.connect(url)
            remote.create_topic("orders", schema=ORDER)
            remote_batches = wire_batches(values, remote.get_schema("orders").id)
            figures["flight_ingest_avro_records_per_s"] = timed_ingest(remote, "orders", remote_batches)
            figures["flight_typed_read_records_per_s"] = timed_read(remote, "orders", args.records)
            remote.create_topic("orders.kafka", schema=ORDER)
            kafka_values = wire_batches(
                values.slice(0, args.kafka_records), remote.get_schema("orders.kafka").id
            )
            flat = [v for b in kafka_values for v in b.column("value").to_pylist()]
            remote.close()
            figures.update(kafka_figures(bootstrap, "orders.kafka", flat))
        finally:
            server.terminate()
            server.wait(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    document = {
        "records": args.records,
        "kafka_records": args.kafka_records,
        "fsync": fsync,
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "figures": figures,
    }
    if args.json:
        print(json.dumps(document, indent=2))
        return
    for name, value in figures.items():
        print(f"{name:45s} {value:>14,.0f}")


if __name__ == "__main__":
    main()
