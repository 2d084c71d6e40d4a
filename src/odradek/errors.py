"""The public error hierarchy of Odradek, in one place.

Every refusal the engine, a server or a client makes is one of these classes, so a
caller catches by meaning, never by message text. Each class says whether a retry of
the same request can succeed (``retryable``) and carries a stable ``code`` that crosses
the wire unchanged: a remote client re-raises the same class with the same attributes.

    OdradekError
    ├── InvalidRequest            the request itself is wrong (bad name, bad batch, bad option)
    │   ├── SchemaViolation       a record does not conform to the topic's schema
    │   ├── InvalidSchema         a schema cannot be parsed or stored as columns
    │   ├── IncompatibleSchema    a schema change breaks the topic's compatibility mode
    │   ├── RequestTooLarge       over a configured size limit
    │   ├── SequenceError         an idempotent producer's sequence has a gap or went back
    │   ├── UnknownMember         a consumer-group member left or expired; join again
    │   └── ViewNotFound          no view of that name
    ├── TopicNotFound
    ├── TopicExists
    ├── ConflictError             an expectation (`expect`, `expect_offset`) failed
    ├── OffsetOutOfRange          a read started outside [first offset, next offset]
    ├── QuotaExceeded             a tenant's stored bytes are at its storage_bytes quota: appends refused
    ├── WaitTimeout               an append is durable, but its wait_for waiters did not finish in time
    ├── StorageError              the disk refused (full, I/O error); nothing was acknowledged
    │   ├── DataDamaged           stored data is damaged (checksums); an operator must decide
    │   └── Fenced                another agent took over the object store: no more writes here
    ├── Unauthenticated           no credentials, or credentials the server does not accept
    ├── Unauthorized              the principal may not do this (e.g. manage users without admin)
    ├── Unavailable               the server cannot be reached or is shutting down (retryable)
    │   └── NotOwner              a cluster agent that does not own the data: ask the owner it names
    └── ClosedError               the client or engine was closed
"""

from __future__ import annotations

from typing import Any


class OdradekError(Exception):
    """Base class of every error Odradek raises on purpose."""

    code = "error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Attributes beyond the message that must survive a trip across the wire."""
        return {}


class InvalidRequest(OdradekError):
    """The request is malformed or asks for something that is not allowed."""

    code = "invalid_request"


