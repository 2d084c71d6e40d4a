"""Defining and deleting a view takes an admin principal on a door with authentication.

Goal: a view's reducer is code the server imports, so on a Flight door with
authentication a principal that is not an admin may read views (``view_get``,
``view_scan``, ``describe_view``, ``list_views``) and append with ``wait_for``, but
``create_view`` and ``delete_view`` are refused with ``Unauthorized`` and change
nothing; an admin may do both. Method: an in-process FlightService with an
authenticator over a credential store holding an admin and a plain user, each with an
API token, and the public client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import odradek
from odradek.errors import Unauthorized
from odradek.node import Node
from odradek.protocols.flight.server import FlightService
from odradek.security import Authenticator, CredentialStore


class Door:
    def __init__(self, directory: Path) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        self.store = CredentialStore.open(str(directory / "data"))
        self.store.add_user("root", "root-secret", admin=True)
        self.store.add_user("alice", "alice-secret")
        self.admin_token, _ = self.store.create_token("root")
        self.user_token, _ = self.store.create_token("alice")
        self.server = FlightService(self.node, "grpc://127.0.0.1:0", authenticator=Authenticator(self.store))
        self.url = f"grpc://127.0.0.1:{self.server.port}"


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Door]:
    served = Door(tmp_path)
    yield served
    served.server.drain(5.0)
    served.node.close()


def test_only_an_admin_defines_and_deletes_views(door: Door) -> None:
    with odradek.connect(door.url, token=door.user_token) as user:
        user.create_topic("t")
        with pytest.raises(Unauthorized, match="admin"):
            user.create_view("v", "t", "odradek.views.reducers:latest")
        assert user.list_views() == []
        with odradek.connect(door.url, token=door.admin_token) as admin:
            admin.create_view("v", "t", "odradek.views.reducers:latest")
            user.append("t", [{"key": b"k", "value": b"1"}], wait_for=["view:v"], timeout=60.0)
            assert user.view_get("v", b"k") == b"1"
            assert user.view_scan("v").num_rows == 1
            assert user.describe_view("v")["keys"] == 1
            with pytest.raises(Unauthorized):
                user.delete_view("v")
            assert user.list_views() == ["v"]
            admin.delete_view("v")
            assert user.list_views() == []
