"""The Schema Registry door's HTTP shell: bytes in, :class:`Registry` answers out.

A bounded ``ThreadingHTTPServer`` (protocols/bounded_http.py) on a daemon thread, one
thread per connection, HTTP/1.1 keep-alive (Confluent's client reuses its
connections). Everything the API means is in ``routes.py``; this module only bounds
what a connection may cost: the body size (reserved in the server's in-flight byte
budget before it is read), the number of connections in total and per peer address
(503 beyond), and how long an idle connection or a half-sent request (however slowly
it trickles) may hold a thread.

The HTTP API (protocols/http_api, decision 0022) is mounted on the same listener:
``/openapi.json`` and ``/v1/`` paths other than the registry's view keys go to it, with
its own body bound, error shape and Server-Sent Event streams (written here chunk by
chunk, each write bounded by ``limits.http_sse_write_seconds_max``). So is the web
console (odradek/console, decision 0025): its built assets at ``/ui`` and its endpoints
under ``/v1/console/``. With several cells (decisions 0034 and 0036) each served cell
answers with a registry and an API of its own, and a request about another cell is
forwarded to the agent serving it (an event stream relayed chunk by chunk); where each
request goes is decided by registry/cells.py and http_api/cells.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import json
import logging
import math
import select
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable

from odradek import limits
from odradek.budget import ByteBudget
from odradek.console.api import ClusterStatus, ConsoleApi, owns_api
from odradek.console.cells_tail import CellsTail, TailPart
from odradek.console.static import owns_ui, serve_static
from odradek.errors import OdradekError, RequestTooLarge
from odradek.groups.info import GroupInfo, merge_infos
from odradek.names import TENANT_ROOT
from odradek.protocols import connections, observe, request_ids
from odradek.protocols.bounded_http import BoundedHTTPListener, BoundedHTTPServer, BoundedRequestHandler
from odradek.protocols.connections import peer_host
from odradek.protocols.http_api import ApiRequest, ApiResponse, EventStream, HttpApi, owns
from odradek.protocols.http_api import cells as api_cells
from odradek.protocols.http_api.cells_member import MEMBER_HEADER, MemberOverCells
from odradek.protocols.http_api.errors import error_body
from odradek.protocols.http_api.routes import read_from_store
from odradek.protocols.registry import authorization as registry_authorization
from odradek.protocols.registry import tenancy as registry_tenancy
from odradek.protocols.registry.cells import CELL_HEADER, CellRegistries, merge, route
from odradek.protocols.registry.routes import CONTENT_TYPE, Registry, Request, Response
from odradek.protocols.trace import TRACEPARENT, TRACESTATE
from odradek.security.authorizer import authorizer_of
from odradek.security.quotas import FETCH, PRODUCE
from odradek.security.revalidation import StreamGuard
from odradek.security.tenants import RAW, Namespace, namespace_of

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
        self,
        registry: Registry | None,
        host: str,
        port: int,
        bounds: connections.DoorLimits,
        budget: ByteBudget,
        api: HttpApi | None = None,
        cluster_status: ClusterStatus | None = None,
        cells: CellRegistries | None = None,
        forward_tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.registry = registry
        # With several cells (decision 0034): each served cell's registry, and the TLS
        # context to forward with when the door serves TLS (None: plain HTTP).
        self.cells = cells
        self.forward_tls = forward_tls
        self.budget = budget
        self.api = api
        self.console = ConsoleApi(api, cluster_status) if api is not None else None
        super().__init__("registry", host, port, _RegistryHandler, bounds)

    @property
    def serves_api(self) -> bool:
        """Whether the HTTP API is served here (over one node, or over cells)."""
        return self.api is not None or self.cells is not None

    def refusal(self, reason: str) -> bytes:
        response = Response.error(503, 50302, reason)
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + response.body


TRACE_HEADERS = (TRACEPARENT, TRACESTATE)
# What a request forwarded to another cell's agent takes along (decision 0034).
_FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "Last-Event-ID", *TRACE_HEADERS)


class _Declined(Exception):
    """The store cannot answer a read here (RegistryHandler._store_answer): forward it."""


@dataclasses.dataclass(frozen=True)
class _Refused:
    """Why a request cannot be forwarded: its status (503 or 421) and message."""

    status: int
    message: str

    def api_answer(self) -> ApiResponse:
        """The refusal in the HTTP API's error shape."""
        if self.status == 503:
            return _api_unavailable(self.message)
        return ApiResponse(self.status, error_body("misdirected", self.message))


@dataclasses.dataclass(frozen=True)
class _Relay:
    """An event stream of another cell's topic, relayed from the agent serving it."""

    door: tuple[str, int]
    headers: dict[str, str]