class SchemaViolation(InvalidRequest):
    """A record does not conform to the topic's schema; nothing of the append was written."""

    code = "schema_violation"

    def __init__(self, message: str, index: int | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.path = path

    def details(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path}


class InvalidSchema(InvalidRequest):
    """A schema that cannot be parsed, is not supported for columnar storage, or breaks
    a bound; the message says what and where (a path into the schema document)."""

    code = "invalid_schema"


class IncompatibleSchema(InvalidRequest):
    """A schema change that breaks the topic's compatibility mode; the topic keeps its
    last good schema. ``problems`` lists what breaks, one readable line each."""

    code = "incompatible_schema"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def details(self) -> dict[str, Any]:
        return {"problems": self.problems}


class RequestTooLarge(InvalidRequest):
    """The request exceeds a configured limit (append bytes, record count, message size)."""

    code = "request_too_large"


class SequenceError(InvalidRequest):
    """An idempotent producer's sequence skipped ahead or went back past what is remembered."""

    code = "sequence_error"

    def __init__(self, message: str, producer_id: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.producer_id = producer_id
        self.expected = expected
        self.actual = actual

    def details(self) -> dict[str, Any]:
        return {"producer_id": self.producer_id, "expected": self.expected, "actual": self.actual}


class UnknownMember(InvalidRequest):
    """A consumer-group member that left, or made no call for ``ack_timeout`` seconds
    and was removed. Its deliveries went back to the group; join again to continue."""

    code = "unknown_member"

    def __init__(self, message: str, group: str | None = None, member: str | None = None) -> None:
        super().__init__(message)
        self.group = group
        self.member = member

    def details(self) -> dict[str, Any]:
        return {"group": self.group, "member": self.member}


class TopicNotFound(OdradekError):
    code = "topic_not_found"

    def __init__(self, message: str, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic

    def details(self) -> dict[str, Any]:
        return {"topic": self.topic}


class TopicExists(OdradekError):
    code = "topic_exists"

    def __init__(self, message: str, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic

    def details(self) -> dict[str, Any]:
        return {"topic": self.topic}


class ConflictError(OdradekError):
    """An expectation failed; nothing of the append was written.

    For a key expectation ``key`` is the key and ``expected``/``actual`` are versions.
    For ``expect_offset`` ``key`` is None and ``expected``/``actual`` are next offsets.
    """

    code = "conflict"

    def __init__(self, message: str, key: bytes | None, expected: int, actual: int) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.actual = actual

    def details(self) -> dict[str, Any]:
        key = self.key.hex() if self.key is not None else None
        return {"key_hex": key, "expected": self.expected, "actual": self.actual}


class OffsetOutOfRange(OdradekError):
    code = "offset_out_of_range"

    def __init__(self, message: str, requested: int, first: int, next_offset: int) -> None:
        super().__init__(message)
        self.requested = requested
        self.first = first
        self.next_offset = next_offset

    def details(self) -> dict[str, Any]:
        return {"requested": self.requested, "first": self.first, "next_offset": self.next_offset}


class QuotaExceeded(OdradekError):
    """An append to a tenant's topic while the tenant's stored bytes are at or over its
    ``storage_bytes`` quota (security/quotas.py): nothing of it was written. Not
    retryable as it is: the tenant deletes topics or records (or retention and
    compaction free space), or an admin raises the quota. ``tenant`` is named as the
    admin names it, ``used`` and ``quota`` are bytes."""

    code = "quota_exceeded"

    def __init__(self, message: str, tenant: str | None = None, used: int = 0, quota: int = 0) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.used = used
        self.quota = quota

    def details(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "used": self.used, "quota": self.quota}


class StorageError(OdradekError):
    """The storage refused a write or a read (disk full, I/O error, corruption)."""

    code = "storage_error"
    retryable = True


class DataDamaged(StorageError):
    """Stored data failed its checks (a checksum, a truncated or missing file): what is
    damaged is named in the message; a retry does not help until an operator acts
    (``odradek topic verify`` / ``repair``)."""

    code = "data_damaged"
    retryable = False


class Fenced(StorageError):
    """Another agent started on this agent's object store and took it over: this agent
    refuses every write from now on (it still serves reads). Not retryable here: write to
    the agent that took over (decision record 0011, "Epochs and fencing")."""

    code = "fenced"
    retryable = False


class Unauthenticated(OdradekError):
    """The door asks for credentials and got none, or credentials it does not accept
    (unknown user, wrong password, an expired or revoked token): nothing was done. The
    message never repeats a secret."""

    code = "unauthenticated"


class Unauthorized(OdradekError):
    """The authenticated principal is not allowed to do this; nothing was done."""

    code = "unauthorized"


class Unavailable(OdradekError):
    code = "unavailable"
    retryable = True


class NotOwner(Unavailable):
    """This cluster agent does not own the data the request is for (it is a standby):
    nothing was done. ``owner`` is where the owner serves (``grpc://host:port``) and
    ``agent`` its id; both None while no agent owns it (a failover in progress). A
    client retries against the owner (decision record 0013)."""

    code = "not_owner"

    def __init__(self, message: str, owner: str | None = None, agent: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner
        self.agent = agent

    def details(self) -> dict[str, Any]:
        return {"owner": self.owner, "agent": self.agent}


class ClosedError(OdradekError):
    code = "closed"


class ViewNotFound(InvalidRequest):
    """There is no view of that name (``create_view`` makes one)."""

    code = "view_not_found"

    def __init__(self, message: str, view: str | None = None) -> None:
        super().__init__(message)
        self.view = view

    def details(self) -> dict[str, Any]:
        return {"view": self.view}


class WaitTimeout(OdradekError):
    """An append with ``wait_for`` is written and durable, but some of its waiters had
    not processed it when the timeout ran out (or cannot: a view stopped on an error).
    ``pending`` names them (``"group:billing"``, ``"view:balances"``); ``result`` is
    the append's AppendResult. Do not append again: wait, or read the view later."""

    code = "wait_timeout"

    def __init__(self, message: str, pending: list[str] | None = None, result: Any = None) -> None:
        super().__init__(message)
        self.pending = list(pending or [])
        self.result = result

    def details(self) -> dict[str, Any]:
        return {"pending": self.pending}


_BY_CODE: dict[str, type[OdradekError]] = {
    cls.code: cls
    for cls in (
        OdradekError,
        InvalidRequest,
        SchemaViolation,
        InvalidSchema,
        IncompatibleSchema,
        RequestTooLarge,
        SequenceError,
        UnknownMember,
        TopicNotFound,
        TopicExists,
        ConflictError,
        OffsetOutOfRange,
        QuotaExceeded,
        StorageError,
        DataDamaged,
        Fenced,
        Unauthenticated,
        Unauthorized,
        Unavailable,
        NotOwner,
        ClosedError,
        ViewNotFound,
        WaitTimeout,
    )
}


def to_wire(error: OdradekError) -> dict[str, Any]:
    """A JSON-able description of an error, for the doors to send."""
    return {"code": error.code, "message": error.message, "details": error.details()}


def from_wire(payload: dict[str, Any]) -> OdradekError:
    """Rebuild the error a door sent with :func:`to_wire`, same class and attributes."""
    cls = _BY_CODE.get(str(payload.get("code")), OdradekError)
    message = str(payload.get("message", "unknown error"))
    details = payload.get("details") or {}
    if cls is ConflictError:
        key_hex = details.get("key_hex")
        key = bytes.fromhex(key_hex) if key_hex is not None else None
        return ConflictError(message, key, int(details["expected"]), int(details["actual"]))
    if cls is SchemaViolation:
        return SchemaViolation(message, details.get("index"), details.get("path"))
    if cls is IncompatibleSchema:
        return IncompatibleSchema(message, [str(p) for p in details.get("problems") or []])
    if cls is SequenceError:
        return SequenceError(
            message, str(details["producer_id"]), int(details["expected"]), int(details["actual"])
        )
    if cls is ViewNotFound:
        return ViewNotFound(message, details.get("view"))
    if cls is WaitTimeout:
        return WaitTimeout(message, [str(p) for p in details.get("pending") or []])
    if cls is UnknownMember:
        return UnknownMember(message, details.get("group"), details.get("member"))
    if cls is NotOwner:
        owner, agent = details.get("owner"), details.get("agent")
        return NotOwner(message, None if owner is None else str(owner), None if agent is None else str(agent))
    if cls in (TopicNotFound, TopicExists):
        return cls(message, details.get("topic"))
    if cls is QuotaExceeded:
        tenant = details.get("tenant")
        return QuotaExceeded(
            message,
            None if tenant is None else str(tenant),
            int(details.get("used") or 0),
            int(details.get("quota") or 0),
        )
    if cls is OffsetOutOfRange:
        return OffsetOutOfRange(
            message, int(details["requested"]), int(details["first"]), int(details["next_offset"])
        )
    return cls(message)
