"""Start time and memory with many topics (issue: bounded file handles).

Creates N topics holding a few records each in a fresh data directory, closes it, then
measures how long opening it takes (the engine recovers every topic), the process's
resident memory and its open descriptors, and that every topic takes an append.

    python scripts/many_topics.py --topics 10000 [--data-dir DIR] [--open-files 1024]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import odradek


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--open-files", type=int, default=1024, help="the process's open-files limit")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, args.open_files))
    data = args.data_dir or tempfile.mkdtemp(prefix="odradek-many-")
    try:
        started = time.perf_counter()
        with odradek.open(data, retention_check_seconds=3600) as client:
            for number in range(args.topics):
                name = f"many.t{number:05d}"
                client.create_topic(name, exist_ok=True)
                client.append(name, [{"key": "k", "value": b"v"}] * 3)
                if number % 1000 == 999:
                    print(f"  created {number + 1:,} topics", file=sys.stderr, flush=True)
        created = time.perf_counter() - started
        before = rss_mib()
        started = time.perf_counter()
        client = odradek.open(data, retention_check_seconds=3600)
        opened = time.perf_counter() - started
        after = rss_mib()
        descriptors = len(os.listdir("/proc/self/fd"))
        started = time.perf_counter()
        for number in range(args.topics):
            client.append(f"many.t{number:05d}", [{"key": "k", "value": b"w"}])
        appended = time.perf_counter() - started
        descriptors_after = len(os.listdir("/proc/self/fd"))
        client.close()
        print(f"topics                      {args.topics:,}")
        print(f"open-files limit            {args.open_files:,}")
        print(f"create + 3 records each     {created:.1f} s")
        print(f"open (recover every topic)  {opened:.2f} s ({opened / args.topics * 1000:.2f} ms a topic)")
        per_topic = (after - before) * 1024 / args.topics
        print(f"memory of the open engine   {after - before:.0f} MiB ({per_topic:.1f} KiB a topic)")
        print(f"descriptors after open      {descriptors}")
        print(f"one append to every topic   {appended:.1f} s; descriptors then {descriptors_after}")
    finally:
        if args.data_dir is None:
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
