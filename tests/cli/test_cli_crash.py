"""An acknowledged write survives `kill -9` of the server (DESIGN §2.4).

Goal: every append the server acknowledged over the network is there, intact, after
the server process is SIGKILLed in the middle of a stream of appends and restarted on
the same data directory; offsets stay dense and key versions continue.
Method: a real `odradek serve` (fsync on); two client threads append keyed batches of
varying size in a loop, recording each acknowledged result and what they sent; the
server is killed with SIGKILL while they write, restarted, and the topic is read back
and compared with the acknowledgements. Two kill cycles.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from odradek_process import Server

import odradek

WRITERS = 2
# Kill once the writers hold at least this many acknowledgements, plus a random pause so
# the kill lands anywhere in an append (a deadline, not an assumption about speed).
ACKS_BEFORE_KILL = 20
ACKS_DEADLINE_SECONDS = 120.0


def _write_until_failure(url: str, writer: int, acked: list[tuple[int, int, list[bytes]]]) -> None:
    client = odradek.connect(url, timeout=10)
    sequence = 0
    try:
        while True:
            count = 1 + (sequence * 37 + writer * 11) % 200
            values = [b"w%d-s%d-r%d" % (writer, sequence, index) for index in range(count)]
            keys = [b"key-%d" % ((sequence + index) % 50) for index in range(count)]
            batch = pa.RecordBatch.from_pydict({"key": keys, "value": values})
            result = client.append("crash", batch)
            acked.append((result.base_offset, result.count, values))
            sequence += 1
    except odradek.OdradekError:
        return  # the server is gone: what was acknowledged so far is what must survive
    finally:
        client.close()


def _kill_while_writing(server: Server) -> list[tuple[int, int, list[bytes]]]:
    acked: list[tuple[int, int, list[bytes]]] = []
    threads = [
        threading.Thread(target=_write_until_failure, args=(server.url, writer, acked))
        for writer in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + ACKS_DEADLINE_SECONDS
    while len(acked) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.2))
    server.process.send_signal(signal.SIGKILL)
    server.process.communicate(timeout=20)
    for thread in threads:
        thread.join(timeout=30)
    return acked


def _check(url: str, acked: list[tuple[int, int, list[bytes]]]) -> int:
    with odradek.connect(url) as client:
        table = pa.Table.from_batches(list(client.read("crash", wait=0)))
        versions = client.key_version("crash", b"key-0")
    offsets = table.column("offset").to_pylist()
    assert offsets == list(range(len(offsets))), "offsets are dense from 0"
    values = table.column("value").to_pylist()
    for base, count, sent in acked:
        assert values[base : base + count] == sent, (
            f"acknowledged append at offset {base} is missing or changed"
        )
    assert versions == sum(1 for row in table.column("key").to_pylist() if row == b"key-0")
    return len(offsets)


@pytest.mark.slow
@pytest.mark.parametrize("cycles", [2])
def test_acknowledged_appends_survive_sigkill(
    start_server: type[Server], tmp_path: Path, cycles: int
) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    with odradek.connect(server.url) as client:
        client.create_topic("crash")
    everything: list[tuple[int, int, list[bytes]]] = []
    for _ in range(cycles):
        acked = _kill_while_writing(server)
        assert len(acked) >= ACKS_BEFORE_KILL, "the writers got acknowledgements before the kill"
        everything.extend(acked)
        server = start_server(data)
        total = _check(server.url, everything)
        assert total >= sum(count for _, count, _ in everything)
    code, _ = server.stop()
    assert code == 0
