"""The Schema Registry door's HTTP shell: bytes in, :class:`Registry` answers out.

A bounded ``ThreadingHTTPServer`` (protocols/bounded_http.py) on a daemon thread, one
thread per connection, HTTP/1.1 keep-alive (Confluent's client reuses its
connections). Everything the API means is in ``routes.py``; this module only bounds
what a connection may cost: the body size (reserved in the server's in-flight byte
budget before it is read), the number of connections in total and per peer address
(503 beyond), and how long an idle connection or a half-sent request (however slowly
it trickles) may hold a thread.
"""

from __future__ import annotations

import logging
import urllib.parse

from odradek import limits
from odradek.budget import ByteBudget
from odradek.errors import OdradekError, RequestTooLarge
from odradek.protocols import connections
from odradek.protocols.bounded_http import BoundedHTTPListener, BoundedHTTPServer, BoundedRequestHandler
from odradek.protocols.registry.routes import Registry, Request, Response

log = logging.getLogger("odradek.registry")

# A larger declared body is refused before any of it is read (odradek.limits says why).
request_body_bytes_max = limits.registry_request_body_bytes_max

# The defaults of the door's bounds (see odradek.limits): a connection silent this long
# is closed; connections beyond this many are answered 503 on accept. Read when a
# listener is made, so a test may patch them.
connection_idle_seconds_max = limits.registry_idle_seconds_default
connections_max = limits.registry_connections_max_default

# How often the serving loop looks for a stop request.
poll_interval_seconds = 0.2


class _RegistryHTTPServer(BoundedHTTPServer):
    def __init__(
        self, registry: Registry, host: str, port: int, bounds: connections.DoorLimits, budget: ByteBudget
    ) -> None:
        self.registry = registry
        self.budget = budget
        super().__init__("registry", host, port, _RegistryHandler, bounds)

    def refusal(self, reason: str) -> bytes:
        response = Response.error(503, 50302, reason)
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + response.body


class _RegistryHandler(BoundedRequestHandler):
    server_version = "odradek-registry"
    # The idle timeout of listeners made from now on (the door's bounds take it).
    timeout = connection_idle_seconds_max
    server: _RegistryHTTPServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding") is not None:
            self._send(Response.error(411, 411, "A request body needs a Content-Length"), close=True)
            return
        declared = self.headers.get("Content-Length", "0").strip() or "0"
        if not declared.isdigit():
            self._send(Response.error(400, 400, f"Invalid Content-Length {declared!r}"), close=True)
            return
        length = int(declared)
        if length > request_body_bytes_max:
            message = f"The request body is {length} bytes; at most {request_body_bytes_max} are accepted"
            self._send(Response.error(413, 413, message), close=True)
            return
        try:
            reservation = self.server.budget.reserve(length, self.seconds_left())
        except RequestTooLarge as exc:
            self._send(Response.error(413, 413, exc.message), close=True)
            return
        except OdradekError as exc:  # no room in the budget came free in time
            self._send(Response.error(503, 50302, exc.message), close=True)
            return
        with reservation:  # the body's bytes are held until it is answered
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                self.close_connection = True  # the peer went away mid-body
                return
            target = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True))
            response = self.server.registry.handle(Request(self.command, target.path, query, body))
        self._send(response)

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, oversized headers) in Confluent's error shape."""
        self.close_connection = True
        self.request_version = self.protocol_version  # a status line even when the request had none
        try:
            self._send(
                Response.error(code, code, message or self.responses.get(code, ("error",))[0]), close=True
            )
        except OSError:
            pass  # the peer is gone


class RegistryListener(BoundedHTTPListener):
    """A running registry door; ``close()`` stops it (also a context manager).

    ``bounds`` default to the registry's (odradek.limits, or this module's patched
    values); ``budget`` is the server's in-flight byte budget (a private one of the
    default size when None).
    """

    def __init__(
        self,
        registry: Registry,
        host: str,
        port: int,
        *,
        bounds: connections.DoorLimits | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        if bounds is None:
            bounds = connections.REGISTRY.replace(
                connections_max=connections_max, idle_seconds=_RegistryHandler.timeout
            )
        if budget is None:
            budget = ByteBudget(limits.inflight_bytes_max_default)
        super().__init__(_RegistryHTTPServer(registry, host, port, bounds, budget), poll_interval_seconds)

    @property
    def url(self) -> str:
        """The base URL to give Schema Registry clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> RegistryListener:
        return self
