"""TLS for the doors of ``odradek serve`` and for the native client (docs/security.md).

Theory of operation
-------------------
* ``--tls-cert``/``--tls-key`` (and ``--tls-ca`` for client certificates) are read and
  checked once at start (:class:`ServerTls`): a file that cannot be read, is not PEM, or
  a key that is not the certificate's is refused with InvalidRequest before any door
  opens.
* The Kafka door (asyncio) and the HTTP doors (registry, metrics) share one *front*
  ``ssl.SSLContext``. Its SNI callback, which OpenSSL calls on every handshake (with or
  without a server name), hands the connection the context of the certificate loaded
  last. A reload (SIGHUP) loads the files into a new context and swaps one reference:
  handshakes from then on use the new certificate, connections already open keep the
  one they agreed on, nothing is restarted. A file that fails to load keeps the old
  certificate (the error is logged).
* The Flight door is gRPC inside pyarrow, which takes the PEM once when the server is
  made and offers no way to change it (Arrow's C++ server has no certificate provider
  hook). A reload therefore leaves the Flight door on the certificate it started with
  and says so in the log; a restart picks the new one up.
* With ``--tls-ca`` every door asks for a client certificate and refuses a handshake
  without one signed by that CA (mTLS). The verified peer's subject is there for a door
  to name (:func:`peer_subject`; the HTTP doors' handlers expose it).

The file helpers (:func:`read_pem_file`, :func:`load_key_pair`) are shared with the
etcd client (cluster/etcd_client.py), which reads its TLS files the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import threading
from collections.abc import Mapping
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest

log = logging.getLogger("odradek.tls")

# The environment of a client (odradek.connect, the command line) for grpc+tls:// URLs.
CLIENT_CA_VARIABLE = "ODRADEK_TLS_CA"
CLIENT_CERT_VARIABLE = "ODRADEK_TLS_CLIENT_CERT"
CLIENT_KEY_VARIABLE = "ODRADEK_TLS_CLIENT_KEY"
TLS_SCHEME = "grpc+tls://"


# -- files ------------------------------------------------------------------------------------


def read_pem_file(path: str, flag: str, size_max: int = limits.tls_file_bytes_max) -> bytes:
    """The bytes of ``path`` (given as ``flag``), refused if unreadable, empty or larger
    than ``size_max``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(size_max + 1)
    except OSError as exc:
        raise InvalidRequest(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from exc
    if len(data) > size_max:
        raise InvalidRequest(f"{flag} {path}: larger than {size_max} bytes, not a PEM file of certificates")
    if not data:
        raise InvalidRequest(f"{flag} {path}: the file is empty")
    return data


def load_key_pair(
    context: ssl.SSLContext, cert: str, key: str, *, cert_flag: str, key_flag: str, user: str
) -> None:
    """Load the certificate chain ``cert`` and its key ``key`` into ``context``; refuse
    an encrypted key (``user`` needs it unencrypted), a key of another certificate, or
    files that are not PEM."""

    def encrypted() -> str:
        raise InvalidRequest(f"{key_flag} {key}: the key is encrypted; {user} needs it unencrypted")

    try:
        context.load_cert_chain(cert, key, password=encrypted)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise InvalidRequest(f"{key_flag} {key} is not the key of {cert_flag} {cert}") from exc
        raise InvalidRequest(
            f"{cert_flag} {cert} / {key_flag} {key}: not a PEM certificate and its PEM private key ({exc})"
        ) from exc
    except OSError as exc:
        raise InvalidRequest(f"{cert_flag} {cert} / {key_flag} {key}: cannot read them ({exc})") from exc


def _load_ca(context: ssl.SSLContext, ca_pem: bytes, flag: str, path: str) -> None:
    try:
        context.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidRequest(f"{flag} {path}: no PEM certificate in it ({exc})") from exc


def peer_subject(certificate: Mapping[str, Any] | None) -> str | None:
    """A verified peer certificate's subject (``getpeercert()``) as ``CN=a,O=b``; None
    without one (no client certificate was asked for, or none was given)."""
    if not certificate:
        return None
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}
    parts = [
        f"{names.get(name, name)}={value}"
        for relative in certificate.get("subject", ())
        for name, value in relative
    ]
    return ",".join(parts) or None


# -- the server -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """``--tls-cert``, ``--tls-key`` and ``--tls-ca`` (None: no client certificates)."""

    cert: str
    key: str
    ca: str | None = None

    @classmethod
    def of(cls, cert: str | None, key: str | None, ca: str | None) -> TlsFiles | None:
        """The files given (None: no TLS); refuses one of cert/key without the other,
        and a CA without them (no file is read here)."""
        if (cert is None) != (key is None):
            given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
            raise InvalidRequest(f"{given} needs {missing}: a certificate and its key go together")
        if cert is None or key is None:
            if ca is not None:
                raise InvalidRequest(
                    "--tls-ca checks client certificates of a TLS server: give --tls-cert and --tls-key too"
                )
            return None
        return cls(cert, key, ca)


@dataclasses.dataclass(frozen=True)
class LoadedCertificate:
    """The files as read at one moment, and the server context made of them."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None
    context: ssl.SSLContext
    subject: str
    serial: str
    not_after: str


def _describe(path: str) -> tuple[str, str, str]:
    """Subject, serial number and expiry of the first certificate in ``path``."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]  # what getpeercert returns
    except (ssl.SSLError, OSError, ValueError, AttributeError):
        return "?", "?", "?"
    subject = peer_subject(decoded) or "?"
    return subject, str(decoded.get("serialNumber", "?")), str(decoded.get("notAfter", "?"))


