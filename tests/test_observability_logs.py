"""Structured logs carry the id of the request each door serves, and never a secret.

Goal: with `odradek serve --log-format json`, every line is a JSON object with ts, level,
logger and msg, and a line logged while a door serves a request has its ``request_id``:
the client's ``X-Request-Id`` on HTTP (echoed in the answer; a fresh one otherwise), the
connection and correlation id of a Kafka request, a fresh id per Flight call. A Kafka
SASL password is never logged, even at debug level.
Method: real `odradek serve` processes at debug level; requests through each door; the
stderr JSON lines read after a graceful stop.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek.errors import OdradekError
from odradek.security import CredentialStore

sys.path.insert(0, str(Path(__file__).parent / "cli"))

from odradek_process import Server

from odradek.ports import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")

# Generous: a loaded machine may be slow; no assertion is about speed.
WAIT_SECONDS = 60.0
PASSWORD = "s3cret-pa55word-never-logged"


def stop(server: Server) -> list[dict[str, Any]]:
    code, errors = server.stop()
    assert code == 0, errors[-2000:]
    lines = [line for line in errors.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_each_door_logs_its_request_id(tmp_path: Path) -> None:
    kafka, http = free_port(), free_port()
    server = Server(
        tmp_path / "data",
        "--kafka-listen",
        f"127.0.0.1:{kafka}",
        "--registry-listen",
        f"127.0.0.1:{http}",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    )
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/v1/topics", headers={"X-Request-Id": "req-given-1"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.headers["X-Request-Id"] == "req-given-1"
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/topics", timeout=30) as answer:
            fresh = answer.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", fresh)
        client = odradek.connect(server.url)
        with pytest.raises(OdradekError):
            client.describe_topic("missing")  # refused: logged at debug by the Flight door
        client.create_topic("t")
        producer = confluent_kafka.Producer({"bootstrap.servers": f"127.0.0.1:{kafka}"})
        producer.produce("t", value=b"v")
        assert producer.flush(WAIT_SECONDS) == 0
    finally:
        events = stop(server)
    for event in events:
        assert {"ts", "level", "logger", "msg"} <= event.keys(), event
    ids = {event.get("request_id") for event in events}
    assert "req-given-1" in ids and fresh in ids
    flight = [event for event in events if "refused" in event["msg"] and "missing" in event["msg"]]
    assert flight and all(re.fullmatch(r"[0-9a-f]{16}", event.get("request_id", "")) for event in flight)
    produce = [event for event in events if event["msg"].startswith("request PRODUCE ")]
    assert produce and all(
        re.fullmatch(r"127\.0\.0\.1:\d+/\d+", event.get("request_id", "")) for event in produce
    )
    assert not any("request_id" in event for event in events if event["msg"] == "ready")


def test_a_kafka_password_is_never_logged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore.open(str(data))
    store.add_user("alice", PASSWORD, admin=True)
    kafka = free_port()
    server = Server(
        data,
        "--auth",
        "--kafka-listen",
        f"127.0.0.1:{kafka}",
        "--registry-listen",
        "off",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    )
    try:
        settings = {
            "bootstrap.servers": f"127.0.0.1:{kafka}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "alice",
            "sasl.password": PASSWORD,
        }
        producer = confluent_kafka.Producer(settings)
        producer.produce("t", value=b"v")
        producer.flush(WAIT_SECONDS)  # delivered or not (no such topic): it authenticated
    finally:
        code, errors = server.stop()
    assert code == 0, errors[-2000:]
    assert PASSWORD not in errors
    assert "request SASL_AUTHENTICATE" in errors  # it was logged, without its body


def test_text_is_the_key_value_format(tmp_path: Path) -> None:
    """`--log-format text` (here from ODRADEK_LOG_FORMAT) is the key=value lines of kv."""
    server = Server(
        tmp_path / "data",
        "--kafka-listen",
        "off",
        "--registry-listen",
        "off",
        env={"ODRADEK_LOG_FORMAT": "text"},
    )
    code, errors = server.stop()
    assert code == 0, errors[-2000:]
    lines = [line for line in errors.splitlines() if line.strip()]
    assert lines and all(re.match(r"ts=\S+ level=\w+ logger=\S+ msg=", line) for line in lines), lines
    assert any("msg=ready" in line for line in lines)
