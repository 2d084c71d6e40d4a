"""In-process engine figures (issue: storage engine), fsync on.

    python scripts/engine_bench.py [--records 10000000] [--dir DIR] [--writers 1]

1. keyed ingest: 100-byte values over 100k distinct keys in 10k-record batches;
2. catch-up read of the whole topic;
3. read_key of one key with 1,000 records spread evenly through the topic (so each of
   its records lies in a different 10k-record frame: the worst case for locality).

Batches are built before the clock starts; each figure is printed as it is measured.
``odradek bench`` is the suite that compares against peers; this script is the quick
engine-only check.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

import odradek


def build_batches(records: int, batch_size: int, keys: int, rare_every: int) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(7)
    key_pool = pa.array([f"key-{i:08d}".encode() for i in range(keys)])
    value = pa.array([b"v" * 100] * batch_size)
    batches = []
    for number in range(records // batch_size):
        indices = rng.integers(0, keys, batch_size)
        key_column = key_pool.take(pa.array(indices))
        if number % rare_every == 0:
            # One record of the rare key in this batch.
            key_column = pa.concat_arrays([key_column.slice(0, batch_size - 1), pa.array([b"the-rare-key"])])
        batches.append(pa.record_batch({"key": key_column, "value": value}))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=1, help="concurrent appending threads")
    parser.add_argument(
        "--pipeline", action="store_true", help="one writer using append_many (pipelined fsyncs)"
    )
    parser.add_argument("--dir", default=None, help="data directory (default: a temporary one)")
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="odradek-bench-")
    batches_total = args.records // args.batch
    rare_every = max(batches_total // 1000, 1)
    print(f"building {batches_total} batches of {args.batch} records...", flush=True)
    batches = build_batches(args.records, args.batch, args.keys, rare_every)
    client = odradek.open(directory)
    try:
        client.create_topic("bench", retention=None)
        start = time.perf_counter()
        if args.pipeline:
            client.append_many("bench", batches)
        elif args.writers == 1:
            for batch in batches:
                client.append("bench", batch)
        else:
            shares = [batches[i :: args.writers] for i in range(args.writers)]
            threads = [
                threading.Thread(target=lambda s=share: [client.append("bench", b) for b in s])
                for share in shares
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        elapsed = time.perf_counter() - start
        total = len(batches) * args.batch
        print(
            f"keyed ingest: {total / elapsed:,.0f} records/s ({total:,} records, {elapsed:.2f} s, "
            f"{'append_many' if args.pipeline else f'{args.writers} writer thread(s)'}, fsync on)",
            flush=True,
        )
        start = time.perf_counter()
        count = 0
        for batch in client.read("bench", wait=0):
            count += batch.num_rows
        elapsed = time.perf_counter() - start
        print(
            f"catch-up read: {count / elapsed:,.0f} records/s ({count:,} records, CRC verified)", flush=True
        )
        timings = []
        rows = 0
        for _ in range(7):
            start = time.perf_counter()
            rows = client.read_key("bench", b"the-rare-key").num_rows
            timings.append(time.perf_counter() - start)
        print(
            f"read_key: {rows} records in {statistics.median(timings) * 1000:.1f} ms median of 7 "
            f"(first {timings[0] * 1000:.1f} ms) in a {total:,}-record topic",
            flush=True,
        )
    finally:
        client.close()
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
