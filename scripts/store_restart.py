"""Restart time of an object-store agent with an empty data directory (issue 13).

For each store (memory:// and a file:// directory by default): an agent attaches to a
fresh store, appends N keyed records of 100 bytes to one topic (pipelined batches),
closes (the last checkpoint), then a second agent attaches on an EMPTY data directory
and opens the engine; the figures are the restart time (attach + engine open), what the
recovery did (manifest, files downloaded, sealed segments left in the store, journal
objects replayed), the time of a first read of the whole topic from the store, and the
store's requests (PUT, GET, LIST, DELETE) during the load, the restart and the read.
A second restart is measured after a crash (no last checkpoint) with some journal after
the last checkpoint, to show the replayed journal.

Also measured: the local disk of the loading agent against the data it wrote (sealed
segments are handed over to the cache bounded by ``--cache-bytes`` once a checkpoint
uploaded them; copies evicted while the engine still maps them keep their blocks until
it lets go, counted from /proc/self/maps), and what a restart downloads for the key
index (every run whole) beside what the engine's open derives from it (one head per
distinct key).

    python scripts/store_restart.py [--records 10000000] [--stores memory,file] [--batch 10000]
        [--segment-bytes 256MiB] [--cache-bytes 4294967296]

Progress goes to stderr; the figures to stdout. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import cast

import numpy as np
import pyarrow as pa

from odradek.engine.engine import Engine
from odradek.storage.agent import CACHE_DIRECTORY, StoreSettings, attach
from odradek.storage.objects import ObjectStore, RequestCounts, open_store
from odradek.storage.storedisk import StoreDisk

TOPIC = "restart.bench"
KEYS = 100_000


def batches(records: int, size: int) -> Iterator[pa.RecordBatch]:
    rng = np.random.default_rng(7)
    pool = pa.array([f"key-{number:08d}".encode() for number in range(KEYS)])
    value = pa.array([b"v" * 100] * size)
    for _ in range(records // size):
        keys = pool.take(pa.array(rng.integers(0, KEYS, size)))
        yield pa.record_batch({"key": keys, "value": value})


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def describe(counts: RequestCounts) -> str:
    return (
        f"PUT {counts.puts:,} ({counts.bytes_put / 2**20:,.0f} MiB), GET {counts.gets:,} "
        f"({counts.bytes_got / 2**20:,.0f} MiB), LIST {counts.lists:,}, DELETE {counts.deletes:,}"
    )


def local_disk(root: str) -> dict[str, int]:
    """Bytes on local disk under ``root`` (allocated blocks): sealed segments outside the
    cache, other segments (active), the cache's copies, everything else; and the bytes
    of cached copies that were evicted (unlinked) while this process still maps them."""
    found = dict.fromkeys(("sealed", "active", "cache", "other", "evicted_but_mapped"), 0)
    for directory, _, files in os.walk(root):
        top = os.path.relpath(directory, root).split(os.sep)[0]
        for name in files:
            path = os.path.join(directory, name)
            try:
                size = os.stat(path).st_blocks * 512
            except FileNotFoundError:
                continue
            if top == CACHE_DIRECTORY:
                found["cache"] += size
            elif name.endswith(".log"):
                found["sealed" if os.path.exists(path[: -len(".log")] + ".index") else "active"] += size
            else:
                found["other"] += size
    extents: dict[str, int] = {}
    cache = os.path.join(os.path.abspath(root), CACHE_DIRECTORY) + os.sep
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(cache) and fields[5].rstrip().endswith("(deleted)"):
                start, end = (int(part, 16) for part in fields[0].split("-"))
                inode = fields[4]
                extents[inode] = max(extents.get(inode, 0), int(fields[2], 16) + end - start)
    found["evicted_but_mapped"] = sum(extents.values())
    return found


def describe_disk(found: dict[str, int], written: int) -> str:
    mib = {name: value / 2**20 for name, value in found.items()}
    return (
        f"local disk {sum(v for k, v in found.items() if k != 'evicted_but_mapped') / 2**20:,.0f} MiB "
        f"for {written / 2**20:,.0f} MiB of segments written: sealed segments outside the cache "
        f"{mib['sealed']:,.0f} MiB, active {mib['active']:,.0f} MiB, cache {mib['cache']:,.0f} MiB, "
        f"other files {mib['other']:,.0f} MiB; evicted copies still mapped "
        f"{mib['evicted_but_mapped']:,.0f} MiB"
    )


def load(
    store: ObjectStore, root: str, records: int, size: int, settings: StoreSettings, segment_bytes: str
) -> float:
    disk, _ = attach(root, store, settings)
    engine = Engine(root, disk=disk, retention_check_seconds=3600)
    engine.create_topic(TOPIC, segment_bytes=segment_bytes)
    started = time.perf_counter()
    done = 0
    reported = started
    chunk = 100  # batches per append_many call
    source = batches(records, size)
    while done < records:
        group = [batch for _, batch in zip(range(chunk), source, strict=False)]
        if not group:
            break
        engine.append_many(TOPIC, group, window=32)
        done += sum(batch.num_rows for batch in group)
        if time.perf_counter() - reported >= 5:
            reported = time.perf_counter()
            rate = done / (reported - started)
            progress(f"  loaded {done:,} of {records:,} records ({rate:,.0f} records/s)")
    elapsed = time.perf_counter() - started
    disk.checkpoint()  # what a checkpoint at this moment leaves on local disk
    written = sum(size for path, size in disk.tree.sizes.items() if path.endswith(".log"))
    print(f"  after the load and a checkpoint: {describe_disk(local_disk(root), written)}")
    assert disk.cache is not None and disk.checkpointer is not None
    print(
        f"  cache: {disk.checkpointer.stats.handed_over} sealed segments handed over, "
        f"{disk.cache.evictions} evicted, bound {disk.cache.bytes_max / 2**20:,.0f} MiB"
    )
    count = sum(batch.num_rows for batch in engine.read(TOPIC, wait=0))
    print(f"  after reading the whole topic ({count:,} records): {describe_disk(local_disk(root), written)}")
    engine.close()
    disk.detach()
    return elapsed


def restart(store: ObjectStore, root: str, settings: StoreSettings) -> tuple[Engine, object, float]:
    started = time.perf_counter()
    disk, recovery = attach(root, store, settings)
    engine = Engine(root, disk=disk, retention_check_seconds=3600)
    return engine, recovery, time.perf_counter() - started


def key_index_figures(engine: Engine, disk: StoreDisk) -> str:
    """The key-index runs' bytes (what a restart downloads for them) beside the heads the
    engine's open computes from them (distinct keys, each its key and a version)."""
    runs = {path: size for path, size in disk.tree.sizes.items() if "/keys/run-" in path}
    info = engine.describe_topic(TOPIC)
    keys = info.keys
    key_bytes = len(b"key-00000000") + 8  # the script's keys and an int64 version
    return (
        f"key index: {len(runs)} runs, {sum(runs.values()) / 2**20:,.1f} MiB downloaded whole; "
        f"the open derives {keys:,} key heads from them (~{keys * key_bytes / 2**20:,.1f} MiB)"
    )


