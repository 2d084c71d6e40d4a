"""Durability of group progress: after a SIGKILL nothing acked is redelivered and
everything unacked is.

Method: the parent appends keyed records (fsync on) and starts consumer_child.py,
which polls, acks and nacks at random and prints every ack after it returned. The
parent SIGKILLs the child at a random moment, then reads the group's progress file
the way a restart does and checks, for every cycle:

* every acknowledged offset is settled (nothing acked was lost);
* every settled offset was acknowledged, or was in the one ack the child had started
  when it died (nothing was settled that no ack asked for);

then appends more records and runs the next cycle. At the end a fresh consumer drains
the group: it must receive exactly the offsets never settled, each once, and none of
the acknowledged ones. The child rewrites its progress file as a snapshot every few
KiB, so kills land inside rewrites too. Cycles: ``ODRADEK_GROUP_CRASH_CYCLES``
(default 6).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import odradek
from odradek.groups.state import ProgressStore

CHILD = Path(__file__).with_name("consumer_child.py")
CYCLES = int(os.environ.get("ODRADEK_GROUP_CRASH_CYCLES", "6"))
TOPIC = "durable.events"
GROUP = "durable"


def append(data_dir: Path, count: int, rng: random.Random) -> int:
    with odradek.open(data_dir, retention_check_seconds=3600) as client:
        client.create_topic(TOPIC, exist_ok=True)
        keys = [f"key-{rng.randrange(40)}".encode() if rng.random() < 0.9 else None for _ in range(count)]
        batch = pa.RecordBatch.from_arrays(
            [pa.array(keys, pa.binary()), pa.array([b"v"] * count, pa.binary())], ["key", "value"]
        )
        return client.append(TOPIC, batch).next_offset


def run_child_until_killed(data_dir: Path, seed: int, rng: random.Random) -> list[int]:
    stderr_path = data_dir.parent / "child.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), str(seed)], stdout=subprocess.PIPE, stderr=stderr
        )
    lines: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60  # hang guard: imports and recovery, not a speed test
    while not lines and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not lines:
        process.kill()
        process.wait()
        raise AssertionError(f"the child acknowledged nothing: {stderr_path.read_text()}")
    time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    assert process.stdout is not None
    process.stdout.close()
    acked: list[int] = []
    for line in lines:
        if line.endswith(b"\n"):  # a torn last line was never a complete acknowledgement
            acked.extend(json.loads(line)["acked"])
    return acked


def settled_offsets(data_dir: Path, end: int) -> set[int]:
    """What a restart would consider settled, read from the progress file."""
    state = ProgressStore(str(data_dir / "groups" / f"{GROUP}.state"), fsync=False).load()
    assert state is not None and TOPIC in state.topics
    progress = state.topics[TOPIC]
    settled = set(range(progress.committed))
    for start, stop in zip(progress.starts.tolist(), progress.ends.tolist(), strict=True):
        settled.update(range(start, stop))
    assert max(settled, default=-1) < end
    return settled


@pytest.mark.slow
def test_sigkill_never_loses_nor_invents_acknowledged_progress(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(int(os.environ.get("ODRADEK_GROUP_CRASH_SEED", "4321")))
    end = append(data_dir, 1500, rng)
    acked: set[int] = set()
    for cycle in range(CYCLES):
        newly = run_child_until_killed(data_dir, rng.randrange(1 << 30), rng)
        assert not acked & set(newly), f"cycle {cycle}: offsets acked twice (redelivered after an ack)"
        acked.update(newly)
        settled = settled_offsets(data_dir, end)
        assert acked <= settled, f"cycle {cycle}: acked offsets lost: {sorted(acked - settled)[:10]}"
        intent = json.loads((tmp_path / "ack-intent.json").read_text())["acking"]
        extra = settled - acked
        invented = sorted(extra - set(intent))
        assert not invented, f"cycle {cycle}: settled without an ack: {invented[:10]}"
        acked |= extra  # the ack under way when the child died did reach the disk
        end = append(data_dir, rng.randrange(100, 400), rng)
    with odradek.open(data_dir, fsync=False, retention_check_seconds=3600) as client:
        consumer = client.subscribe(TOPIC, group=GROUP)
        received: list[int] = []
        for _ in range(10_000):
            deliveries = consumer.poll(500, timeout=0)
            if not deliveries:
                break
            received.extend(d.offset for d in deliveries)
            assert consumer.ack(deliveries).ok
        assert len(received) == len(set(received)), "a record was redelivered twice after the restart"
        assert not set(received) & acked, "an acknowledged record was redelivered after a crash"
        assert set(received) | acked == set(range(end)), "an unacknowledged record was never redelivered"
        assert client.describe_group(GROUP).lag == 0
    assert len(acked) > CYCLES, "the child acknowledged too little to prove anything"
    assert np.all(np.diff(sorted(received)) > 0)
