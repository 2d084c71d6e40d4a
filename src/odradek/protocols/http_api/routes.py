"""The HTTP/JSON API under ``/v1/``, without IO (docs/http-api.md).

An :class:`ApiRequest` (method, path, query, body, the principal's name, the
``Last-Event-ID``) goes in; an :class:`ApiResponse` (status, JSON body, headers) or an
:class:`~odradek.protocols.http_api.events.EventStream` (a tail as Server-Sent Events)
comes out. The HTTP shell (the registry listener, protocols/registry/server.py) only
moves bytes.

Rules:

* No semantics here: every decision is the engine's, the groups' or the node's, as for
  the Flight door; the same errors come out with the same codes (errors.py).
* Dispatch is a table of path patterns, each with a handler per method; ``{name}``
  segments are path parameters (percent-decoded).
* Every request is bounded: the body by the listener (``http_request_body_bytes_max``),
  records per produce and per read, a poll's wait, open event streams.
* A stop (:meth:`HttpApi.drain`) refuses new requests with 503 and ends the open
  event streams with an ``end`` event.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import defaults, limits
from odradek.engine.replica import CellReplica
from odradek.engine.snapshots import SNAPSHOT_COLUMN
from odradek.engine.topic import normalize_key
from odradek.errors import InvalidRequest, OdradekError, Unavailable
from odradek.groups.options import GroupOptions, check_delay, check_poll, validate_member_id
from odradek.node import Node
from odradek.protocols import observe, trace
from odradek.protocols.flight.group_messages import DeliveryRef
from odradek.protocols.http_api import authorization, openapi
from odradek.protocols.http_api.errors import (
    CONTENT_TYPE,
    RETRY_AFTER_SECONDS,
    body_of,
    error_body,
    status_of,
)
from odradek.protocols.http_api.events import EventStream, StreamSlots
from odradek.protocols.http_api.records import (
    combined,
    decode_key,
    input_rows,
    output_records,
    put_bytes,
    records_json,
)
from odradek.security.authorizer import Authorizer
from odradek.security.principal import ANONYMOUS, Principal
from odradek.security.tenants import RAW, Namespace, local_error
from odradek.types import AppendResult

log = logging.getLogger("odradek.http_api")

# Settings create_topic and alter_topic take from a request body (as the Flight door).
TOPIC_SETTINGS = (
    "retention",
    "retention_bytes",
    "segment_bytes",
    "segment_age",
    "cleanup",
    "delete_retention",
    "min_compaction_lag",
    "min_cleanable_dirty_ratio",
)
CREATE_OPTIONS = (*TOPIC_SETTINGS, "exist_ok", "compatibility", "snapshot_every")
# Options of a group member (GroupOptions), as the Flight door's subscribe takes them.
MEMBER_OPTIONS = (
    "start",
    "ack_timeout",
    "max_deliveries",
    "dead_letter_topic",
    "max_in_flight_per_key",
    "ordering",
)


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""
    # Who asks: a principal's name, or the peer's address without authentication
    # (what bounds the event streams one client may hold).
    owner: str = "anonymous"
    last_event_id: str | None = None
    principal: Principal = ANONYMOUS
    # What the principal may do (None: everything; authorization.py).
    authorizer: Authorizer | None = None
    # The request's W3C trace context headers (trace.py), lower-case names: a produce
    # puts them on its records that carry none.
    trace: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The names the principal says (security/tenants.py, decision 0028): RAW for a
    # cluster admin (and without authentication), DEFAULT for an untenanted principal.
    namespace: Namespace = RAW
    # The id a join makes its member with: set by the agent joining a member by pattern
    # to every cell of a cluster (http_api/cells_member.py); None: a new id.
    member: str | None = None


@dataclasses.dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    #: Records the request appended or read (for /metrics, protocols/observe.py).
    records: int = 0

    @classmethod
    def of(cls, document: Any, status: int = 200) -> ApiResponse:
        return cls(status, (json.dumps(document) + "\n").encode())

    @classmethod
    def error(cls, error: OdradekError) -> ApiResponse:
        status = status_of(error)
        headers = (("Retry-After", str(RETRY_AFTER_SECONDS)),) if status == 503 else ()
        return cls(status, body_of(error), headers=headers)

    def document(self) -> Any:
        return json.loads(self.body)


class _NotFound(OdradekError):
    code = "not_found"


class _MethodNotAllowed(OdradekError):
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class _GroupNotFound(InvalidRequest):
    """No group of that name: what the other doors refuse as invalid_request, with
    HTTP's status for a missing resource."""

    http_status = 404

    def __init__(self, group: str) -> None:
        super().__init__(f"group {group!r} does not exist (a member's join creates it)")


