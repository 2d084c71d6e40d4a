"""Stream processors' state restore through the Kafka door: Faust and Quix Streams.

Starts ``odradek serve --kafka-listen`` on a fresh data directory (its own process, as
scripts/kafka_bench.py does), fills two compacted changelog topics with N records of N
distinct keys (100-byte values), one in Faust's format and one in Quix Streams', then,
in the same run:

* plain: a confluent-kafka consumer reading each changelog from the beginning ->
  seconds and records/s (the floor: what reading the topic costs);
* faust: a faust-streaming worker whose Table (in memory) has that changelog restores
  it -> seconds from Faust's "Restoring state from changelog topics" to its "Done
  reading from changelog topics" log line (timed as this script reads them), and
  records/s;
* quix: a Quix Streams app whose state store (RocksDB) has that changelog restores it
  -> seconds from Quix's "Beginning recovery check" to its "Recovery process complete"
  log line, and records/s. It runs with the interpreter of the Quix side environment
  (``.venv-quix``, made by ``./dev setup``: Quix needs confluent-kafka < 2.13); skipped
  when that environment is missing.

Each app also reports the seconds from its process start to the end of the restore
(imports, group join and assignment included).

Usage: python scripts/kafka_restore_bench.py [--records N] [--no-fsync] [--json]
Numbers depend on the machine; the measured figures go in the docs, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIX_PYTHON = os.path.join(ROOT, ".venv-quix", "bin", "python")
VALUE = "v" * 98  # a JSON string of 100 bytes
FAUST_APP, FAUST_TABLE = "restorebench", "state"
FAUST_CHANGELOG = f"{FAUST_APP}-{FAUST_TABLE}-changelog"
QUIX_GROUP, QUIX_INPUT = "restorebench-quix", "restorebench-input"
QUIX_CHANGELOG = f"changelog__{QUIX_GROUP}--{QUIX_INPUT}--default"
FAUST_INPUT = "restorebench-faust-input"
APP_SECONDS_MAX = 900.0  # an app that has not restored by then has failed
# Log lines that open and close a restore.
FAUST_BEGIN, FAUST_END = "Restoring state from changelog topics", "Done reading from changelog topics"
QUIX_BEGIN, QUIX_END = "Beginning recovery check", "Recovery process complete"


# -- the apps (run as subprocesses of this script) -------------------------------------


def faust_app(bootstrap: str, data_dir: str) -> None:
    import faust

    app = faust.App(
        FAUST_APP,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
    )
    source = app.topic(FAUST_INPUT, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = app.Table(FAUST_TABLE, default=str, partitions=1)

    @app.agent(source)
    async def update(stream: Any) -> None:
        async for value in stream:
            table[value.decode()] = value.decode()

    sys.argv = [sys.argv[0], "worker", "--loglevel", "info", "--without-web"]
    app.main()


def quix_app(bootstrap: str, state_dir: str) -> None:
    from quixstreams import Application

    app = Application(
        broker_address=bootstrap,
        consumer_group=QUIX_GROUP,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="INFO",
    )
    frame = app.dataframe(app.topic(QUIX_INPUT, value_deserializer="bytes"))
    frame.apply(lambda value, state: state.set("last", value), stateful=True)
    app.run()


# -- the bench ---------------------------------------------------------------------------


def fill(bootstrap: str, topic: str, count: int, quix: bool) -> None:
    """``count`` records of distinct keys into a new compacted topic of one partition."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]).values():
        future.result(60)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    headers = [("__column_family__", b"default")] if quix else None
    value = json.dumps(VALUE).encode()
    for i in range(count):
        key = json.dumps(f"key-{i}").encode()
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(300):
        raise SystemExit(f"{topic}: records were not delivered")


def restore(command: list[str], begin: str, end: str, count: int) -> dict[str, float]:
    """Run an app until its log says the restore ended; the restore's seconds (between
    the two log lines, as this process reads them: the apps' logs are flushed a line at a
    time) and the seconds from the process start."""
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    stamps: dict[str, float] = {}
    tail: list[str] = []
    finished = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            tail[:] = [*tail[-30:], line]
            for name, text in (("begin", begin), ("end", end)):
                if text in line and name not in stamps:
                    stamps[name] = time.monotonic()
                    if name == "end":
                        finished.set()
        finished.set()  # the app ended: without the end line, it failed

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not finished.wait(APP_SECONDS_MAX) or "end" not in stamps:
            raise SystemExit("the app did not restore:\n" + "".join(tail))
        total = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
        reader.join(10)
    seconds = stamps["end"] - stamps["begin"]
    return {"seconds": seconds, "records_per_s": count / seconds, "seconds_from_start": total}


def plain(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from kafka_bench import consume

    rate = consume(bootstrap, topic, count, {"group.id": f"restorebench-plain-{topic}"})
    return {"seconds": count / rate, "records_per_s": rate}


def _number(number: float) -> str:
    return f"{number:,.0f}" if number >= 100 else f"{number:.2f}"


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] in ("--faust-app", "--quix-app"):
        (faust_app if sys.argv[1] == "--faust-app" else quix_app)(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from kafka_bench import start_server

    data_dir = tempfile.mkdtemp(prefix="odradek-restore-bench-")
    work_dir = tempfile.mkdtemp(prefix="odradek-restore-apps-")
    server, bootstrap, _ = start_server(data_dir, fsync=not args.no_fsync)
    results: dict[str, Any] = {"records": args.records, "value_bytes": len(VALUE) + 2}
    me = os.path.abspath(__file__)
    try:
        fill(bootstrap, FAUST_CHANGELOG, args.records, quix=False)
        results["plain_faust_changelog"] = plain(bootstrap, FAUST_CHANGELOG, args.records)
        results["faust"] = restore(
            [sys.executable, me, "--faust-app", bootstrap, os.path.join(work_dir, "faust")],
            FAUST_BEGIN,
            FAUST_END,
            args.records,
        )
        if os.path.exists(QUIX_PYTHON):
            fill(bootstrap, QUIX_CHANGELOG, args.records, quix=True)
            results["plain_quix_changelog"] = plain(bootstrap, QUIX_CHANGELOG, args.records)
            results["quix"] = restore(
                [QUIX_PYTHON, me, "--quix-app", bootstrap, os.path.join(work_dir, "quix")],
                QUIX_BEGIN,
                QUIX_END,
                args.records,
            )
        else:
            results["quix"] = "skipped: no .venv-quix (./dev setup makes it)"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(work_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return
    for name, value in results.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{key} {_number(number)}" for key, number in value.items())
            print(f"{name:24} {shown}")
        else:
            print(f"{name:24} {value}")


if __name__ == "__main__":
    main()
