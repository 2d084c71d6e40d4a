"""protocols/tls.py: the client's TLS settings and the server's reload, without a server.

Goal: a client's TLS files are refused clearly when they cannot work (given for a
plain URL, a certificate without its key, a key of another certificate); a grpc+tls://
client without files takes them from ODRADEK_TLS_*; the server's front context hands
each new handshake the certificate loaded last, and a reload from a bad file keeps the
old one. Method: certificates made with `cryptography` (the cluster tests' generator),
TLS handshakes in memory (ssl.MemoryBIO) against the server's front context.
"""

from __future__ import annotations

import shutil
import ssl
import sys
from pathlib import Path

import pytest

from odradek.errors import InvalidRequest
from odradek.protocols.tls import ServerTls, TlsFiles, client_tls, peer_subject

sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))  # the certificate generator

from etcd_certificates import Certificates, make_certificates


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("first"))


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("second"))


def _served_serial(server: ServerTls, ca: Path) -> str:
    """The serial number a new handshake with ``server``'s front context is shown."""
    client_context = ssl.create_default_context(cafile=str(ca))
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    accepted = server.context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (client, accepted):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        try:
            client.do_handshake()
            certificate = client.getpeercert()
            assert certificate is not None
            return str(certificate["serialNumber"])
        except ssl.SSLWantReadError:
            continue
    raise AssertionError("the handshake did not finish")


def _serial_of(certificate: Path) -> str:
    return str(ssl._ssl._test_decode_cert(str(certificate))["serialNumber"])  # type: ignore[attr-defined]


def test_a_reload_changes_new_handshakes_and_a_bad_file_keeps_the_old(
    tmp_path: Path, first: Certificates, second: Certificates
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(first.server_cert, cert)
    shutil.copy(first.server_key, key)
    server = ServerTls(TlsFiles(str(cert), str(key)))
    assert _served_serial(server, first.ca) == _serial_of(first.server_cert)
    shutil.copy(second.server_cert, cert)
    shutil.copy(second.server_key, key)
    assert server.reload()
    assert _served_serial(server, second.ca) == _serial_of(second.server_cert)
    assert server.started.serial == _serial_of(first.server_cert)  # what Flight keeps
    shutil.copy(first.server_key, key)  # the key of another certificate
    assert not server.reload()
    assert _served_serial(server, second.ca) == _serial_of(second.server_cert)


def test_client_files_that_cannot_work_are_refused(first: Certificates, second: Certificates) -> None:
    with pytest.raises(InvalidRequest, match="TLS needs a grpc\\+tls:// URL"):
        client_tls("grpc://127.0.0.1:8815", ca=str(first.ca))
    with pytest.raises(InvalidRequest, match="tls_cert needs tls_key"):
        client_tls("grpc+tls://127.0.0.1:8815", cert=str(first.client_cert))
    with pytest.raises(InvalidRequest, match="is not the key of tls_cert"):
        client_tls("grpc+tls://h:1", cert=str(first.client_cert), key=str(second.client_key))
    with pytest.raises(InvalidRequest, match="no PEM certificate in it"):
        client_tls("grpc+tls://h:1", ca=str(first.client_key))


def test_a_tls_client_reads_the_environment(first: Certificates) -> None:
    environ = {
        "ODRADEK_TLS_CA": str(first.ca),
        "ODRADEK_TLS_CLIENT_CERT": str(first.client_cert),
        "ODRADEK_TLS_CLIENT_KEY": str(first.client_key),
    }
    tls = client_tls("grpc+tls://h:1", environ=environ)
    assert tls is not None
    assert tls.ca_pem == first.ca.read_bytes()
    assert set(tls.flight_arguments()) == {"tls_root_certs", "cert_chain", "private_key"}
    assert client_tls("grpc://h:1", environ=environ) is None  # a plain URL ignores them


def test_peer_subject_names_a_certificate() -> None:
    certificate = {"subject": ((("organizationName", "shop"),), (("commonName", "billing"),))}
    assert peer_subject(certificate) == "O=shop,CN=billing"
    assert peer_subject(None) is None
    assert peer_subject({}) is None
