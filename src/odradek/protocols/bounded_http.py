"""A threading HTTP/1.1 server whose connections cost a bounded amount.

The Schema Registry door and the metrics endpoint are ``http.server`` shells, one
thread per connection. This module bounds what a peer can make them hold:

* connections (threads) at once, in total and per peer address
  (:class:`~odradek.protocols.connections.ConnectionSlots`); one over a cap is answered
  ``503 Service Unavailable`` and closed on the accepting thread, without a thread;
* a connection silent for ``idle_seconds`` (between requests, or in the middle of one)
  is closed;
* a request's head and body must arrive within ``request_seconds`` of its first byte,
  however slowly its bytes trickle in (a slow-loris client sending one byte at a time
  is dropped at that deadline);
* :meth:`BoundedHTTPServer.close_connections` wakes every connection thread, idle
  keep-alive ones included, so that a stop does not wait for peers.

The deadline is enforced below the buffered reader (:class:`_DeadlineSocketReader`):
every ``recv`` gets the time left as its socket timeout, so no sequence of small reads
can outlast it.

HTTPS: a server made inside :func:`serving_tls` serves TLS with that server context
from its first connection. The handshake runs on the connection's own thread (never the
accepting one), within ``limits.tls_handshake_seconds_max``; a connection over a cap is
closed without an answer (a plaintext 503 means nothing to a TLS client). The handler's
:attr:`BoundedRequestHandler.peer_subject` names the verified client certificate.

Authentication: a server made inside :func:`serving_authentication` asks every request
(except ``/healthz`` and ``/readyz``, which probes reach without credentials) for an
``Authorization: Basic`` or ``Bearer`` header (with ``--tls-ca``, a verified client
certificate's CN names the principal instead); a request without acceptable
credentials is answered ``401 Unauthorized`` with ``WWW-Authenticate`` before its
handler runs, and the connection is closed. The handler's
:attr:`BoundedRequestHandler.principal` names who made the request.

Quotas: a server made inside :func:`serving_quotas` counts every request but the probes
toward its principal's ``request_rate`` (security/quotas.py); one over it is answered
``429 Too Many Requests`` with ``Retry-After`` (whole seconds) before its handler runs,
and the connection is closed.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import math
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from odradek import limits
from odradek.protocols.connections import ConnectionSlots, DoorLimits, peer_host
from odradek.protocols.tls import peer_subject
from odradek.security.principal import ANONYMOUS, Principal

if TYPE_CHECKING:
    from odradek.security.authenticator import Authenticator
    from odradek.security.quotas import Metering, QuotaManager

log = logging.getLogger("odradek.http")

# The TLS server context of the servers made now (None: plaintext); see serving_tls.
_TLS_FOR_NEW_SERVERS: contextvars.ContextVar[ssl.SSLContext | None] = contextvars.ContextVar(
    "odradek_http_tls", default=None
)


# The authenticator of the servers made now (None: no authentication); see
# serving_authentication.
_AUTHENTICATION_FOR_NEW_SERVERS: contextvars.ContextVar[Authenticator | None] = contextvars.ContextVar(
    "odradek_http_authentication", default=None
)
# The client quotas of the servers made now (None: none); see serving_quotas.
_QUOTAS_FOR_NEW_SERVERS: contextvars.ContextVar[QuotaManager | None] = contextvars.ContextVar(
    "odradek_http_quotas", default=None
)
# The per-principal metering of the servers made now (None: none); see serving_quotas.
_METERING_FOR_NEW_SERVERS: contextvars.ContextVar[Metering | None] = contextvars.ContextVar(
    "odradek_http_metering", default=None
)
# Paths answered without credentials: liveness and readiness probes.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@contextlib.contextmanager
def serving_authentication(authenticator: Authenticator | None) -> Iterator[None]:
    """Servers made inside authenticate every request but the probes (see the module
    docstring) with ``authenticator`` (None: no authentication)."""
    token = _AUTHENTICATION_FOR_NEW_SERVERS.set(authenticator)
    try:
        yield
    finally:
        _AUTHENTICATION_FOR_NEW_SERVERS.reset(token)


@contextlib.contextmanager
def serving_quotas(quotas: QuotaManager | None, metering: Metering | None = None) -> Iterator[None]:
    """Servers made inside answer a request over its principal's request rate with 429
    (see the module docstring); None: no quotas. ``metering``: where a server that moves
    records (the HTTP API) counts each principal's bytes and records for /metrics."""
    token = _QUOTAS_FOR_NEW_SERVERS.set(quotas)
    metered = _METERING_FOR_NEW_SERVERS.set(metering)
    try:
        yield
    finally:
        _METERING_FOR_NEW_SERVERS.reset(metered)
        _QUOTAS_FOR_NEW_SERVERS.reset(token)


