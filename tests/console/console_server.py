"""A real `odradek serve` for the console's tests, and a small JSON client of its HTTP API."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# The HTTP API tests' event-stream reader, imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parents[1] / "protocols" / "http_api"))

from http_api_client import EventReader as HttpEventReader


class Served:
    """`odradek serve` with its registry listener (the HTTP API and the console) and its
    Kafka door on free loopback ports; ``base`` is that listener's URL and ``kafka`` the
    door's bootstrap address, once the ready line said them."""

    def __init__(self, data_dir: str, *args: str, env: dict[str, str] | None = None) -> None:
        command = [
            sys.executable, "-m", "odradek.cli.main", "serve", "--data-dir", data_dir,
            "--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0", "--registry-listen", "127.0.0.1:0",
            "--no-fsync", *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()  # the ready line, or nothing if it died
        match = re.search(r"ready url=(\S+) kafka=(\S+) registry=(\S+)", line)
        if match is None:
            self.process.kill()
            _, errors = self.process.communicate()
            raise AssertionError(f"odradek serve did not become ready: {line} {errors.decode()[-2000:]}")
        self.url, self.kafka, self.base = match.group(1), match.group(2), match.group(3)
        self.authorization: str | None = None

    def login(self, user: str, password: str) -> None:
        """Send Basic credentials with every call from now on."""
        self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, document = self.call(method, path, body)
        assert status in (200, 201), (method, path, status, document)
        return document

    def produce(self, topic: str, records: list[dict[str, Any]]) -> Any:
        return self.ok("POST", f"/v1/topics/{topic}/records", {"records": records})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


class EventReader(HttpEventReader):
    """The HTTP API's event-stream reader (tests/protocols/http_api); the console's tail
    wants the records' data, and an error event fails the test."""

    def records(self, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = self.next()
            assert event, f"the stream ended after {len(found)} of {count} records"
            assert event.get("event") != "error", event
            if event.get("event") == "record":
                found.append(event["data"])
        return found

    def close(self) -> None:
        self.response.close()
        self.connection.close()
