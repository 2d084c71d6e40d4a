"""The Schema Registry door's HTTP shell: bytes in, :class:`Registry` answers out.

A ``ThreadingHTTPServer`` on a daemon thread, one thread per connection, HTTP/1.1
keep-alive (Confluent's client reuses its connections). Everything the API means is in
``routes.py``; this module only bounds what a connection may cost: the body size, the
number of connections, and how long an idle or half-sent request may hold a thread.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from odradek.protocols.registry.routes import Registry, Request, Response

log = logging.getLogger("odradek.registry")

# A request body is a schema and a few fields. A schema is at most 1 MiB
# (odradek.schemas.model.schema_bytes_max); as a JSON string inside the body its quotes
# and backslashes are escaped, which at worst doubles it, so 4 MiB leaves room for that
# and the envelope. A larger declared body is refused before any of it is read.
request_body_bytes_max = 4 * 1024 * 1024

# A keep-alive connection with no request, or a request whose body stops arriving, is
# closed after this long: each holds a thread. Confluent's client opens a handful of
# connections per process and sends its next request at once.
connection_idle_seconds_max = 30.0

# Connections served at once (a thread each); more are closed on accept. Far above the
# few a client process keeps, low enough that a flood cannot exhaust threads.
connections_max = 256

# How often the serving loop looks for a stop request.
poll_interval_seconds = 0.2


class _RegistryHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        self.registry = registry
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._slots = threading.BoundedSemaphore(connections_max)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), _RegistryHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn) for a name nothing here uses.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "registry connection refused: too many open",
                extra={"fields": {"connections_max": connections_max}},
            )
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alive ones included) so it ends."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its peer


class _RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "odradek-registry"
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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
        log.debug("registry " + format, *args)


class RegistryListener:
    """A running registry door; ``close()`` stops it (also a context manager)."""

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        self._server = _RegistryHTTPServer(registry, host, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": poll_interval_seconds},
            name="odradek-registry",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give Schema Registry clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RegistryListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
