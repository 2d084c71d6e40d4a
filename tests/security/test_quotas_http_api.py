"""Byte quotas on the HTTP API: produce and fetch bytes counted, 429 over quota, metered.

Goal: with `producer_byte_rate` and `consumer_byte_rate` quotas on a user, a produce
served while the user is within its quota counts its request bytes against it; once
over, the next produce is answered 429 with a Retry-After of whole seconds and appends
nothing; reads count their answer's bytes against the fetch quota and, once over, a read,
a key read and an SSE tail are answered 429 before anything is read; another user is not
affected; /metrics shows the user's bytes in and out and its throttle time, and an SSE
tail's bytes as it sends them.
Method: a real `odradek serve --auth` with its HTTP and metrics doors on free loopback
ports, the quotas set with `odradek quota set` before the start; raw HTTP requests
(http.client). The count of bytes decides, never a timing: the quota's span is at least
10 s and each produce or read is several times the quota's bytes for it.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import sys
from pathlib import Path
from typing import Any

from odradek.ports import free_ports

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))  # the serve subprocess helpers

from odradek_process import Server, run

RATE = 1000  # bytes/s: the quotas' span is at least 10 s, so 10,000 bytes reach it


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return str(result.stdout.decode())


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _call(
    port: int, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent = {**headers, **({"Content-Type": "application/json"} if payload is not None else {})}
        connection.request(method, path, body=payload, headers=sent)
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def _records(count: int, size: int) -> dict[str, Any]:
    return {"records": [{"key": f"k{i}", "value": "v" * size} for i in range(count)]}


def test_http_produce_and_fetch_bytes_against_the_quotas(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    for name in ("alice", "bob"):
        _ok(run("user", "add", name, "--data-dir", data, stdin=f"{name}-secret-1\n".encode()))
    _ok(run("user", "add", "root", "--admin", "--data-dir", data, stdin=b"root-secret-1\n"))
    rates = ("--producer-byte-rate", str(RATE), "--consumer-byte-rate", str(RATE))
    _ok(run("quota", "set", "user=alice", *rates, "--data-dir", data))
    http_port, metrics_port = free_ports(2)
    server = Server(
        Path(data),
        "--auth",
        "--kafka-listen",
        "off",
        "--registry-listen",
        f"127.0.0.1:{http_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    alice, bob = _basic("alice", "alice-secret-1"), _basic("bob", "bob-secret-1")
    try:
        assert _call(http_port, "POST", "/v1/topics", alice, {"name": "t"})[0] == 201
        produce = _records(20, 1000)  # about 21 KB: twice what 10 s of the quota allow
        status, _, _ = _call(http_port, "POST", "/v1/topics/t/records", alice, produce)
        assert status == 200
        status, headers, body = _call(http_port, "POST", "/v1/topics/t/records", alice, produce)
        assert status == 429, body
        assert int(headers["Retry-After"]) >= 1
        refusal = json.loads(body)
        assert refusal["code"] == "throttled" and "produce" in refusal["message"]
        # Another user is not throttled, and the refused produce appended nothing.
        assert _call(http_port, "POST", "/v1/topics/t/records", bob, _records(1, 10))[0] == 200
        status, _, bob_read = _call(http_port, "GET", "/v1/topics/t/records?offset=0&limit=1000", bob)
        assert status == 200 and len(json.loads(bob_read)["records"]) == 21

        status, _, read = _call(http_port, "GET", "/v1/topics/t/records?offset=0&limit=1000", alice)
        assert status == 200 and len(read) > 10 * RATE
        for path in ("/v1/topics/t/records?offset=0", "/v1/topics/t/keys/k1/records", "/v1/topics/t/events"):
            status, headers, body = _call(http_port, "GET", path, alice)
            assert status == 429, (path, body)
            assert int(headers["Retry-After"]) >= 1 and "fetch" in json.loads(body)["message"]

        # A tail's chunks are metered as they are sent (bob: no quota, never throttled).
        status, _, tail = _call(http_port, "GET", "/v1/topics/t/events?start=earliest&limit=21", bob)
        assert status == 200 and tail.count(b"event: record") == 21 and b"event: end" in tail

        status, _, scraped = _call(metrics_port, "GET", "/metrics", _basic("root", "root-secret-1"))
        assert status == 200
        text = scraped.decode()

        def meter(name: str, principal: str = "alice") -> float:
            found = re.search(rf'^{name}_total{{principal="{principal}"}} (\S+)$', text, re.MULTILINE)
            assert found is not None, name
            return float(found.group(1))

        assert meter("odradek_principal_bytes_in") > 20 * 1000
        assert meter("odradek_principal_records_in") == 20
        assert meter("odradek_principal_bytes_out") >= len(read)
        assert meter("odradek_principal_records_out") == 21
        assert meter("odradek_principal_throttle_seconds") > 0
        assert meter("odradek_principal_bytes_out", "bob") == len(bob_read) + len(tail)
    finally:
        server.stop()
