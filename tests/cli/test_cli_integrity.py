"""`odradek topic verify|repair|list` on damaged data, through a real server.

Goal: an operator sees damage where they look — `topic list` warns about a topic that
cannot be opened, `topic verify` names the damaged offsets, segment and bytes and exits 1,
`topic repair --drop-range` lets a read-only topic take appends again — and the same
checks work offline on a stopped server's data directory with `--data-dir`.

Method: build a data directory with the embedded engine, damage files by hand, start
`odradek serve` on it and drive the CLI as a user would.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from odradek_process import Server, run

import odradek
from odradek.engine import segment as seg
from odradek.ports import free_port


def _damaged_data(data: Path) -> None:
    with odradek.open(data) as client:
        client.create_topic("orders")
        client.create_topic("broken")
        for batch in range(4):
            client.append("orders", [{"key": "k", "value": b"v" * 100}] * 10, producer=("p", batch))
        client.append("broken", [{"value": b"x"}])
    segment = data / "topics" / "orders" / seg.segment_name(0)
    frames = seg.scan_segment(segment.read_bytes(), segment.name, 0).frames
    raw = bytearray(segment.read_bytes())
    raw[frames[1].position + 100] ^= 0x20
    segment.write_bytes(bytes(raw))
    for name in ("topic.json", "topic.json.copy"):
        (data / "topics" / "broken" / name).write_bytes(b"{not json")


def test_verify_and_repair_through_the_server(tmp_path: Path, start_server: type[Server]) -> None:
    data = tmp_path / "data"
    _damaged_data(data)
    metrics_port = free_port()
    server = start_server(data, "--metrics-listen", f"127.0.0.1:{metrics_port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'odradek_topic_damaged_records{accepted="false",topic="orders"} 10.0' in metrics
    assert 'odradek_topic_read_only{topic="orders"} 1.0' in metrics
    assert "odradek_topics_unavailable 1.0" in metrics
    listed = run("topic", "list", server=server)
    assert listed.returncode == 0
    assert listed.stdout.decode().split() == ["orders"]
    assert "topic broken is unavailable" in listed.stderr.decode()
    assert "topic.json" in listed.stderr.decode()

    described = json.loads(run("topic", "describe", "orders", server=server).stdout)
    assert described["status"] == "read-only"
    assert [(d["first_offset"], d["end_offset"]) for d in described["damaged"]] == [(10, 20)]

    verified = run("topic", "verify", "orders", server=server)
    assert verified.returncode == 1
    text = verified.stdout.decode()
    assert "damaged: offsets 10-19 in segment 00000000000000000000.log" in text
    assert "odradek topic repair orders --drop-range 10-19" in text
    as_json = json.loads(run("topic", "verify", "orders", "--format", "json", server=server).stdout)
    assert as_json["ok"] is False and as_json["frames"] == 3

    refused = run("produce", "orders", "--key", "k", server=server, stdin=b"new\n")
    assert refused.returncode != 0 and b"refuses appends" in refused.stderr

    wrong = run("topic", "repair", "orders", "--drop-range", "0-19", server=server)
    assert wrong.returncode != 0 and b"intact records" in wrong.stderr
    repaired = run("topic", "repair", "orders", "--drop-range", "10-19", server=server)
    assert repaired.returncode == 0, repaired.stderr
    assert b"status damaged" in repaired.stdout
    assert run("produce", "orders", "--key", "k", server=server, stdin=b"new\n").returncode == 0
    assert json.loads(run("topic", "describe", "orders", server=server).stdout)["next_offset"] == 41
    assert run("topic", "delete", "broken", server=server).returncode == 0
    code, _ = server.stop()
    assert code == 0


def test_verify_offline_with_a_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _damaged_data(data)
    verified = run("topic", "verify", "orders", "--data-dir", str(data))
    assert verified.returncode == 1
    assert b"offsets 10-19" in verified.stdout
    repaired = run("topic", "repair", "orders", "--drop-range", "10-19", "--data-dir", str(data))
    assert repaired.returncode == 0, repaired.stderr
    clean = run("topic", "verify", "orders", "--data-dir", str(data), "--format", "json")
    report = json.loads(clean.stdout)
    assert report["damaged"][0]["accepted"] is True
    assert clean.returncode == 0  # the damage is still listed, but an operator accepted it


def test_verify_offline_fails_on_a_damaged_snapshot_log(tmp_path: Path) -> None:
    # It exited 0 and printed the damage as a derived file "rebuilt at the next open".
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        for key in (b"a", b"b", b"c"):
            client.append("t", [{"key": key, "value": b"event"}])
            client.snapshot("t", key, b"state of " + key, version=1)
    path = data / "topics" / "t" / "snapshots" / seg.segment_name(0)
    frames = seg.scan_segment(path.read_bytes(), path.name, 0).frames
    with open(path, "r+b") as handle:
        handle.seek(frames[1].position + frames[1].size // 2)
        byte = handle.read(1)
        handle.seek(frames[1].position + frames[1].size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    verified = run("topic", "verify", "t", "--data-dir", str(data))
    assert verified.returncode == 1, verified.stdout
    assert b"damaged: snapshot log: offsets 1-1" in verified.stdout
    assert b"rebuilt at the next open: snapshot log" not in verified.stdout
    assert b"snapshot log is damaged" in verified.stdout
