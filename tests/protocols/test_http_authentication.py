"""Authentication on the HTTP doors: the Schema Registry and the metrics endpoint.

Goal: with an authenticator, every request but /healthz and /readyz needs HTTP Basic
(user and password) or Bearer (an API token) credentials; a request without them, with
a wrong password or a revoked token is answered 401 with a WWW-Authenticate challenge,
its handler never runs, and the message never repeats the secret; the probes stay open.
Method: the real doors in-process over a fresh node, inside serving_authentication;
urllib as the client.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.node import Node
from odradek.protocols import connections
from odradek.protocols.bounded_http import serving_authentication
from odradek.protocols.metrics import Metrics
from odradek.protocols.registry import start_registry_listener
from odradek.security import Authenticator, CredentialStore


class Doors:
    def __init__(self, directory: Path) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        self.store = CredentialStore.open(str(directory / "data"))
        self.store.add_user("alice", "alice-secret")
        self.token, self.entry = self.store.create_token("alice")
        with serving_authentication(Authenticator(self.store)):
            self.registry = start_registry_listener(self.node.engine, self.node.engine.path, "127.0.0.1", 0)
            self.metrics = Metrics(self.node).serve("127.0.0.1", 0, connections.METRICS)

    def close(self) -> None:
        self.registry.close()
        self.metrics.close()
        self.node.close()


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    served = Doors(tmp_path)
    yield served
    served.close()


def _get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _urls(doors: Doors) -> list[str]:
    return [
        f"http://127.0.0.1:{doors.registry.port}/subjects",
        f"http://127.0.0.1:{doors.metrics.port}/metrics",
    ]


def test_credentials_are_asked_for_and_accepted(doors: Doors) -> None:
    for url in _urls(doors):
        status, headers, body = _get(url)
        assert status == 401
        assert "Basic" in headers["WWW-Authenticate"] and "Bearer" in headers["WWW-Authenticate"]
        assert json.loads(body)["error_code"] == 40101
        assert _get(url, _basic("alice", "alice-secret"))[0] == 200
        assert _get(url, f"Bearer {doors.token}")[0] == 200


@pytest.mark.parametrize("case", ["password", "unknown-user", "revoked", "garbage"])
def test_bad_credentials_are_refused(doors: Doors, case: str) -> None:
    authorization = {
        "password": _basic("alice", "not-the-Secret-42"),
        "unknown-user": _basic("mallory", "alice-secret"),
        "revoked": f"Bearer {doors.token}",
        "garbage": "Basic !!!",
    }[case]
    if case == "revoked":
        doors.store.revoke_token(doors.entry.id)
    for url in _urls(doors):
        status, _, body = _get(url, authorization)
        assert status == 401
        assert b"Secret" not in body and doors.token.encode() not in body


def test_probes_stay_open(doors: Doors) -> None:
    assert _get(f"http://127.0.0.1:{doors.metrics.port}/healthz")[0] == 200
    assert _get(f"http://127.0.0.1:{doors.metrics.port}/readyz")[0] == 200


def test_a_client_certificate_names_the_principal(tmp_path: Path) -> None:
    """With --tls-ca, a verified client certificate authenticates a request without an
    Authorization header: its CN is the principal."""
    import ssl
    import sys

    from odradek.protocols.bounded_http import serving_tls
    from odradek.protocols.tls import ServerTls, TlsFiles

    sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))
    from etcd_certificates import make_certificates

    files = make_certificates(tmp_path / "certificates")
    tls = ServerTls(TlsFiles(str(files.server_cert), str(files.server_key), str(files.ca)))
    node = Node.open(str(tmp_path / "data"), fsync=False)
    store = CredentialStore.open(str(tmp_path / "data"))
    with serving_tls(tls.context), serving_authentication(Authenticator(store, mtls=True)):
        registry = start_registry_listener(node.engine, node.engine.path, "127.0.0.1", 0)
    try:
        context = ssl.create_default_context(cafile=str(files.ca))
        context.load_cert_chain(str(files.client_cert), str(files.client_key))
        url = f"https://localhost:{registry.port}/subjects"
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            assert response.status == 200
    finally:
        registry.close()
        node.close()