def run(url: str, records: int, size: int, work: str, segment_bytes: str, cache_bytes: int) -> None:
    store = open_store(url)
    settings = StoreSettings(cache_bytes=cache_bytes)
    print(f"\n== {url}: {records:,} records of 100 B in one topic ==", flush=True)
    before = store.counts()
    progress("loading...")
    seconds = load(store, os.path.join(work, "first"), records, size, settings, segment_bytes)
    loaded = store.counts()
    print(f"load: {seconds:.1f} s ({records / seconds:,.0f} records/s); {describe(loaded - before)}")
    print(f"  per million records: {(loaded - before).puts / records * 1e6:,.0f} PUTs")

    progress("restarting on an empty data directory...")
    root = os.path.join(work, "second")
    engine, recovery, seconds = restart(store, root, settings)
    restarted = store.counts()
    print(f"restart (empty directory, after a clean close): {seconds:.2f} s; {describe(restarted - loaded)}")
    print(f"  {recovery}")
    print(f"  {key_index_figures(engine, cast(StoreDisk, engine.disk))}")
    progress("reading the whole topic (sealed segments fetched into the cache)...")
    started = time.perf_counter()
    count = sum(batch.num_rows for batch in engine.read(TOPIC, wait=0))
    read_seconds = time.perf_counter() - started
    read = store.counts()
    print(
        f"first read of {count:,} records: {read_seconds:.1f} s ({count / read_seconds:,.0f} records/s); "
        f"{describe(read - restarted)}"
    )
    # Some journal after the last checkpoint, then a crash: no last checkpoint.
    tail = max(size, records // 100)
    engine.append_many(TOPIC, batches(tail, size), window=32)
    engine.close()
    disk = cast(StoreDisk, engine.disk)
    if disk.checkpointer is not None:
        disk.checkpointer.stop()
    disk.writer.flush_all()
    disk.writer.close()
    crashed = store.counts()
    progress("restarting after a crash...")
    engine, recovery, seconds = restart(store, os.path.join(work, "third"), settings)
    print(
        f"restart (empty directory, after a crash with {tail:,} records in the journal only): "
        f"{seconds:.2f} s; {describe(store.counts() - crashed)}"
    )
    print(f"  {recovery}")
    engine.close()
    cast(StoreDisk, engine.disk).detach()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="records per append")
    parser.add_argument("--stores", default="memory,file", help="memory, file, or URLs, comma-separated")
    parser.add_argument("--dir", default=None, help="where the data directories (and file:// store) go")
    parser.add_argument("--segment-bytes", default="256MiB", help="the topic's segment size")
    parser.add_argument(
        "--cache-bytes", type=int, default=StoreSettings().cache_bytes, help="the agents' store_cache_bytes"
    )
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="odradek-restart-")
    try:
        for name in args.stores.split(","):
            directory = os.path.join(work, name.replace("/", "_").replace(":", ""))
            os.makedirs(directory, exist_ok=True)
            if name == "memory":
                url = f"memory://restart-{os.getpid()}"
            elif name == "file":
                url = f"file://{os.path.join(directory, 'store')}"
            else:
                url = name
            run(url, args.records, args.batch, directory, args.segment_bytes, args.cache_bytes)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