@contextlib.contextmanager
def serving_tls(context: ssl.SSLContext | None) -> Iterator[None]:
    """Servers made inside serve HTTPS with ``context`` (None: plaintext) from their
    first connection (the doors that make them need not know)."""
    token = _TLS_FOR_NEW_SERVERS.set(context)
    try:
        yield
    finally:
        _TLS_FOR_NEW_SERVERS.reset(token)


class RequestTimeout(TimeoutError):
    """A request did not arrive whole in time, or its connection went silent."""


class _DeadlineSocketReader(io.RawIOBase):
    """The reading side of a connection, with an idle timeout between requests and a
    deadline per request (from its first byte)."""

    def __init__(self, connection: socket.socket, bounds: DoorLimits) -> None:
        super().__init__()
        self._connection = connection
        self._bounds = bounds
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._bounds.idle_seconds
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout(
                    f"the request did not arrive whole within {self._bounds.request_seconds:g} s"
                )
            timeout = min(timeout, left)
        self._connection.settimeout(timeout)
        try:
            received = self._connection.recv_into(buffer)
        except TimeoutError:
            if self._deadline is None:
                raise RequestTimeout(f"no request for {self._bounds.idle_seconds:g} s") from None
            raise RequestTimeout(
                f"the request stopped arriving (silent for {timeout:g} s, at most "
                f"{self._bounds.request_seconds:g} s per request)"
            ) from None
        if received and self._deadline is None:
            self._deadline = time.monotonic() + self._bounds.request_seconds
        return received

    def request_started(self) -> bool:
        return self._deadline is not None

    def seconds_left(self) -> float:
        """Time left to the current request's deadline (the whole request time if none
        has started)."""
        if self._deadline is None:
            return self._bounds.request_seconds
        return max(self._deadline - time.monotonic(), 0.0)

    def request_done(self) -> None:
        """The request was answered: the next one gets a deadline of its own."""
        self._deadline = None


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A keep-alive handler whose reads obey the server's :class:`DoorLimits`."""

    protocol_version = "HTTP/1.1"
    server: BoundedHTTPServer
    #: Who made the current request (ANONYMOUS on a server without authentication).
    principal: Principal = ANONYMOUS

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineSocketReader(self.connection, self.server.bounds)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        super().handle_one_request()
        self._reader.request_done()

    def parse_request(self) -> bool:
        """The request line and headers, then its credentials (a 401 and False when it
        has none the server accepts: the method's handler never runs)."""
        if not super().parse_request():
            return False
        authenticator = self.server.authenticator
        self.principal = ANONYMOUS
        # A bearer token and its expiry, for a long-lived answer (an event stream) to
        # check again (security/revalidation.py).
        self.credential: tuple[str | None, float | None] = (None, None)
        if self.path.split("?", 1)[0] in OPEN_PATHS:
            return True
        if authenticator is None:
            return self._within_quota()
        from odradek.errors import Unauthenticated
        from odradek.security.http import CHALLENGE, authenticate_header, bearer_token
        from odradek.security.tenants import names_tenant_space, not_served

        header = self.headers.get("Authorization")
        certified = authenticator.certificate(self.peer_subject) if header is None else None
        try:
            if certified is not None:
                self.principal = certified
            else:
                authenticated = authenticate_header(authenticator, header)
                self.principal = authenticated.principal
                self.credential = (bearer_token(header), authenticated.expires)
            refused = (
                None if self.serves_tenants() else not_served(self.principal, f"{self.server.door} door")
            )
            if refused is not None:  # decision 0028: never into the default namespace
                self.principal = ANONYMOUS
                raise Unauthenticated(refused)
        except Unauthenticated as exc:
            log.info(
                "%s request refused: %s",
                self.server.door,
                exc.message,
                extra={"fields": {"door": self.server.door, "peer": peer_host(self.client_address)}},
            )
            body = self.unauthenticated_body(exc.message)
            self.close_connection = True
            self.send_response(401, "Unauthorized")
            self.send_header("WWW-Authenticate", CHALLENGE)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            return False
        if not self.principal.admin and names_tenant_space(self.path):  # decision 0028
            message = (
                f"{self.principal} may not name the tenants' space ('_t.'): the "
                f"{self.server.door} door serves the default namespace"
            )
            body = self.forbidden_body(message)
            self.close_connection = True
            self.send_response(403, "Forbidden")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            return False
        return self._within_quota()

    def _within_quota(self) -> bool:
        """Count the request toward its principal's request rate; over it, answer 429
        with Retry-After and False (the handler never runs)."""
        quotas = self.server.quotas
        if quotas is None:
            return True
        wait = quotas.throttle(self.principal.name, None, tenant=self.principal.tenant)
        if wait <= 0:
            return True
        body = (json.dumps({"error_code": 42901, "message": "request rate quota exceeded"}) + "\n").encode()
        self.close_connection = True  # its body, if any, is left unread
        self.send_response(429, "Too Many Requests")
        self.send_header("Retry-After", str(max(1, math.ceil(wait))))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return False

    def unauthenticated_body(self, message: str) -> bytes:
        """The JSON body of a 401 (Confluent's error shape; a door may answer in its own)."""
        return (json.dumps({"error_code": 40101, "message": message}) + "\n").encode()

    def serves_tenants(self) -> bool:
        """Whether this request's door serves a tenant's principals (decision 0028); those
        that do not refuse them at authentication."""
        return False

    def forbidden_body(self, message: str) -> bytes:
        """The JSON body of a 403 (Confluent's error shape; a door may answer in its own)."""
        return (json.dumps({"error_code": 40301, "message": message}) + "\n").encode()

    def seconds_left(self) -> float:
        """Time left for the current request to arrive whole."""
        return self._reader.seconds_left()

    @property
    def peer_subject(self) -> str | None:
        """The subject of the client's verified certificate (HTTPS with client
        certificates); None otherwise."""
        getpeercert = getattr(self.connection, "getpeercert", None)
        return peer_subject(getpeercert()) if getpeercert is not None else None

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
        if args and isinstance(args[-1], RequestTimeout):
            peer = peer_host(self.client_address)
            if self._reader.request_started():
                log.info(
                    "%s connection from %s dropped: %s",
                    self.server.door,
                    peer,
                    args[-1],
                    extra={"fields": {"door": self.server.door, "peer": peer}},
                )
            else:
                log.debug("%s connection from %s closed: %s", self.server.door, peer, args[-1])
            return
        self.log_message(format, *args)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
        log.debug(f"{self.server.door} " + format, *args)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` holding at most ``bounds`` connections (threads)."""

    daemon_threads = True
    block_on_close = False
    # The listen backlog (socketserver's default is 5): a burst of connections waits in
    # the kernel to be accepted (and refused at once if over a cap) instead of having
    # its handshakes dropped and retried seconds later.
    request_queue_size = 128

    def __init__(
        self, door: str, host: str, port: int, handler: type[BoundedRequestHandler], bounds: DoorLimits
    ) -> None:
        self.door = door
        self.bounds = bounds
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.slots = ConnectionSlots.of(door, bounds)
        self.tls = _TLS_FOR_NEW_SERVERS.get()
        self.authenticator = _AUTHENTICATION_FOR_NEW_SERVERS.get()
        self.quotas = _QUOTAS_FOR_NEW_SERVERS.get()
        self.metering = _METERING_FOR_NEW_SERVERS.get()
        self._open: dict[socket.socket, str] = {}
        self._open_lock = threading.Lock()
        super().__init__((host, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn) for a name nothing here uses.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def refusal(self, reason: str) -> bytes:
        """The whole 503 response sent to a connection over a cap."""
        body = (reason + "\n").encode()
        return _response_head(503, "text/plain; charset=utf-8", len(body)) + body

    def process_request(self, request: Any, client_address: Any) -> None:
        peer = peer_host(client_address)
        refused = self.slots.acquire(peer)
        if refused is not None:
            try:  # a small answer into a fresh socket's empty send buffer never blocks
                if self.tls is None:
                    request.send(self.refusal(refused), socket.MSG_DONTWAIT)
            except OSError:
                pass  # the peer is gone, or its buffer is full: closing says enough
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open[request] = peer
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back here
            self._forget(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request = self._handshake(request, self.tls, client_address)
                if request is None:
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _handshake(
        self, request: socket.socket, context: ssl.SSLContext, client_address: Any
    ) -> ssl.SSLSocket | None:
        """The TLS side of ``request`` once its handshake ended (None: it failed or took
        longer than ``limits.tls_handshake_seconds_max``; the connection is closed)."""
        with self._open_lock:  # close_connections reaches the socket that is in use
            peer = self._open.pop(request, None)
            wrapped = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            if peer is not None:
                self._open[wrapped] = peer
        try:
            wrapped.settimeout(limits.tls_handshake_seconds_max)
            wrapped.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
            log.debug("%s TLS handshake with %s failed: %s", self.door, peer_host(client_address), exc)
            self._forget(wrapped)
            self.shutdown_request(wrapped)
            return None
        return wrapped

    def _forget(self, request: socket.socket) -> None:
        with self._open_lock:
            peer = self._open.pop(request, None)
        if peer is not None:
            self.slots.release(peer)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s connection from %s failed", self.door, client_address, exc_info=True)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alive ones included) so it ends."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer


def _response_head(status: int, content_type: str, length: int) -> bytes:
    reason = {503: "Service Unavailable"}.get(status, "Error")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    ).encode()


class BoundedHTTPListener:
    """A :class:`BoundedHTTPServer` serving on its own daemon thread; ``close()`` stops it."""

    def __init__(self, server: BoundedHTTPServer, poll_interval_seconds: float = 0.2) -> None:
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": poll_interval_seconds},
            name=f"odradek-{server.door}",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> BoundedHTTPListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
