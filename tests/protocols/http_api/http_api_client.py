"""A small urllib client of the HTTP API for the tests: (status, headers, JSON) for any answer."""

from __future__ import annotations

import json
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
