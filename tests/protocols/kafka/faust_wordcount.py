"""Faust app of the stream-processor test: counts words into a Table.

Usage: python faust_wordcount.py BOOTSTRAP DATA_DIR

An agent reads topic ``words`` (a word per record, as raw bytes) and adds one to the
word's count in the Table ``counts``, whose changelog topic Faust creates itself
(``wordcount-counts-changelog``, compacted). The Table lives in memory: after a restart
it is restored from the changelog alone. After each update the app prints
``COUNT <word> <n>`` to stdout, flushed.

Faust's defaults are made for production; the settings below make a test quick and
are explained where they are set. The one that matters most is the session timeout:
after a SIGKILL, the dead member stays in group ``wordcount`` until its session
expires (Faust's default: 60 s), and the restarted app's JoinGroup waits for it, as
Kafka's coordinator does. A 6 s session (heartbeats every 0.5 s) bounds that wait.
"""

from __future__ import annotations

import sys

import faust


def main() -> None:
    bootstrap, data_dir = sys.argv[1], sys.argv[2]
    app = faust.App(
        "wordcount",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.2,
        # A killed member leaves the group once its session expires: 6 s, not 60 s.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=10.0,
        # One worker: no standby replica of the Table to fill, nothing to wait for.
        table_standby_replicas=0,
        stream_wait_empty=False,
    )
    words = app.topic("words", key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    counts = app.Table("counts", default=int, partitions=1)

    @app.agent(words)
    async def count(stream: faust.Stream) -> None:  # type: ignore[type-arg]
        async for word in stream:
            text = word.decode()
            counts[text] += 1
            print(f"COUNT {text} {counts[text]}", flush=True)

    # The worker command's --with-web default overrides web_enabled=False: without
    # --without-web every app binds port 6066, and two at once (suites in parallel) fail.
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
