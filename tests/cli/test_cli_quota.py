"""`odradek quota set|list|remove`, offline and through a running server.

Goal: an operator sets quotas offline (--data-dir) before the server starts, and
through the native door while it runs; what is set survives a restart and is what the
server throttles by (a Kafka producer over its quota sees throttle_time_ms); bad
entities and values are refused with exit code 1 and a clear message, changing nothing.
Method: CLI subprocesses on a data directory and against a real `odradek serve`
subprocess on loopback ports (no authentication: its one principal is ANONYMOUS).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import confluent_kafka
from odradek_process import Server, run

from odradek.ports import free_port


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_quotas_offline_then_through_the_door(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _ok(run("quota", "set", "user=alice", "--producer-byte-rate", "1048576", "--data-dir", data))
    _ok(run("quota", "set", "client-id=<default>", "--request-rate", "100", "--data-dir", data))
    for bad, reason in (
        (["user=a b", "--request-rate", "1"], b"user name"),
        (["tenant=shop,user=alice", "--request-rate", "1"], b"tenant alone"),
        (["user=alice", "--request-rate", "-1"], b"positive"),
        (["user=alice"], b"at least one quota"),
    ):
        refused = run("quota", "set", *bad, "--data-dir", data)
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
    listing = _ok(run("quota", "list", "--data-dir", data))
    assert listing.splitlines() == [
        "client-id=<default>\trequest_rate=100",
        "user=alice\tproducer_byte_rate=1.04858e+06",
    ]
    server = Server(Path(data), "--kafka-listen", "127.0.0.1:0", "--registry-listen", "off")
    try:
        _ok(run("quota", "set", "client-id=noisy", "--producer-byte-rate", "1000", server=server))
        _ok(run("quota", "remove", "user=alice", server=server))
        shown = [
            json.loads(line)
            for line in _ok(run("quota", "list", "--format", "json", server=server)).splitlines()
        ]
        assert shown == [
            {"entity": "client-id=<default>", "quotas": {"request_rate": 100.0}},
            {"entity": "client-id=noisy", "quotas": {"producer_byte_rate": 1000.0}},
        ]
        missing = run("quota", "remove", "user=nobody", server=server)
        assert missing.returncode == 1 and b"no quotas" in missing.stderr
    finally:
        code, errors = server.stop()
    assert code == 0, errors
    # The settings survived the restart, and the server throttles by them.
    port = free_port()
    server = Server(Path(data), "--kafka-listen", f"127.0.0.1:{port}", "--registry-listen", "off")
    try:
        assert "client-id=noisy" in _ok(run("quota", "list", server=server))
        throttled: list[int] = []
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "client.id": "noisy",
                "throttle_cb": lambda event: throttled.append(event.throttle_time),
            }
        )
        for _ in range(20):
            producer.produce("quota.cli", b"x" * 1000)
        assert producer.flush(60) == 0
        deadline = time.monotonic() + 60
        while not throttled and time.monotonic() < deadline:
            producer.poll(0.1)
        assert throttled and max(throttled) > 0
    finally:
        code, errors = server.stop()
    assert code == 0, errors
