"""``odradek.connect()`` and ``odradek.connect_async()`` find the server as the CLI does.

Goal: without a URL, both connect to ``$ODRADEK_URL`` when it is set and not empty,
else to the default ``grpc://127.0.0.1:8815``; a URL given explicitly wins over the
variable; a URL without a scheme gets ``grpc://``; a bad URL (from either place) is an
InvalidRequest naming the expected form.

Method: an in-process Flight server on a free loopback port; the variable is set with
``monkeypatch``; a call that reaches the server (``list_topics``) proves where the
client went. Connecting is lazy, so the default URL is checked on the client's ``url``
without a server there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import odradek
from odradek.errors import InvalidRequest
from odradek.node import Node
from odradek.protocols.flight.server import FlightService


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    node = Node.open(tmp_path / "data")
    service = FlightService(node, "grpc://127.0.0.1:0")
    node.engine.create_topic("found.here")
    yield f"grpc://127.0.0.1:{service.port}"
    service.drain(5.0)
    node.close()


def test_connect_without_a_url_uses_the_variable(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_URL", url)
    with odradek.connect() as client:
        assert client.url == url
        assert client.list_topics() == ["found.here"]


def test_connect_async_without_a_url_uses_the_variable(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_URL", url.removeprefix("grpc://"))  # host:port is accepted too

    async def topics() -> list[str]:
        async with odradek.connect_async() as client:
            return await client.list_topics()

    assert asyncio.run(topics()) == ["found.here"]


def test_an_explicit_url_wins(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_URL", "grpc://127.0.0.1:1")
    with odradek.connect(url) as client:
        assert client.list_topics() == ["found.here"]


@pytest.mark.parametrize("value", [None, ""])
def test_without_the_variable_the_default(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("ODRADEK_URL", raising=False)
    else:
        monkeypatch.setenv("ODRADEK_URL", value)
    with odradek.connect() as client:
        assert client.url == "grpc://127.0.0.1:8815"


def test_a_bad_url_in_the_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_URL", "http://127.0.0.1:8815")
    with pytest.raises(InvalidRequest, match=r"grpc://"):
        odradek.connect()
