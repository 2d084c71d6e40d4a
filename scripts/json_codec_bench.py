"""Throughput of the JSON codec of JSON Schema topics: decode_json + check (what an
append of JSON text costs) and encode_json (what a JSON read costs), in records per
second, the median of several runs over one batch of order-like objects.

    python scripts/json_codec_bench.py [--records N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

import pyarrow as pa

from odradek.schemas.json_values import decode_json, encode_json
from odradek.schemas.jsonschema import compile_json_schema

# The batch the task description asks for: 100,000 objects, median of 5 runs.
records_default = 100_000
runs_default = 5

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "customer": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"enum": ["EUR", "USD", "JPY"]},
        "paid": {"type": "boolean"},
        "note": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["id", "customer", "amount", "currency", "paid"],
    "additionalProperties": False,
}


def payloads(count: int, seed: int = 7) -> pa.Array:
    """``count`` JSON objects as Python's json.dumps writes them (as a Python producer
    sends them), with the optional note present in half and 0-3 tags."""
    chance = random.Random(seed)
    texts = []
    for index in range(count):
        document: dict[str, object] = {
            "id": index,
            "customer": f"customer-{chance.randrange(10_000)}",
            "amount": round(chance.uniform(0, 1000), 2),
            "currency": chance.choice(["EUR", "USD", "JPY"]),
            "paid": chance.random() < 0.5,
            "tags": [chance.choice(["gift", "rush", "b2b", "retry"]) for _ in range(chance.randrange(4))],
        }
        if chance.random() < 0.5:
            document["note"] = "leave at the door"
        texts.append(json.dumps(document).encode())
    return pa.array(texts, pa.binary())


def median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=records_default)
    parser.add_argument("--runs", type=int, default=runs_default)
    options = parser.parse_args()

    compiled = compile_json_schema(ORDER_SCHEMA)
    batch = payloads(options.records)
    values = compiled.codec.decode(batch)
    assert values.to_pylist()[:3] == [
        json.loads(p) | {"note": json.loads(p).get("note")} for p in batch.to_pylist()[:3]
    ]

    def decode_and_check() -> None:
        compiled.codec.check(decode_json(batch, compiled.value_type))

    decode_seconds = median_seconds(decode_and_check, options.runs)
    encode_seconds = median_seconds(lambda: encode_json(values), options.runs)
    size = batch.nbytes / options.records
    print(f"{options.records} records, {size:.0f} bytes of JSON each, median of {options.runs} runs")
    for name, seconds in (("decode_json + check", decode_seconds), ("encode_json", encode_seconds)):
        print(f"{name:<20} {options.records / seconds:>12,.0f} records/s  ({seconds * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
