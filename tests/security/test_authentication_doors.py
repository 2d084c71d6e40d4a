"""Authentication on the native (Flight) door and the safe defaults of `odradek serve`.

Goal: a Flight door with an authenticator serves a client with a valid API token or a
user and password, and refuses (Unauthenticated, nothing done) a client with no
credentials, a wrong password, an unknown, revoked or expired token; ODRADEK_TOKEN is
read when no token is given. Without authentication a door on a non-loopback address is
refused unless --insecure, and the ready line says "no authentication".
Method: an in-process FlightService over a fresh node and a credential store; the
public client (odradek.connect); serve's settings checked without starting a server.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

import odradek
from odradek.cli.main import build_parser
from odradek.cli.serve import check_exposure, settings_from
from odradek.errors import InvalidRequest, Unauthenticated
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.protocols.metrics import Metrics
from odradek.security import Authenticator, CredentialStore


class Door:
    def __init__(self, directory: Path) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        self.store = CredentialStore.open(str(directory / "data"))
        self.store.add_user("alice", "alice-secret")
        self.token, self.entry = self.store.create_token("alice")
        self.server = FlightService(self.node, "grpc://127.0.0.1:0", authenticator=Authenticator(self.store))
        self.url = f"grpc://127.0.0.1:{self.server.port}"


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    served = Door(tmp_path)
    yield served
    served.server.drain(5.0)
    served.node.close()


def test_a_token_or_a_password_is_served(door: Door) -> None:
    with odradek.connect(door.url, token=door.token) as client:
        client.create_topic("orders")
    with odradek.connect(door.url, user="alice", password="alice-secret") as client:
        assert client.list_topics() == ["orders"]


def test_each_read_is_metered_to_the_principal_that_made_it(tmp_path: Path) -> None:
    """A streaming read's batches are sent after the call's handler returned: they are
    metered (and throttled by quotas) as the caller's, not as the anonymous principal's
    (a defect: every streaming read was metered as anonymous)."""
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    store.add_user("alice", "alice-secret")
    metrics = Metrics(node)
    server = FlightService(node, "grpc://127.0.0.1:0", authenticator=Authenticator(store), observer=metrics)
    try:
        with odradek.connect(
            f"grpc://127.0.0.1:{server.port}", user="alice", password="alice-secret"
        ) as client:
            client.create_topic("orders.eu")
            client.append("orders.eu", [{"value": b"%d" % n} for n in range(5)])
            assert sum(batch.num_rows for batch in client.read("orders.eu", start="earliest", wait=0)) == 5
            assert sum(batch.num_rows for batch in client.read("orders.*", start="earliest", wait=0)) == 5
            assert sum(batch.num_rows for batch in client.fetch("orders.eu", 0)) == 5
        metered = metrics.metering.snapshot()
        assert metered["alice"]["records_out"] == 15 and metered["alice"]["records_in"] == 5
        assert metered.get("ANONYMOUS", {}).get("records_out", 0) == 0
    finally:
        server.drain(5.0)
        node.close()


def test_the_token_comes_from_the_environment(door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODRADEK_TOKEN", door.token)
    with odradek.connect(door.url) as client:
        assert client.list_topics() == []


@pytest.mark.parametrize("case", ["none", "password", "unknown", "revoked", "expired"])
def test_bad_credentials_are_refused_and_nothing_is_done(
    door: Door, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ODRADEK_TOKEN", raising=False)
    arguments: dict[str, str] = {}
    if case == "password":
        arguments = {"user": "alice", "password": "not-the-Secret-42"}
    elif case == "unknown":
        arguments = {"token": "odr_0123456789abcdef_" + "A" * 43}
    elif case == "revoked":
        door.store.revoke_token(door.entry.id)
        arguments = {"token": door.token}
    elif case == "expired":
        expired, _ = door.store.create_token("alice", expires_seconds=-60)  # expired a minute ago
        arguments = {"token": expired}
    with odradek.connect(door.url, **arguments) as client, pytest.raises(Unauthenticated) as refused:
        client.create_topic("refused")
    assert "Secret" not in refused.value.message
    assert door.node.engine.list_topics() == []


def _settings(*flags: str) -> object:
    args = build_parser().parse_args(["serve", *flags])
    assert isinstance(args, argparse.Namespace)
    return settings_from(args, {})


@pytest.mark.parametrize(
    "flags",
    [
        ["--listen", "0.0.0.0:8815"],
        ["--kafka-listen", "10.1.2.3:9092"],
        ["--registry-listen", "[::]:8081"],
        ["--metrics-listen", "0.0.0.0:9464"],
    ],
)
def test_a_door_beyond_loopback_without_authentication_is_refused(flags: list[str]) -> None:
    with pytest.raises(InvalidRequest, match=r"no authentication is configured.*--insecure"):
        check_exposure(_settings(*flags))  # type: ignore[arg-type]
    check_exposure(_settings(*flags, "--insecure"))  # type: ignore[arg-type]
    check_exposure(_settings(*flags, "--auth"))  # type: ignore[arg-type]


def test_loopback_doors_need_no_authentication() -> None:
    check_exposure(_settings("--listen", "127.0.0.1:0", "--kafka-listen", "localhost:0"))  # type: ignore[arg-type]


def test_the_async_client_sends_credentials(door: Door) -> None:
    import asyncio

    async def listing(**credentials: str) -> list[str]:
        async with odradek.connect_async(door.url, **credentials) as client:
            return await client.list_topics()

    assert asyncio.run(listing(token=door.token)) == []
    with pytest.raises(odradek.Unauthenticated):
        asyncio.run(listing(user="alice", password="not-the-Secret-42"))
