"""Bounded file handles: any number of topics fits the open-files limit.

Goal: a data directory with far more topics than the process may open files works —
every topic takes appends and serves reads, before and after a restart — and the
engine's own descriptors stay within its share of the limit; topic creation past
``topics_max`` is refused with a clear error.

Method: a child process lowers its open-files limit (soft and hard, so the engine cannot
raise it) to 256, creates 600 topics, appends to and reads each one, reopens the data
directory and does it again, then reports how many descriptors it has open. Before the
handles were bounded each written topic held two descriptors (its active segment and its
head file), so the child died with EMFILE near topic 120.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import odradek
from odradek.storage.disk import Disk
from odradek.storage.handles import HandleCache

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    import odradek

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    data, count = sys.argv[1], int(sys.argv[2])
    for round in range(2):
        with odradek.open(data, retention_check_seconds=3600) as client:
            for number in range(count):
                name = f"many.t{number}"
                client.create_topic(name, exist_ok=True)
                client.append(name, [{"key": "k", "value": b"v"}])
            rows = sum(
                batch.num_rows for number in range(count) for batch in client.read(f"many.t{number}", wait=0)
            )
            handles = client.engine.handles
            open_fds = len(os.listdir("/proc/self/fd"))
            print(json.dumps({"round": round, "rows": rows, "open": open_fds,
                              "capacity": handles.capacity, "evictions": handles.evictions}), flush=True)
    """
)


@pytest.mark.slow
def test_more_topics_than_open_files(tmp_path: Path) -> None:
    count = 600
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data"), str(count)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rows"] for r in rounds] == [count, 2 * count]
    for report in rounds:
        assert report["open"] < 256
        assert report["capacity"] == 128  # half of the limit: the rest is for connections
        assert report["evictions"] > 0


def test_handles_are_opened_on_demand_and_evicted_least_recently_used(tmp_path: Path) -> None:
    cache = HandleCache(Disk(), capacity=2)
    paths = [tmp_path / f"f{i}" for i in range(3)]
    for path in paths:
        path.write_bytes(b"")
    handles = [cache.handle(str(path), 2) for path in paths]  # O_RDWR
    for handle in handles[:2]:
        with handle.fd():
            pass
    assert cache.open_count == 2
    with handles[0].fd():  # 0 is now the most recently used
        pass
    with handles[2].fd():
        pass
    assert cache.open_count == 2 and cache.evictions == 1
    assert not handles[1].evictable() and handles[0].evictable()  # 1 was closed
    # A pinned or dirty handle is never closed under its user: the set grows instead.
    handles[0].written()
    with handles[2].fd(), handles[1].fd():
        assert cache.open_count == 3
    handles[0].synced()
    with handles[1].fd():
        pass
    assert cache.open_count <= 3
    for handle in handles:
        handle.close()
    assert cache.open_count == 0


def test_topic_creation_past_topics_max_is_refused(tmp_path: Path) -> None:
    with odradek.open(tmp_path, fsync=False, topics_max=3) as client:
        for number in range(3):
            client.create_topic(f"t{number}")
        with pytest.raises(odradek.InvalidRequest, match="topics_max"):
            client.create_topic("t3")
        client.delete_topic("t0")
        client.create_topic("t3")  # room again
        assert client.list_topics() == ["t1", "t2", "t3"]