Handler = Callable[[ApiRequest, dict[str, str]], "ApiResponse | EventStream"]

# The paths this API answers (the registry answers the rest of its listener).
OPENAPI_PATH = "/openapi.json"
PREFIX = "/v1/"
# The registry's own route under /v1 (decision 0019's view keys).
REGISTRY_PREFIXES = ("/v1/views/",)


_T, _K, _G, _M = "{topic}", "{key}", "{group}", "{member}"
# The routes: path segments ({name}: a parameter) and the handler of each method.
ROUTES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = (
    (("openapi.json",), {"GET": "_openapi"}),
    (("v1", "topics"), {"GET": "_list_topics", "POST": "_create_topic"}),
    (("v1", "topics", _T), {"GET": "_describe_topic", "PATCH": "_alter_topic", "DELETE": "_delete_topic"}),
    (("v1", "topics", _T, "records"), {"GET": "_read", "POST": "_produce"}),
    (("v1", "topics", _T, "events"), {"GET": "_tail"}),
    (("v1", "topics", _T, "schema"), {"GET": "_schema"}),
    (("v1", "topics", _T, "keys", _K), {"GET": "_key_version"}),
    (("v1", "topics", _T, "keys", _K, "records"), {"GET": "_read_key"}),
    (("v1", "topics", _T, "keys", _K, "snapshot"), {"PUT": "_snapshot"}),
    (("v1", "groups"), {"GET": "_list_groups"}),
    (("v1", "groups", _G), {"GET": "_describe_group", "DELETE": "_delete_group"}),
    (("v1", "groups", _G, "members"), {"POST": "_join"}),
    (("v1", "groups", _G, "members", _M), {"DELETE": "_leave"}),
    (("v1", "groups", _G, "members", _M, "poll"), {"POST": "_poll"}),
    (("v1", "groups", _G, "members", _M, "ack"), {"POST": "_ack"}),
    (("v1", "groups", _G, "members", _M, "nack"), {"POST": "_nack"}),
)


def _error_code(answer: ApiResponse) -> str:
    """The ``code`` of an error answer's document (errors only: a small document)."""
    try:
        document = answer.document()
    except ValueError:
        return "error"
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, str) else "error"


def owns(path: str) -> bool:
    """Whether ``path`` is this API's (else the registry's)."""
    if path == OPENAPI_PATH:
        return True
    return path.startswith(PREFIX) and not path.startswith(REGISTRY_PREFIXES)