class _RegistryHandler(BoundedRequestHandler):
    server_version = "odradek-registry"
    # An answer is written as its head, then its body: with Nagle's algorithm the body
    # waited for the client's delayed ACK of the head, 40 ms a request on Linux.
    disable_nagle_algorithm = True
    # The idle timeout of listeners made from now on (the door's bounds take it).
    timeout = connection_idle_seconds_max
    server: _RegistryHTTPServer
    _body = b""  # the request's body, as read

    def end_headers(self) -> None:
        request_id = request_ids.current.get()
        if request_id is not None:
            self.send_header("X-Request-Id", request_id)
        super().end_headers()

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

    def do_TRACE(self) -> None:  # answered 405 by the routes, not 501 by http.server
        self._serve()

    def _serve(self) -> None:
        # The request's id in the logs (and echoed in the answer): the client's, or ours.
        request_ids.current.set(request_ids.given_or_fresh(self.headers.get("X-Request-Id")))
        target = urllib.parse.urlsplit(self.path)
        console = owns_ui(target.path) or owns_api(target.path)
        api = self.server.api if self.server.api is not None and (owns(target.path) or console) else None
        # With several cells (decision 0036): the API of the cell the request concerns.
        cells_api = self.server.cells is not None and (owns(target.path) or console)
        refuse = self._refuse if api is None and not cells_api else self._refuse_api
        if self.headers.get("Transfer-Encoding") is not None:
            refuse(411, 411, "A request body needs a Content-Length")
            return
        declared = self.headers.get("Content-Length", "0").strip() or "0"
        if not declared.isdigit():
            refuse(400, 400, f"Invalid Content-Length {declared!r}")
            return
        length = int(declared)
        body_max = (
            request_body_bytes_max if api is None and not cells_api else limits.http_request_body_bytes_max
        )
        if length > body_max:
            refuse(413, 413, f"The request body is {length} bytes; at most {body_max} are accepted")
            return
        try:
            reservation = self.server.budget.reserve(length, self.seconds_left())
        except RequestTooLarge as exc:
            refuse(413, 413, exc.message)
            return
        except OdradekError as exc:  # no room in the budget came free in time
            refuse(503, 50302, exc.message)
            return
        with reservation:  # the body's bytes are held until it is answered
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                self.close_connection = True  # the peer went away mid-body
                return
            query = dict(urllib.parse.parse_qsl(target.query, keep_blank_values=True))
            answer: ApiResponse | EventStream | Response | _Relay | CellsTail
            if cells_api:
                answer = self._cells_api_answer(target.path, query, body)
            elif api is not None and owns_ui(target.path):
                answer = serve_static(self.command, target.path)
            elif api is not None and owns_api(target.path) and self.server.console is not None:
                answer = self._metered_answer(self.server.console.handle, target.path, query, body)
            elif api is not None:
                answer = self._metered_answer(api.handle, target.path, query, body)
            else:
                started = time.perf_counter()
                self._body = body  # what a forward sends on
                answer = self._registry_answer(Request(self.command, target.path, query, body))
                outcome = "ok" if answer.status < 400 else str(answer.status)
                observe.request("registry", self.command.lower(), outcome, time.perf_counter() - started)
        if isinstance(answer, EventStream | CellsTail):
            self._stream(answer)
        elif isinstance(answer, _Relay):
            self._relay(answer)
        elif isinstance(answer, ApiResponse):
            self._send_api(answer)
        else:
            self._send(answer)

    def _registry_answer(self, request: Request) -> Response:
        """The answer of the registry the request concerns: this door's, or with several
        cells (decision 0034) the registry of the cell it concerns, here or forwarded to
        the agent serving that cell (registry/cells.py)."""
        cells = self.server.cells
        if cells is None:
            assert self.server.registry is not None
            return self._answer_with(self.server.registry, request)
        given = self.headers.get(CELL_HEADER)
        if given is not None:  # forwarded by another agent for one of this agent's cells
            registry = cells.local(given)
            if registry is None:
                return _unavailable(f"this agent does not serve cell {given!r} now (it changed hands); retry")
            return self._answer_with(registry, request)
        try:
            prefix = self._namespace().prefix
        except OdradekError:
            prefix = ""  # a principal of a tenant that does not exist: refused as it is answered
        where = route(request.method, request.path, prefix)
        try:
            targets = cells.targets(where)
        except OdradekError as exc:  # etcd out of reach: where a topic is is not known
            return _unavailable(exc.message)
        answers = []
        for cell in targets:
            local = cells.local(cell)
            answer = self._answer_with(local, request) if local is not None else self._forward(cell)
            answers.append(answer)
            if answer.status >= 400:
                break  # the first refusal is the answer
        return merge(where, answers)

    def _forward(self, cell: str) -> Response:
        """This request's answer from the agent serving ``cell``: the request as the
        client sent it, with its credentials, for that cell (decision 0034)."""
        found = self._forwarding(cell, "registry")
        if isinstance(found, _Refused):
            if found.status == 503:
                return _unavailable(found.message)
            return Response.error(found.status, 42101, found.message)
        door, headers = found
        return forward(door, self.server.forward_tls, self.command, self.path, headers, self._body)

    def _forwarding(self, cell: str, door_name: str) -> tuple[tuple[str, int], dict[str, str]] | _Refused:
        """Where to forward this request for ``cell`` and the headers to send (the
        client's credentials and trace context, the cell); or the refusal's status (503:
        no agent known to serve the cell; 421: a client authenticated by its certificate,
        whose identity cannot travel) and message."""
        cells = self.server.cells
        assert cells is not None
        try:
            door = cells.cluster.door_of(cell)
        except OdradekError as exc:
            return _Refused(503, exc.message)
        if door is None:
            return _Refused(
                503,
                f"no agent with a registry door serves cell {cell} right now (a failover in "
                "progress, or the agent serving it runs without the door); retry",
            )
        authorization = self.headers.get("Authorization")
        if self.server.authenticator is not None and authorization is None:
            # A client certificate cannot be passed along: the client sends it there.
            host, port = door
            return _Refused(
                421,
                f"this request concerns cell {cell}, served by the agent whose {door_name} door is "
                f"{_address(host, port)}: a client authenticated by its certificate sends it there",
            )
        headers = {
            name: value for name in _FORWARDED_HEADERS if (value := self.headers.get(name)) is not None
        }
        headers[CELL_HEADER] = cell
        request_id = request_ids.current.get()
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        return door, headers

    def _cells_api_answer(
        self, path: str, query: dict[str, str], body: bytes
    ) -> ApiResponse | EventStream | _Relay | CellsTail:
        """The HTTP API's or the console's answer over a cluster with several cells
        (decision 0036, http_api/cells.py): the cell's API here, forwarded to the agent
        serving the cell, or every cell's answer merged."""
        cells = self.server.cells
        assert cells is not None
        if owns_ui(path):
            return serve_static(self.command, path)
        given = self.headers.get(CELL_HEADER)
        if given is not None:  # forwarded by another agent for one of this agent's cells
            served = cells.local_api(given)
            if served is None:
                return _api_unavailable(
                    f"this agent does not serve cell {given!r} now (it changed hands); retry"
                )
            return self._local_api_answer(served, path, query, body, self.headers.get(MEMBER_HEADER))
        try:
            prefix = self._namespace().prefix
        except OdradekError:
            prefix = ""  # a principal of a tenant that does not exist: refused as it is answered
        where = api_cells.route(self.command, path, query, body, prefix)
        if where.kind == api_cells.LOCAL:
            served = cells.any_api()
            if served is not None:
                return self._local_api_answer(served, path, query, body)
            where = api_cells.HOME  # this agent serves no cell now: the home cell's agent answers
        try:
            names = cells.cluster.cells()
            if where.kind == api_cells.MEMBER:
                return MemberOverCells(names, self._ask_cell, cells.cluster.cell_of, prefix).answer(
                    self.command, path, body
                )
            if where.kind == api_cells.TAILS:
                return self._tails(names, path, query, body)
            if where.kind == api_cells.MERGE:
                targets = names
            elif where.kind == api_cells.GROUP:
                assert where.group is not None
                # GET or DELETE /v1/groups/{group}: every cell holding it; else the first.
                whole = path.rstrip("/").count("/") == 3 and self.command in ("GET", "DELETE")
                holding = api_cells.group_cells(where.group, names, self._group_listing, first=not whole)
                if len(holding) > 1:
                    return self._group_of_cells(holding, path, query, body)
                targets = [next(iter(holding), names[0])]
            elif where.topic is not None:
                targets = [cells.cluster.cell_of(where.topic)]
            else:
                targets = names[:1]
        except OdradekError as exc:  # etcd out of reach: where a topic is is not known
            return _api_unavailable(exc.message)
        except _ListingRefused as refused:  # a cell's group listing could not be had
            return refused.answer
        if where.kind != api_cells.MERGE:
            if where.topic is not None and cells.replicas is not None and cells.local_api(targets[0]) is None:
                from_store = self._store_answer(targets[0], path, query, body)
                if from_store is not None:
                    return from_store
            return self._cell_api_answer(targets[0], self.command, path, query, body, streams=True)
        documents = []
        for cell in targets:
            answer = self._cell_api_answer(cell, self.command, path, query, body)
            assert not isinstance(answer, EventStream | _Relay)  # a listing is no stream
            if answer.status >= 400:
                return answer  # the first refusal is the answer: never a part shown as all
            try:
                documents.append(answer.document())
            except ValueError:
                return ApiResponse(
                    502, error_body("error", f"cell {cell} answered a listing that is not JSON")
                )
        try:
            merged = api_cells.merge(where.listing or api_cells.TOPICS, documents)
        except ValueError as exc:
            return ApiResponse(502, error_body("error", str(exc)))
        return ApiResponse.of(merged)

    def _store_answer(self, cell: str, path: str, query: dict[str, str], body: bytes) -> ApiResponse | None:
        """A read of a topic of ``cell``, which another agent serves, answered here from
        the cell's sealed segments in the store (decision 0042, http_api/routes.py
        ``read_from_store``), under the principal's quotas and metered here; None when
        the store cannot answer it: it is forwarded."""
        cells = self.server.cells
        assert cells is not None and cells.replicas is not None
        replica = cells.replicas.of(cell)

        def handle(request: ApiRequest) -> ApiResponse:
            answer = read_from_store(request, lambda topic: replica)
            if answer is None:
                raise _Declined
            return answer

        try:
            answer = self._metered_answer(handle, path, query, body)
        except _Declined:
            return None
        assert isinstance(answer, ApiResponse)
        return answer

    def _group_of_cells(
        self, holding: dict[str, int], path: str, query: dict[str, str], body: bytes
    ) -> ApiResponse:
        """A group in several cells (subscribing to a pattern, decision 0038): its
        description merged from every cell's, or its deletion in every cell; while it
        has members, a cell that counts them refuses the deletion as one node would,
        and no cell is changed."""
        busy = [cell for cell, members in holding.items() if members]
        if self.command == "DELETE" and busy:
            answer = self._cell_api_answer(busy[0], self.command, path, query, body)
            assert isinstance(answer, ApiResponse)
            return answer
        answers = []
        for cell in holding:
            answer = self._cell_api_answer(cell, self.command, path, query, body)
            assert isinstance(answer, ApiResponse)
            if answer.status >= 400:
                return answer  # the first refusal is the answer
            answers.append(answer)
        if self.command == "DELETE":
            return answers[0]
        try:
            merged = merge_infos([GroupInfo.from_json(answer.document()) for answer in answers])
        except (ValueError, KeyError, TypeError) as exc:
            return ApiResponse(502, error_body("error", f"a cell answered an unreadable group: {exc}"))
        return ApiResponse.of(merged.to_json())

    def _ask_cell(
        self, cell: str, method: str, path: str, body: bytes, member: str | None = None
    ) -> ApiResponse:
        """``cell``'s answer to a request a member over cells makes of it for this one
        (cells_member.py): ``path`` (no query) and ``body`` as given, under this
        request's principal; a join makes its member with the id ``member``."""
        answer = self._cell_api_answer(cell, method, path, {}, body, exact=True, member=member)
        assert isinstance(answer, ApiResponse)  # no event stream is asked
        return answer

    def _cell_api_answer(
        self,
        cell: str,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        *,
        streams: bool = False,
        lookup: bool = False,
        exact: bool = False,
        member: str | None = None,
    ) -> ApiResponse | EventStream | _Relay:
        """The answer of ``cell``'s API to ``method path``: here when this agent serves the
        cell (metered here), else forwarded to the agent serving it (which meters it),
        an event stream relayed as it flows when ``streams``. A ``lookup`` is a request
        the door makes for this one (a group listing), not the client's as it sent it;
        an ``exact`` one is ``path`` and ``body`` as given, a join's ``member`` the id
        its member is made with."""
        cells = self.server.cells
        assert cells is not None
        served = cells.local_api(cell)
        if served is not None:
            if lookup:
                api, _ = served
                try:
                    request = dataclasses.replace(self._api_request(path, query, body), method=method)
                except OdradekError as exc:
                    return ApiResponse.error(exc)
                return api.handle(request)
            return self._local_api_answer(served, path, query, body, member, method if exact else None)
        found = self._forwarding(cell, "HTTP API")
        if isinstance(found, _Refused):
            return found.api_answer()
        door, headers = found
        if member is not None:
            headers[MEMBER_HEADER] = member
        if streams and method == "GET" and _streams(path):
            return _Relay(door, headers)
        target = path if lookup or exact else self.path
        sent = b"" if lookup else body
        try:
            # A poll there may wait its whole time before it answers.
            seconds = limits.registry_forward_seconds + limits.http_poll_seconds_max
            status, data, content_type, kept = exchange(
                door, self.server.forward_tls, method, target, headers, sent, seconds
            )
        except Unreachable as exc:
            if exc.status == 503:
                return _api_unavailable(exc.message)
            return ApiResponse(exc.status, error_body("error", exc.message))
        return ApiResponse(status, data, content_type or "application/json", headers=kept)

    def _group_listing(self, cell: str) -> object:
        """``cell``'s group listing as this request's principal sees it (a GET /v1/groups
        document); :class:`_ListingRefused` when the cell cannot answer it."""
        answer = self._cell_api_answer(cell, "GET", "/v1/groups", {}, b"", lookup=True)
        assert isinstance(answer, ApiResponse)
        if answer.status >= 400:
            raise _ListingRefused(answer)
        try:
            return answer.document()
        except ValueError:
            raise _ListingRefused(
                ApiResponse(
                    502, error_body("error", f"cell {cell} answered a group listing that is not JSON")
                )
            ) from None

    def _local_api_answer(
        self,
        served: tuple[HttpApi, ConsoleApi],
        path: str,
        query: dict[str, str],
        body: bytes,
        member: str | None = None,
        method: str | None = None,
    ) -> ApiResponse | EventStream:
        """A cell's API's (or console's) answer here, under the principal's quotas (a
        join's ``member``: the id its member is made with; ``method``: the request's,
        unless another is given)."""
        api, console = served
        handle = console.handle if owns_api(path) else api.handle
        return self._metered_answer(handle, path, query, body, member, method)

    def _relay(self, relay: _Relay) -> None:
        """Relay the event stream of another cell's topic from the agent serving it: its
        status and headers, then each chunk as it arrives, until either side ends (each
        write to the client bounded by ``limits.http_sse_write_seconds_max``); the
        connection closes after it. A refusal there is answered as it came."""
        self.close_connection = True
        opened = self._open_stream(relay.door, relay.headers)
        if isinstance(opened, ApiResponse):
            self._send_api(opened, close=True)
            return
        connection, answer = opened
        try:
            self.connection.settimeout(limits.http_sse_write_seconds_max)
            self.send_response(200)
            self.send_header("Content-Type", answer.getheader("Content-Type") or "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Accel-Buffering", "no")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            while chunk := answer.read1(_RELAY_CHUNK_BYTES):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (OSError, http.client.HTTPException) as exc:  # either side went away
            log.debug("relayed event stream ended: %s", exc)
        finally:
            _hang_up(connection, answer)

    def _open_stream(
        self, door: tuple[str, int], headers: dict[str, str]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse] | ApiResponse:
        """This request sent to the agent at ``door`` for an event stream: the
        connection and its answer streaming, or the answer it gave instead (a refusal),
        or a 503 when it did not answer."""
        host, port = door
        # The serving agent sends a heartbeat at least every http_sse_heartbeat_seconds.
        wait = limits.http_sse_heartbeat_seconds + limits.registry_forward_seconds
        connection = _connection(door, self.server.forward_tls, wait)
        try:
            connection.request("GET", self.path, headers=headers)
            answer = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return _api_unavailable(f"the agent at {_address(host, port)} did not answer ({exc}); retry")
        content_type = answer.getheader("Content-Type") or "application/json"
        if answer.status == 200 and content_type.startswith("text/event-stream"):
            return connection, answer
        try:
            data = answer.read(limits.registry_forward_response_bytes_max)
        except (OSError, http.client.HTTPException) as exc:
            data = error_body("unavailable", f"the agent at {_address(host, port)} broke off ({exc}); retry")
        finally:
            _hang_up(connection, answer)
        kept = tuple(
            (name, value) for name in _ANSWER_HEADERS if (value := answer.getheader(name)) is not None
        )
        return ApiResponse(answer.status, data, content_type, headers=kept)

    def _tails(
        self, names: list[str], path: str, query: dict[str, str], body: bytes
    ) -> ApiResponse | CellsTail:
        """A console tail of a pattern over every cell (console/cells_tail.py): each
        cell's tail opened, here or at the agent serving it; the first refusal is the
        answer, the tails opened before it closed."""
        cells = self.server.cells
        assert cells is not None
        parts: list[TailPart] = []
        here: list[EventStream] = []
        try:
            for cell in names:
                served = cells.local_api(cell)
                if served is not None:
                    local = self._local_api_answer(served, path, query, body)
                    if isinstance(local, ApiResponse):
                        return local
                    here.append(local)
                    parts.append(TailPart(cell, local, local.close, local=True))
                    continue
                found = self._forwarding(cell, "HTTP API")
                if isinstance(found, _Refused):
                    return found.api_answer()
                opened = self._open_stream(*found)
                if isinstance(opened, ApiResponse):
                    return opened
                connection, answer = opened
                chunks = iter(functools.partial(answer.read1, _RELAY_CHUNK_BYTES), b"")
                parts.append(
                    TailPart(cell, chunks, functools.partial(_hang_up, connection, answer), local=False)
                )
            tail = CellsTail(
                parts, heartbeat_seconds=limits.http_sse_heartbeat_seconds, stopping=cells.draining.is_set
            )
            for stream in here:
                stream.peer_gone = tail.part_stopped
            parts = []  # the tail holds them now
            return tail
        finally:
            for part in parts:
                part.close()

    def _answer_with(self, registry: Registry, request: Request) -> Response:
        """``registry``'s answer, or 403 for what the principal may not do (authorization.py)."""
        handle = registry.handle
        if self.principal.tenant is not None:  # its subjects are its own (decision 0028)
            store = getattr(self.server.authenticator, "store", None)
            try:
                namespace = namespace_of(self.principal, store.tenant_exists if store else lambda _: False)
            except OdradekError as exc:
                return Response.error(403, 40301, exc.message)

            def handle(request: Request) -> Response:
                return registry_tenancy.serve(namespace, request, registry.handle)

        authorizer = authorizer_of(self.server.authenticator)
        if authorizer is None:
            answer = handle(request)
            if not self.principal.admin and request.path.strip("/") == "subjects" and answer.status == 200:
                return _default_namespace_subjects(answer)  # decision 0028
            return answer
        # (a cell's registry calls its engine through registry/cells.py's CellSubjects)
        patterns = registry_authorization.view_patterns(getattr(registry.backend, "engine", registry.backend))
        return registry_authorization.handle(authorizer, self.principal, request, handle, patterns)

    def _refuse(self, status: int, code: int, message: str) -> None:
        self._send(Response.error(status, code, message), close=True)

    def _refuse_api(self, status: int, code: int, message: str) -> None:
        names = {
            400: "invalid_request",
            411: "invalid_request",
            413: "request_too_large",
            421: "misdirected",
            501: "not_implemented",
            503: "unavailable",
        }
        headers = (("Retry-After", "1"),) if status == 503 else ()
        self._send_api(
            ApiResponse(status, error_body(names.get(status, "error"), message), headers=headers), close=True
        )

    def _api_request(
        self,
        path: str,
        query: dict[str, str],
        body: bytes,
        member: str | None = None,
        method: str | None = None,
    ) -> ApiRequest:
        """The API's view of this request; event streams are counted per principal, or
        per peer address on a server without authentication."""
        if self.server.authenticator is None:
            owner = f"peer {peer_host(self.client_address)}"
        else:
            owner = str(self.principal)
        return ApiRequest(
            method or self.command,
            path,
            query,
            body,
            owner,
            self.headers.get("Last-Event-ID"),
            self.principal,
            authorizer_of(self.server.authenticator),
            {name: value for name in TRACE_HEADERS if (value := self.headers.get(name)) is not None},
            self._namespace(),
            member,
        )

    def _metered_answer(
        self,
        handle: Callable[[ApiRequest], ApiResponse | EventStream],
        path: str,
        query: dict[str, str],
        body: bytes,
        member: str | None = None,
        method: str | None = None,
    ) -> ApiResponse | EventStream:
        """The API's answer under the principal's byte quotas (security/quotas.py): a
        produce while its produce rate is over quota, or a read, a tail or a poll while its
        fetch rate is, is answered 429 with Retry-After and not served; a served one's bytes
        are counted against the quota and metered for /metrics."""
        kind = _quota_kind(method or self.command, path)
        quotas, metering = self.server.quotas, self.server.metering
        user, tenant = self.principal.name, self.principal.tenant
        if kind is not None and quotas is not None:
            wait = quotas.pending(user, None, kind, tenant)
            if wait > 0:
                if metering is not None:
                    metering.add(user, throttle_seconds=wait, tenant=tenant)
                what = "produce" if kind == PRODUCE else "fetch"
                message = (
                    f"{self.principal} is over its {what} byte rate quota; retry after "
                    f"{math.ceil(wait)} s (odradek quota list shows the quotas)"
                )
                headers = (("Retry-After", str(max(1, math.ceil(wait)))),)
                return ApiResponse(429, error_body("throttled", message), headers=headers)
        answer = self._api_answer(handle, path, query, body, member, method)
        if kind is None or not isinstance(answer, ApiResponse) or answer.status >= 400:
            return answer
        produced = len(body) if kind == PRODUCE else 0
        fetched = len(answer.body) if kind == FETCH else 0
        if quotas is not None:  # the throttle it earns applies to the next request
            quotas.throttle(user, None, produced=produced, fetched=fetched, request=False, tenant=tenant)
        if metering is not None:
            metering.add(
                user,
                bytes_in=produced,
                bytes_out=fetched,
                records_in=answer.records if produced else 0,
                records_out=answer.records if fetched else 0,
                tenant=tenant,
            )
        return answer

    def _metered_chunk(self, size: int) -> None:
        """An event stream's chunk of ``size`` bytes against the fetch quota: metered,
        and over it the stream waits its throttle before its next chunk (a stream has no
        next request to refuse)."""
        quotas, metering = self.server.quotas, self.server.metering
        user, tenant = self.principal.name, self.principal.tenant
        wait = 0.0
        if quotas is not None:
            wait = quotas.throttle(user, None, fetched=size, request=False, tenant=tenant)
        if metering is not None:
            metering.add(user, bytes_out=size, throttle_seconds=wait, tenant=tenant)
        if wait > 0:
            time.sleep(wait)

    def _api_answer(
        self,
        handle: Callable[[ApiRequest], ApiResponse | EventStream],
        path: str,
        query: dict[str, str],
        body: bytes,
        member: str | None = None,
        method: str | None = None,
    ) -> ApiResponse | EventStream:
        try:
            request = self._api_request(path, query, body, member, method)
        except OdradekError as exc:  # a principal of a tenant that does not exist
            return ApiResponse.error(exc)
        return handle(request)

    def _namespace(self) -> Namespace:
        """The names this request's principal says (decision 0028)."""
        if self.server.authenticator is None:
            return RAW
        store = getattr(self.server.authenticator, "store", None)
        return namespace_of(self.principal, store.tenant_exists if store is not None else lambda _: False)

    def _send_api(self, response: ApiResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    def _stream(self, stream: EventStream | CellsTail) -> None:
        """Write an event stream until it ends or the client goes away; the connection
        closes after it (the stream has no length)."""
        self.close_connection = True
        try:
            self.connection.settimeout(limits.http_sse_write_seconds_max)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Accel-Buffering", "no")  # proxies: do not buffer the stream
            self.send_header("Connection", "close")
            self.end_headers()
            stream.peer_gone = self._peer_closed
            authenticator = self.server.authenticator
            if authenticator is not None:  # its principal checked again as it streams
                token, expires = self.credential
                stream.guard = StreamGuard(authenticator, self.principal, token, expires, stream.authorize)
            for chunk in stream:
                self.wfile.write(chunk)
                self.wfile.flush()
                self._metered_chunk(stream.metered(chunk))
        except OSError as exc:  # the client went away, or stopped reading for too long
            log.debug("event stream ended by its client: %s", exc)
        finally:
            stream.close()

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    def _peer_closed(self) -> bool:
        """Whether the client of an event stream closed its connection (it sends nothing
        after its request, so a readable socket with nothing to read is a close)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except ValueError:  # a TLS socket takes no flags: its stream ends at a write
            return False
        except OSError:
            return True

    def unauthenticated_body(self, message: str) -> bytes:
        """The HTTP API's paths answer a 401 in the API's error shape."""
        if self.server.serves_api and owns(urllib.parse.urlsplit(self.path).path):
            return error_body("unauthenticated", message)
        return super().unauthenticated_body(message)

    def serves_tenants(self) -> bool:
        """The registry, the HTTP API and the console serve a tenant's principals
        (registry/tenancy.py, http_api/routes.py, console/api.py)."""
        return True

    def forbidden_body(self, message: str) -> bytes:
        """The HTTP API's paths answer a 403 in the API's error shape."""
        if self.server.serves_api and owns(urllib.parse.urlsplit(self.path).path):
            return error_body("unauthorized", message)
        return super().forbidden_body(message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, oversized headers) in Confluent's error shape;
        a method http.server does not know, on the HTTP API's paths, is the API's 405."""
        if code == 501 and self.server.serves_api and owns(urllib.parse.urlsplit(self.path).path):
            self._serve()
            return
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

    It answers with ``registry``, or with ``cells`` (a cluster agent's registries, one
    per cell it serves: decision 0034) forwarding what concerns other cells to the
    agents serving them, over TLS with the context ``forward_tls()`` makes when given. ``bounds``
    default to the registry's (odradek.limits, or this module's patched values);
    ``budget`` is the server's in-flight byte budget (a private one of the default size
    when None).
    """

    def __init__(
        self,
        registry: Registry | None,
        host: str,
        port: int,
        *,
        bounds: connections.DoorLimits | None = None,
        budget: ByteBudget | None = None,
        api: HttpApi | None = None,
        cluster_status: ClusterStatus | None = None,
        cells: CellRegistries | None = None,
        forward_tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        if bounds is None:
            bounds = connections.REGISTRY.replace(
                connections_max=connections_max, idle_seconds=_RegistryHandler.timeout
            )
        if budget is None:
            budget = ByteBudget(limits.inflight_bytes_max_default)
        self.api = api
        self.cells = cells
        super().__init__(
            _RegistryHTTPServer(
                registry, host, port, bounds, budget, api, cluster_status, cells, forward_tls
            ),
            poll_interval_seconds,
        )

    def close(self) -> None:
        """Stop: the HTTP API refuses new requests and ends its event streams (waiting
        at most ``limits.http_sse_drain_seconds_max``), then the listener stops."""
        if self.api is not None:
            self.api.drain(limits.http_sse_drain_seconds_max)
        if self.cells is not None:
            self.cells.drain()
        super().close()

    @property
    def url(self) -> str:
        """The base URL to give Schema Registry clients."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> RegistryListener:
        return self