def load_certificate(files: TlsFiles) -> LoadedCertificate:
    """Read and check ``files``: a server context ready for handshakes (client
    certificates required with a CA), and the PEM for the Flight door."""
    cert_pem = read_pem_file(files.cert, "--tls-cert")
    key_pem = read_pem_file(files.key, "--tls-key")
    ca_pem = read_pem_file(files.ca, "--tls-ca") if files.ca is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_key_pair(context, files.cert, files.key, cert_flag="--tls-cert", key_flag="--tls-key", user="gRPC")
    if ca_pem is not None and files.ca is not None:
        _load_ca(context, ca_pem, "--tls-ca", files.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    subject, serial, not_after = _describe(files.cert)
    return LoadedCertificate(cert_pem, key_pem, ca_pem, context, subject, serial, not_after)


class ServerTls:
    """The TLS of every door of one server (see the module docstring)."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._reload_lock = threading.Lock()
        self.current = load_certificate(files)
        self.started = self.current  # what the Flight door serves until a restart
        self.reloads = 0
        front = load_certificate(files).context
        front.sni_callback = self._choose_context
        self.context = front

    @property
    def mutual(self) -> bool:
        """Client certificates are required (``--tls-ca``)."""
        return self.files.ca is not None

    def _choose_context(self, connection: Any, _server_name: str | None, _context: ssl.SSLContext) -> None:
        connection.context = self.current.context  # one reference: the newest certificate

    def flight_arguments(self) -> dict[str, Any]:
        """Keyword arguments of pyarrow's FlightServerBase for this TLS."""
        import pyarrow.flight as flight

        arguments: dict[str, Any] = {
            "tls_certificates": [flight.CertKeyPair(self.started.cert_pem, self.started.key_pem)]
        }
        if self.started.ca_pem is not None:
            arguments["verify_client"] = True
            arguments["root_certificates"] = self.started.ca_pem
        return arguments

    def agent_client_context(self) -> ssl.SSLContext:
        """A client context for this server to reach another server of its cluster (a
        standby's Kafka relay reaching the owner): it trusts ``--tls-ca`` (else the
        system's CAs) and presents this server's certificate, as mTLS asks."""
        current = self.current
        if current.ca_pem is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cadata=current.ca_pem.decode("ascii", "replace"))
        else:
            context = ssl.create_default_context()
        context.load_cert_chain(self.files.cert, self.files.key)
        return context

    def describe(self) -> dict[str, Any]:
        """The certificate served, for the log."""
        return {
            "tls_subject": self.current.subject,
            "tls_serial": self.current.serial,
            "tls_expires": self.current.not_after,
            "mtls": self.mutual,
        }

    def reload(self) -> bool:
        """Load the files again (SIGHUP). New handshakes of the Kafka and HTTP doors use
        them; a file that fails to load keeps the certificate served (False)."""
        with self._reload_lock:
            try:
                loaded = load_certificate(self.files)
            except InvalidRequest as exc:
                log.error(
                    "TLS reload refused; the doors keep the certificate they serve",
                    extra={"fields": {"error": exc.message, **self.describe()}},
                )
                return False
            self.current = loaded
            self.reloads += 1
        log.info("TLS certificate reloaded for the Kafka and HTTP doors", extra={"fields": self.describe()})
        if loaded.cert_pem != self.started.cert_pem or loaded.ca_pem != self.started.ca_pem:
            log.warning(
                "the Flight door keeps the certificate it started with until the server restarts "
                "(pyarrow's gRPC server cannot change it)",
                extra={"fields": {"tls_serial": self.started.serial, "tls_expires": self.started.not_after}},
            )
        return True


# -- the client -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClientTls:
    """What a native client presents and trusts over ``grpc+tls://`` (PEM, read once)."""

    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def flight_arguments(self) -> dict[str, Any]:
        """Keyword arguments of pyarrow's FlightClient."""
        arguments: dict[str, Any] = {}
        if self.ca_pem is not None:
            arguments["tls_root_certs"] = self.ca_pem
        if self.cert_pem is not None and self.key_pem is not None:
            arguments["cert_chain"] = self.cert_pem
            arguments["private_key"] = self.key_pem
        return arguments


def client_tls(
    url: str,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientTls | None:
    """The client's TLS files for ``url``, read and checked. Files not given come from
    ``ODRADEK_TLS_CA``, ``ODRADEK_TLS_CLIENT_CERT`` and ``ODRADEK_TLS_CLIENT_KEY`` when
    the URL is ``grpc+tls://``; None for a plain URL (files given for one are refused)."""
    given = {name: value for name, value in (("tls_ca", ca), ("tls_cert", cert), ("tls_key", key)) if value}
    if not url.startswith(TLS_SCHEME):
        if given:
            raise InvalidRequest(f"{', '.join(sorted(given))} given for {url}: TLS needs a {TLS_SCHEME} URL")
        return None
    environment = os.environ if environ is None else environ
    if not given:  # the files given replace the environment's, all of them
        ca = environment.get(CLIENT_CA_VARIABLE) or None
        cert = environment.get(CLIENT_CERT_VARIABLE) or None
        key = environment.get(CLIENT_KEY_VARIABLE) or None
    if (cert is None) != (key is None):
        given_name, missing = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        raise InvalidRequest(f"{given_name} needs {missing}: a client certificate and its key go together")
    ca_pem = read_pem_file(ca, "tls_ca") if ca is not None else None
    if ca_pem is not None and ca is not None:
        _load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), ca_pem, "tls_ca", ca)
    cert_pem = key_pem = None
    if cert is not None and key is not None:
        cert_pem = read_pem_file(cert, "tls_cert")
        key_pem = read_pem_file(key, "tls_key")
        load_key_pair(
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
            cert,
            key,
            cert_flag="tls_cert",
            key_flag="tls_key",
            user="gRPC",
        )
    return ClientTls(ca_pem, cert_pem, key_pem)