class HttpApi:
    """Answers the HTTP API's requests for one node."""

    def __init__(self, node: Node, *, create_topic: Callable[..., Any] | None = None) -> None:
        """``create_topic`` creates a topic in place of the engine's (a cell of a cluster
        places it in the cell first: protocols/registry/cells.py's ``CellSubjects``)."""
        self.node = node
        self.engine = node.engine
        self._create = create_topic if create_topic is not None else node.engine.create_topic
        self.streams = StreamSlots(limits.http_sse_streams_max, limits.http_sse_streams_per_principal_max)
        self._draining = threading.Event()
        self._routes: list[tuple[tuple[str, ...], dict[str, str]]] = list(ROUTES)

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> ApiResponse | EventStream:
        """One request, one answer; never raises. Counted for /metrics (observe.py): the
        route's handler is the operation, the error's code the outcome."""
        started = time.perf_counter()
        matched: list[str] = []
        answer = self._handle(request, matched)
        operation = matched[0].lstrip("_") if matched else "other"
        outcome = "ok"
        if isinstance(answer, ApiResponse) and answer.status >= 400:
            outcome = _error_code(answer)
        records_in = bytes_in = records_out = bytes_out = 0
        if isinstance(answer, ApiResponse) and outcome == "ok":
            if operation == "produce":
                records_in, bytes_in = answer.records, len(request.body)
            elif operation in ("read", "read_key"):
                records_out, bytes_out = answer.records, len(answer.body)
        observe.request(
            "http",
            operation,
            outcome,
            time.perf_counter() - started,
            records_in=records_in,
            bytes_in=bytes_in,
            records_out=records_out,
            bytes_out=bytes_out,
        )
        return answer

    def _handle(self, request: ApiRequest, matched: list[str]) -> ApiResponse | EventStream:
        try:
            name, parameters = self._match(request)
            matched.append(name)
            if self._draining.is_set() or self.engine.closed:
                raise Unavailable("the server is shutting down; retry against a running server")
            if request.authorizer is not None:  # on the names the principal said
                authorization.check_route(request.authorizer, request.principal, name, parameters)
            handler: Handler = getattr(self, name)
            namespace = request.namespace
            if not namespace.translates:
                return _rechecked(handler(request, parameters), request, name, parameters)
            engine = {
                key: namespace.group(value)
                if key == "group"
                else namespace.topic(value)
                if key == "topic"
                else value
                for key, value in parameters.items()
            }
            return _local_answer(
                namespace, name, _rechecked(handler(request, engine), request, name, parameters)
            )
        except _MethodNotAllowed as exc:  # RFC 9110: a 405 lists what is allowed
            refused = ApiResponse.error(exc)
            return dataclasses.replace(refused, headers=(("Allow", ", ".join(exc.allowed)),))
        except OdradekError as exc:
            return ApiResponse.error(local_error(request.namespace, exc))
        except Exception as exc:  # a bug must not take the listener down
            log.exception("HTTP API request failed", extra={"fields": {"path": request.path}})
            return ApiResponse.error(OdradekError(f"internal server error: {type(exc).__name__}: {exc}"))

    def _match(self, request: ApiRequest) -> tuple[str, dict[str, str]]:
        segments = [urllib.parse.unquote(part) for part in request.path.strip("/").split("/")]
        for pattern, handlers in self._routes:
            if len(pattern) != len(segments):
                continue
            parameters: dict[str, str] = {}
            for expected, actual in zip(pattern, segments):
                if expected.startswith("{"):
                    if not actual:
                        break
                    parameters[expected[1:-1]] = actual
                elif expected != actual:
                    break
            else:
                handler = handlers.get(request.method.upper())
                if handler is None:
                    allowed = sorted(handlers)
                    raise _MethodNotAllowed(
                        f"{request.method} is not allowed on {request.path} (allowed: {', '.join(allowed)})",
                        allowed,
                    )
                return handler, parameters
        raise _NotFound(f"no such resource: {request.path} (see /openapi.json)")

    def drain(self, seconds: float) -> bool:
        """Refuse new requests, end the event streams; whether they all ended in time."""
        self._draining.set()
        return self.streams.wait_empty(seconds)

    # -- the document ------------------------------------------------------------------------

    def _openapi(self, request: ApiRequest, _: dict[str, str]) -> ApiResponse:
        return ApiResponse.of(openapi.DOCUMENT)

    # -- topics ------------------------------------------------------------------------------

    def _list_topics(self, request: ApiRequest, _: dict[str, str]) -> ApiResponse:
        pattern = request.query.get("pattern")  # an empty one is refused, as a bad one
        topics = self.engine.list_topics(pattern)
        unavailable = self.engine.unavailable_topics()
        namespace = request.namespace
        if namespace.translates:  # a tenant's own, as it names them (decision 0028)
            topics = namespace.locals(self.engine.list_topics(namespace.pattern(pattern or ">")))
        elif not namespace.raw:  # the default namespace's
            topics = namespace.locals(topics)
        unavailable = {
            namespace.local(name): why for name, why in unavailable.items() if namespace.owns(name)
        }
        if request.authorizer is not None:
            topics = request.authorizer.filter(request.principal, "describe", "topic", topics)
            shown = set(request.authorizer.filter(request.principal, "describe", "topic", list(unavailable)))
            unavailable = {name: why for name, why in unavailable.items() if name in shown}
        return ApiResponse.of({"topics": topics, "unavailable": unavailable})

    def _create_topic(self, request: ApiRequest, _: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(body, {"name", "schema", *CREATE_OPTIONS}, "a topic's settings")
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("a topic needs a name (a string)")
        if request.authorizer is not None:  # on the name as the principal said it
            authorization.check_create(request.authorizer, request.principal, name)
        name = request.namespace.topic(name)  # never one of another namespace (decision 0028)
        options = {field: body[field] for field in CREATE_OPTIONS if field in body}
        if body.get("schema") is not None:
            options["schema"] = body["schema"]
        info = self._create(name, **options)
        return ApiResponse.of(info.to_json(), 201)

    def _describe_topic(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        return ApiResponse.of(self.engine.describe_topic(parameters["topic"]).to_json())

    def _alter_topic(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(body, set(TOPIC_SETTINGS), "settings alter takes")
        return ApiResponse.of(self.engine.alter_topic(parameters["topic"], **body).to_json())

    def _delete_topic(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        self.engine.delete_topic(parameters["topic"])
        return ApiResponse.of({"deleted": parameters["topic"]})

    def _schema(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        topic = parameters["topic"]
        info = self.engine.get_schema(topic)
        subject = urllib.parse.quote(topic + "-value", safe="")
        document: dict[str, Any] = {
            "topic": topic,
            "schema": None,
            "registry": {
                "subject": topic + "-value",
                "versions": f"/subjects/{subject}/versions",
                "latest": f"/subjects/{subject}/versions/latest",
            },
        }
        if info is not None:
            document["schema"] = {
                "version": info.version,
                "id": info.id,
                "kind": info.kind,
                "compatibility": info.compatibility,
                "text": info.text,
            }
        return ApiResponse.of(document)

    # -- records ------------------------------------------------------------------------------

    def _produce(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(
            body, {"records", "expect", "expect_b64", "expect_offset", "producer"}, "a produce request"
        )
        rows = trace.with_context(
            input_rows(body.get("records"), limits.http_produce_records_max),
            trace.request_context(request.trace),
        )
        expect = _expectations(body)
        expect_offset = body.get("expect_offset")
        if expect_offset is not None and (
            isinstance(expect_offset, bool) or not isinstance(expect_offset, int)
        ):
            raise InvalidRequest(f"expect_offset must be an integer, got {expect_offset!r}")
        result = self.node.append(
            parameters["topic"], rows, expect=expect, expect_offset=expect_offset, producer=_producer(body)
        )
        return dataclasses.replace(ApiResponse.of(_append_document(result)), records=result.count)

    def _read(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        topic = parameters["topic"]
        offset = self._start(topic, request)
        limit = _int_query(request, "limit", 100, 1, limits.http_read_records_max)
        base64_values = _value_encoding(request)
        json_values = self.engine.get_schema(topic) is not None
        batches = self.engine.fetch(topic, offset, max_records=limit, value_format="json")
        return _records_page(topic, offset, batches, json_values=json_values, base64_values=base64_values)

    def _start(self, topic: str, request: ApiRequest) -> int:
        """The offset a read starts at: ``offset``, else ``time`` (ISO-8601: the first
        record at or after it), else ``start`` (earliest or latest; earliest by default)."""
        if "offset" in request.query:
            return self.engine.resolve_start(topic, _int_query(request, "offset", 0, 0, 2**63 - 1))
        if "time" in request.query:
            return self.engine.resolve_start(topic, _iso_time(request.query["time"]))
        start = request.query.get("start", "earliest")
        if start not in ("earliest", "latest"):
            raise InvalidRequest(
                f"start is earliest or latest, got {start!r} (use offset or time for others)"
            )
        return self.engine.resolve_start(topic, start)

    def _tail(self, request: ApiRequest, parameters: dict[str, str]) -> EventStream:
        topic = parameters["topic"]
        if request.last_event_id is not None:
            last = request.last_event_id.strip()
            if not last.isdigit():
                raise InvalidRequest(f"Last-Event-ID is the offset of the last event received, got {last!r}")
            start = self.engine.resolve_start(topic, int(last) + 1)
        elif any(name in request.query for name in ("offset", "time", "start")):
            start = self._start(topic, request)
        else:
            start = self.engine.resolve_start(topic, "latest")
        limit = _int_query(request, "limit", None, 1, 2**63 - 1)
        base64_values = _value_encoding(request)
        json_values = self.engine.get_schema(topic) is not None
        owner = request.owner
        self.streams.acquire(owner)
        return EventStream(
            self.engine,
            topic,
            start,
            limit=limit,
            json_values=json_values,
            base64_values=base64_values,
            heartbeat_seconds=limits.http_sse_heartbeat_seconds,
            batch_records_max=limits.http_read_records_max,
            stopping=self._draining.is_set,
            release=lambda: self.streams.release(owner),
        )

    # -- keys ------------------------------------------------------------------------------------

    def _key_version(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        key = decode_key(parameters["key"], request.query.get("key_encoding", "text"))
        version = self.engine.key_version(parameters["topic"], key)
        document: dict[str, Any] = {"topic": parameters["topic"]}
        put_bytes(document, "key", key)
        document["version"] = version
        return ApiResponse.of(document)

    def _read_key(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        topic = parameters["topic"]
        key = decode_key(parameters["key"], request.query.get("key_encoding", "text"))
        limit = _int_query(request, "limit", 100, 1, limits.http_read_records_max)
        if _bool_query(request, "from_snapshot"):
            if "from_version" in request.query or "to_version" in request.query:
                raise InvalidRequest(
                    "from_snapshot=true starts at the key's latest snapshot and ends at its latest "
                    "event: leave from_version and to_version out (read on from next_version "
                    "without from_snapshot)"
                )
            # The engine's read_key(from_snapshot=True), bounded as every read here: the
            # snapshot row and at most `limit` events after it.
            table = self.engine._topic(topic).snapshots.read_key(normalize_key(key), events_max=limit)
        else:
            from_version = _int_query(request, "from_version", 1, 1, 2**63 - 1)
            to_version = from_version + limit - 1
            to_given = _int_query(request, "to_version", None, 1, 2**63 - 1)
            if to_given is not None:
                to_version = min(to_version, to_given)
            table = self.engine.read_key(topic, key, from_version, to_version)
        schema_info = self.engine.get_schema(topic)
        base64_values = _value_encoding(request)
        records: list[dict[str, Any]] = []
        for batch in table.to_batches():
            if schema_info is not None:
                batch = self._json_values(topic, batch)
            records.extend(
                output_records(batch, json_values=schema_info is not None, base64_values=base64_values)
            )
        latest = self.engine.key_version(topic, key)
        next_version = records[-1]["version"] + 1 if records else None
        if next_version is not None and next_version > latest:
            next_version = None
        document: dict[str, Any] = {"topic": topic}
        put_bytes(document, "key", key)
        document.update({"version": latest, "records": records, "next_version": next_version})
        return dataclasses.replace(ApiResponse.of(document), records=len(records))

    def _snapshot(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        topic = parameters["topic"]
        key = decode_key(parameters["key"], request.query.get("key_encoding", "text"))
        body = _body_object(request)
        _refuse_unknown(body, {"version", "state", "state_b64"}, "a snapshot")
        if "version" not in body:
            raise InvalidRequest("a snapshot needs the version of the key its state covers")
        version: Any = body["version"]  # the engine checks what it is
        self.engine.snapshot(topic, key, _snapshot_state(body), version=version)
        document: dict[str, Any] = {"topic": topic}
        put_bytes(document, "key", key)
        document["version"] = version
        return ApiResponse.of(document)

    def _json_values(self, topic: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A typed batch of a schema'd topic with its values as JSON text (as a read
        with ``value_format="json"`` gives them); a snapshot row's value stays null."""
        presented = self.engine._topic(topic).present(batch, "json")
        if SNAPSHOT_COLUMN not in presented.schema.names:
            return presented
        index = presented.schema.get_field_index("value")
        values = presented.column(index)
        kept = pc.if_else(presented.column(SNAPSHOT_COLUMN), pa.scalar(None, values.type), values)
        return presented.set_column(index, presented.schema.field(index), kept)

    # -- groups ----------------------------------------------------------------------------------

    def _list_groups(self, request: ApiRequest, _: dict[str, str]) -> ApiResponse:
        listing = self.node.directory.listing()
        namespace = request.namespace  # its own groups only (decision 0028)
        listing = [entry for entry in listing if namespace.owns(entry.group)]
        if request.authorizer is not None:
            said = [namespace.local(entry.group) for entry in listing]
            allowed = set(request.authorizer.filter(request.principal, "describe", "group", said))
            shown = {entry.group for entry in listing if namespace.local(entry.group) in allowed}
            listing = [entry for entry in listing if entry.group in shown]
        return ApiResponse.of({"groups": [entry.to_json() for entry in listing]})

    def _describe_group(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        group = parameters["group"]
        try:
            return ApiResponse.of(self.node.directory.describe_group(group).to_json())
        except InvalidRequest:
            self._check_group(group, any_kind=True)
            raise

    def _delete_group(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        group = parameters["group"]
        try:
            self.node.directory.delete_group(group)
        except InvalidRequest:
            self._check_group(group, any_kind=True)
            raise
        return ApiResponse.of({"deleted": group})

    def _check_group(self, group: str, *, any_kind: bool = False, member: str | None = None) -> None:
        """_GroupNotFound (404) unless the group exists (a native group, or with
        ``any_kind`` a Kafka one too); InvalidRequest for a ``member`` id that cannot be one."""
        if member is not None:
            validate_member_id(member)
        if self.node.groups.exists(group):
            return
        if any_kind and group in {entry.group for entry in self.node.directory.listing()}:
            return
        raise _GroupNotFound(group)

    def _join(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(body, {"pattern", *MEMBER_OPTIONS}, "a member's options")
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise InvalidRequest("a member needs a pattern (a topic name or a pattern such as orders.>)")
        if request.authorizer is not None:
            authorization.check_pattern_read(request.authorizer, request.principal, pattern)
        namespace = request.namespace  # the engine's pattern and dead-letter topic (decision 0028)
        pattern = namespace.pattern(pattern)
        chosen = {name: body[name] for name in MEMBER_OPTIONS if name in body}
        if isinstance(chosen.get("dead_letter_topic"), str):
            chosen["dead_letter_topic"] = namespace.topic(chosen["dead_letter_topic"])
        options = GroupOptions.build(parameters["group"], pattern, **chosen)
        member = self.node.groups.join(parameters["group"], pattern, options, member_id=request.member)
        return ApiResponse.of(
            {"group": parameters["group"], "member": member, "options": options.to_json()}, 201
        )

    def _leave(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        self._check_group(parameters["group"], member=parameters["member"])
        left = self.node.groups.leave(parameters["group"], parameters["member"])
        if not left:
            from odradek.errors import UnknownMember

            raise UnknownMember(
                f"{parameters['member']} is not a member of group {parameters['group']!r}",
                parameters["group"],
                parameters["member"],
            )
        return ApiResponse.of({"left": parameters["member"]})

    def _poll(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request, empty_ok=True)
        _refuse_unknown(body, {"max_records", "timeout", "value_encoding"}, "a poll")
        max_records, timeout = check_poll(body.get("max_records", 100), body.get("timeout", 1.0))
        if timeout > limits.http_poll_seconds_max:
            raise InvalidRequest(
                f"a poll waits at most {limits.http_poll_seconds_max:g} s over HTTP, got {timeout!r}"
            )
        max_records = min(max_records, limits.http_read_records_max)
        self._check_group(parameters["group"], member=parameters["member"])
        encoding = body.get("value_encoding", "auto")
        if encoding not in ("auto", "base64"):
            raise InvalidRequest(f"value_encoding is auto or base64, got {encoding!r}")
        batches = self.node.groups.poll_batches(
            parameters["group"], parameters["member"], max_records, timeout
        )
        deliveries: list[dict[str, Any]] = []
        for batch in batches:
            documents = output_records(batch.records, json_values=False, base64_values=encoding == "base64")
            for document in documents:
                document["topic"] = batch.topic
                document["lease"] = batch.lease
            deliveries.extend(documents)
        return ApiResponse.of({"member": parameters["member"], "deliveries": deliveries})

    def _ack(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(body, {"deliveries"}, "an ack")
        self._check_group(parameters["group"], member=parameters["member"])
        result = self.node.groups.ack(
            parameters["group"], parameters["member"], _refs(body, request.namespace)
        )
        return ApiResponse.of(result.to_json())

    def _nack(self, request: ApiRequest, parameters: dict[str, str]) -> ApiResponse:
        body = _body_object(request)
        _refuse_unknown(body, {"deliveries", "delay"}, "a nack")
        delay = check_delay(body.get("delay", 0.0))
        self._check_group(parameters["group"], member=parameters["member"])
        refs = _refs(body, request.namespace)
        result = self.node.groups.nack(parameters["group"], parameters["member"], refs, delay)
        return ApiResponse.of(result.to_json())


# -- helpers -------------------------------------------------------------------------------------


def _body_object(request: ApiRequest, *, empty_ok: bool = False) -> dict[str, Any]:
    if not request.body.strip() and empty_ok:
        return {}
    try:
        document = json.loads(request.body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return document


def _refuse_unknown(body: Mapping[str, Any], known: set[str], what: str) -> None:
    unknown = body.keys() - known
    if unknown:
        raise InvalidRequest(f"unknown field(s) {sorted(unknown)} in {what}; known: {sorted(known)}")


def _records_page(
    topic: str, offset: int, batches: list[pa.RecordBatch], *, json_values: bool, base64_values: bool
) -> ApiResponse:
    """A read's answer: ``batches`` of ``topic`` read from ``offset`` (values as JSON
    text when ``json_values``, a schema'd topic's)."""
    texts = [
        records_json(batch, json_values=json_values, base64_values=base64_values)
        for batch in combined(batches)
    ]
    next_offset = int(batches[-1].column("offset")[-1].as_py()) + 1 if batches else offset
    records = ", ".join(texts)
    body = f'{{"topic": {json.dumps(topic)}, "records": [{records}], "next_offset": {next_offset}}}\n'
    return ApiResponse(200, body.encode(), records=sum(batch.num_rows for batch in batches))


def read_from_store(
    request: ApiRequest, replica_of: Callable[[str], CellReplica | None]
) -> ApiResponse | None:
    """``GET /v1/topics/{topic}/records?offset=N`` of a topic whose cell another agent
    serves, answered from the cell's sealed segments in the store (decision 0042) when
    they hold the offset, as that cell's API would answer it: the principal authorized
    on the name it says, a tenant's name translated. None for any other request, and
    whenever the store cannot answer all of it (a refusal included): the caller
    forwards the request to the agent serving the cell, which answers (or refuses) it.
    ``replica_of``: the reader of the store of a topic's cell, by the engine's name."""
    started = time.perf_counter()
    segments = [urllib.parse.unquote(part) for part in request.path.strip("/").split("/")]
    if (
        request.method.upper() != "GET"
        or len(segments) != 4
        or segments[:2] != ["v1", "topics"]
        or segments[3] != "records"
        or "offset" not in request.query
    ):
        return None
    parameters = {"topic": segments[2]}
    try:
        if request.authorizer is not None:  # on the name the principal said
            authorization.check_route(request.authorizer, request.principal, "_read", parameters)
        topic = request.namespace.topic(parameters["topic"])
        offset = _int_query(request, "offset", 0, 0, 2**63 - 1)
        limit = _int_query(request, "limit", 100, 1, limits.http_read_records_max)
        base64_values = _value_encoding(request)
        replica = replica_of(topic)
        files = replica.topic(topic) if replica is not None else None
    except (OdradekError, OSError):
        return None
    if replica is None or files is None:
        return None
    batches = replica.fetch(
        topic,
        offset,
        max_records=limit,
        max_bytes=defaults.fetch_bytes_max,
        value_format="json",
        incarnation=files.incarnation,
    )
    if not batches:
        return None
    page = _records_page(
        parameters["topic"],
        offset,
        batches,
        json_values=files.schema is not None,
        base64_values=base64_values,
    )
    elapsed = time.perf_counter() - started
    observe.request("http", "read", "ok", elapsed, records_out=page.records, bytes_out=len(page.body))
    return page


def _int_query(request: ApiRequest, name: str, default: Any, low: int, high: int) -> Any:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def _bool_query(request: ApiRequest, name: str) -> bool:
    text = request.query.get(name)
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise InvalidRequest(f"{name} is true or false, got {text!r}")


def _snapshot_state(body: Mapping[str, Any]) -> bytes:
    """A snapshot's state: ``state`` as UTF-8 text or ``state_b64`` (base64), one of them."""
    text, encoded = body.get("state"), body.get("state_b64")
    if text is not None and encoded is not None:
        raise InvalidRequest("a snapshot has both state and state_b64: give one")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise InvalidRequest(f"state_b64 must be a base64 string, got {type(encoded).__name__}")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("state_b64 is not valid base64") from None
    if text is None:
        raise InvalidRequest("a snapshot needs its state: state (UTF-8 text) or state_b64 (base64 bytes)")
    if not isinstance(text, str):
        raise InvalidRequest(
            f"state must be a string (its UTF-8 bytes; a JSON state is sent as its text), "
            f"got {type(text).__name__}"
        )
    return text.encode()


def _iso_time(text: str) -> Any:
    import datetime

    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidRequest(f"time is ISO-8601 with an offset (2026-01-31T12:00:00Z), got {text!r}")
    return parsed


def _value_encoding(request: ApiRequest) -> bool:
    """Whether values are asked for as base64 (``value_encoding=base64``)."""
    encoding = request.query.get("value_encoding", "auto")
    if encoding not in ("auto", "base64"):
        raise InvalidRequest(f"value_encoding is auto or base64, got {encoding!r}")
    return encoding == "base64"


def _expectations(body: Mapping[str, Any]) -> dict[bytes, int] | None:
    expect: dict[bytes, int] = {}
    for field, encoding in (("expect", "text"), ("expect_b64", "base64")):
        given = body.get(field)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise InvalidRequest(f"{field} must be an object of key to version")
        for key, version in given.items():
            if isinstance(version, bool) or not isinstance(version, int):
                raise InvalidRequest(
                    f"{field}: the version of key {key!r} must be an integer, got {version!r}"
                )
            expect[decode_key(key, encoding)] = version
    return expect or None


def _producer(body: Mapping[str, Any]) -> tuple[str, int] | None:
    producer = body.get("producer")
    if producer is None:
        return None
    if not isinstance(producer, dict) or set(producer) != {"id", "sequence"}:
        raise InvalidRequest('producer is {"id": "<producer id>", "sequence": <int>}')
    producer_id, sequence = producer["id"], producer["sequence"]
    if not isinstance(producer_id, str) or isinstance(sequence, bool) or not isinstance(sequence, int):
        raise InvalidRequest("a producer's id is a string and its sequence an integer")
    return producer_id, sequence


def _append_document(result: AppendResult) -> dict[str, Any]:
    versions: dict[str, int] = {}
    versions_b64: dict[str, int] = {}
    for key, version in result.versions.items():  # one entry per key of the append
        document: dict[str, Any] = {}
        put_bytes(document, "key", key)
        if "key" in document:
            versions[document["key"]] = version
        else:
            versions_b64[document["key_b64"]] = version
    answer: dict[str, Any] = {
        "base_offset": result.base_offset,
        "count": result.count,
        "next_offset": result.next_offset,
        "duplicate": result.duplicate,
        "versions": versions,
    }
    if versions_b64:
        answer["versions_b64"] = versions_b64
    return answer


def _refs(body: Mapping[str, Any], namespace: Namespace = RAW) -> list[DeliveryRef]:
    deliveries = body.get("deliveries")
    if not isinstance(deliveries, list):
        raise InvalidRequest('deliveries is an array of {"topic", "offset", "lease"} as poll returned them')
    refs = []
    for index, delivery in enumerate(deliveries):
        if not isinstance(delivery, dict):
            raise InvalidRequest(f"delivery {index} must be an object with topic, offset and lease")
        topic, offset, lease = delivery.get("topic"), delivery.get("offset"), delivery.get("lease")
        if (
            not isinstance(topic, str)
            or isinstance(offset, bool)
            or not isinstance(offset, int)
            or isinstance(lease, bool)
            or not isinstance(lease, int)
        ):
            raise InvalidRequest(
                f"delivery {index} must have a topic (string), an offset and a lease (integers)"
            )
        refs.append(DeliveryRef(topic if namespace.raw else namespace.topic(topic), offset, lease))
    return refs


# Answers that name topics and groups but hold no records: every name in them is said as
# the tenant says it (security/tenants.py's local_value).
_NAMES_ONLY = frozenset(
    {
        "_describe_topic",
        "_alter_topic",
        "_create_topic",
        "_delete_topic",
        "_list_groups",
        "_describe_group",
        "_delete_group",
        "_join",
        "_ack",
        "_nack",
        "_key_version",
    }
)


def _local_answer(
    namespace: Namespace, handler: str, answer: ApiResponse | EventStream
) -> ApiResponse | EventStream:
    """A tenant's answer with the engine's names as it says them (decision 0028); the
    records of a read or a poll are left as they are, only their topic changes."""
    if isinstance(answer, EventStream) or not answer.body.strip() or answer.status >= 400:
        return answer
    if handler not in _NAMES_ONLY and handler not in ("_read", "_read_key", "_snapshot", "_poll", "_schema"):
        return answer
    document = json.loads(answer.body)
    if handler in _NAMES_ONLY:
        document = namespace.local_value(document)
    elif handler == "_poll":
        for delivery in document.get("deliveries", []):
            delivery["topic"] = namespace.local(delivery["topic"])
    elif handler == "_schema":
        document["topic"] = namespace.local(document["topic"])
        document["registry"] = {
            key: namespace.local_text(value) for key, value in document["registry"].items()
        }
    else:
        document["topic"] = namespace.local(document["topic"])
    return dataclasses.replace(answer, body=(json.dumps(document) + "\n").encode())


def error_response(code: str, message: str, status: int) -> ApiResponse:
    """An error the shell makes itself (a body too large, a missing length)."""
    headers = (("Retry-After", str(RETRY_AFTER_SECONDS)),) if status == 503 else ()
    return ApiResponse(status, error_body(code, message), headers=headers)


def _rechecked(
    answer: ApiResponse | EventStream, request: ApiRequest, name: str, parameters: dict[str, str]
) -> ApiResponse | EventStream:
    """An event stream checks its route's authorization again, on the names the
    principal said, when the bindings change (security/revalidation.py)."""
    authorizer = request.authorizer
    if isinstance(answer, EventStream) and authorizer is not None:

        def authorize(who: Principal) -> None:
            if not who.admin:
                authorization.check_route(authorizer, who, name, parameters)

        answer.authorize = authorize
    return answer