class Unreachable(Exception):
    """The agent a request was forwarded to did not answer, or answered too much:
    ``status`` is 503 (retry: the cell may be changing hands) or 502."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# The headers of a forwarded answer given back to the client (besides its type).
_ANSWER_HEADERS = ("Retry-After", "Allow")


def exchange(
    door: tuple[str, int],
    tls: Callable[[], ssl.SSLContext] | None,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    seconds: float = limits.registry_forward_seconds,
) -> tuple[int, bytes, str | None, tuple[tuple[str, str], ...]]:
    """The answer of the door at ``door`` to ``method target`` (path and query as the
    client sent them) with ``headers`` and ``body``: its status, body, content type and
    the headers of :data:`_ANSWER_HEADERS` it sent. One connection per request, bounded
    in time (``seconds``, ``limits.registry_forward_seconds`` unless given) and in the
    answer's size (``limits.registry_forward_response_bytes_max``); :class:`Unreachable`
    otherwise."""
    host, port = door
    connection = _connection(door, tls, seconds)
    size_max = limits.registry_forward_response_bytes_max
    answer: http.client.HTTPResponse | None = None
    try:
        connection.request(method, target, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read(size_max + 1)
        if len(data) > size_max:
            raise Unreachable(502, f"the agent at {_address(host, port)} answered more than {size_max} bytes")
        kept = tuple(
            (name, value) for name in _ANSWER_HEADERS if (value := answer.getheader(name)) is not None
        )
        return answer.status, data, answer.getheader("Content-Type"), kept
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(503, f"the agent at {_address(host, port)} did not answer ({exc}); retry") from exc
    finally:
        if answer is not None:
            answer.close()  # (an answer cut at the bound holds the socket too)
        connection.close()


def _connection(
    door: tuple[str, int], tls: Callable[[], ssl.SSLContext] | None, timeout: float
) -> http.client.HTTPConnection:
    host, port = door
    if tls is not None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def forward(
    door: tuple[str, int],
    tls: Callable[[], ssl.SSLContext] | None,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> Response:
    """The answer of the registry door at ``door`` to the request (:func:`exchange`); a
    door out of reach is a 503 (the cell may be changing hands), which clients retry."""
    try:
        status, data, content_type, _ = exchange(door, tls, method, target, headers, body)
    except Unreachable as exc:
        return Response.error(exc.status, 50003 if exc.status == 503 else 50001, exc.message)
    return Response(status, data, content_type or CONTENT_TYPE)


class _ListingRefused(Exception):
    def __init__(self, answer: ApiResponse) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _hang_up(connection: http.client.HTTPConnection, answer: http.client.HTTPResponse) -> None:
    """End a forwarded event stream, from any thread: a read waiting on it returns."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    answer.close()  # it holds the connection's socket too
    connection.close()


