"""A small urllib client of the HTTP API for the tests: (status, headers, JSON) for any answer."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from odradek.node import Node
from odradek.protocols.registry import RegistryListener


class Api:
    """The HTTP API of a node on a free loopback port."""

    def __init__(self, node: Node, listener: RegistryListener) -> None:
        self.node = node
        self.listener = listener
        self.base = f"http://127.0.0.1:{listener.port}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), json.loads(error.read())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, _, document = self.call(method, path, body)
        assert status in (200, 201), (status, document)
        return document


class EventReader:
    """An open ``text/event-stream`` response, read one event (or comment) at a time.

    Every read waits at most ``timeout_seconds`` (a generous bound, never a timing the
    test asserts): a stream that goes silent for longer fails the test instead of
    hanging it."""

    def __init__(
        self, port: int, path: str, headers: dict[str, str] | None = None, timeout_seconds: float = 60.0
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_seconds)
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.headers)

    def next(self) -> dict[str, Any]:
        """The next event as {"event", "id", "data"} (data parsed from JSON), or
        {"comment": text} for a comment line, or {} at the end of the stream."""
        fields: dict[str, Any] = {}
        while True:
            line = self.response.readline()
            if not line:
                return fields
            text = line.decode().rstrip("\n")
            if not text:
                if fields:
                    return fields
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                return {"comment": value}
            fields[name] = json.loads(value) if name == "data" else value

    def records(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` record events (skipping comments and the retry line)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = self.next()
            assert event, f"the stream ended after {len(found)} of {count} records"
            if event.get("event") == "record":
                found.append(event)
        return found

    def close(self) -> None:
        self.response.close()  # the response holds the socket open too
        self.connection.close()


class Served:
    """A real ``odradek serve`` process with its registry listener (and so the HTTP API)
    on a free loopback port; ``base`` is the listener's URL once it printed its ready line."""

    def __init__(self, data_dir: str, *args: str) -> None:
        command = [
            sys.executable, "-m", "odradek.cli.main", "serve", "--data-dir", data_dir,
            "--listen", "127.0.0.1:0", "--kafka-listen", "off", "--registry-listen", "127.0.0.1:0",
            "--no-fsync", *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()  # the ready line, or nothing if it died
        match = re.search(r"ready url=(\S+) .*registry=(\S+)", line)
        if match is None:
            self.process.kill()
            _, errors = self.process.communicate()
            raise AssertionError(f"odradek serve did not become ready: {line} {errors.decode()[-2000:]}")
        self.url, self.base = match.group(1), match.group(2)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, errors = self.process.communicate(timeout=60)
        return self.process.returncode, errors.decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