# At most this much of a relayed event stream is read at once (what arrived is sent on).
_RELAY_CHUNK_BYTES = 64 * 1024


def _streams(path: str) -> bool:
    """Whether a GET of ``path`` is answered with an event stream (a topic's or the
    console's tail)."""
    parts = path.strip("/").split("/")
    return (len(parts) == 4 and parts[:2] == ["v1", "topics"] and parts[3] == "events") or parts == [
        "v1",
        "console",
        "tail",
    ]


def _api_unavailable(message: str) -> ApiResponse:
    return ApiResponse(503, error_body("unavailable", message), headers=(("Retry-After", "1"),))


def _unavailable(message: str) -> Response:
    return Response.error(503, 50003, message)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _default_namespace_subjects(answer: Response) -> Response:
    """A subject listing without the tenants' subjects (``_t.<tenant>.<topic>-value``):
    the registry serves the default namespace (decision 0028)."""
    names = json.loads(answer.body)
    if not isinstance(names, list):
        return answer
    kept = [name for name in names if not (isinstance(name, str) and name.startswith(TENANT_ROOT + "."))]
    return Response(200, json.dumps(kept).encode(), answer.content_type)


def _quota_kind(method: str, path: str) -> str | None:
    """The byte quota an HTTP API request counts against: PRODUCE for a produce, FETCH for
    a read, a key read, a tail (the API's and the console's) or a group poll; None."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[:2] == ["v1", "topics"] and parts[3] == "records":
        return PRODUCE if method == "POST" else FETCH if method == "GET" else None
    if method == "GET" and len(parts) == 4 and parts[:2] == ["v1", "topics"] and parts[3] == "events":
        return FETCH
    if method == "GET" and len(parts) == 6 and parts[:2] == ["v1", "topics"] and parts[3] == "keys":
        return FETCH if parts[5] == "records" else None
    if method == "POST" and len(parts) == 6 and parts[:2] == ["v1", "groups"] and parts[5] == "poll":
        return FETCH
    if method == "GET" and parts == ["v1", "console", "tail"]:
        return FETCH
    return None
