"""The Schema Registry REST API as Confluent's clients call it, without IO.

A :class:`Request` (method, path, query, body bytes) goes in, a :class:`Response`
(status, JSON body) comes out; the HTTP shell in ``server.py`` only moves bytes.

Theory of operation:

* A subject named ``<topic>-value`` (Confluent's TopicNameStrategy) *is* the topic's
  value schema: its versions are the topic's schema versions, registering under it
  sets the topic's schema (creating the topic when it does not exist), its
  compatibility config is the topic's mode. Its history is append-only: deleting the
  subject or a version is refused; deleting the topic deletes its schema.
* Every other subject lives in the :class:`~odradek.protocols.registry.subjects.SubjectStore`,
  checked for compatibility here with the same compiler and checker the engine uses.
* Schema ids are global, from the engine: the same (kind, canonical text) has the same
  id in every subject and topic.
* Every refusal is Confluent's JSON error ``{"error_code": N, "message": "..."}`` with
  Confluent's codes; the HTTP status is the code's first three digits.
* Dispatch is a table of path patterns, each with a handler per method.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import pyarrow as pa

from odradek import limits
from odradek.errors import (
    IncompatibleSchema,
    InvalidRequest,
    InvalidSchema,
    OdradekError,
    TopicExists,
    TopicNotFound,
    Unavailable,
    ViewNotFound,
)
from odradek.names import validate_topic_name
from odradek.protocols.registry.subjects import (
    DEFAULT_COMPATIBILITY,
    RegistryError,
    StoredVersion,
    SubjectStore,
    subject_not_found,
    version_not_found,
)
from odradek.schemas.model import CompiledSchema
from odradek.types import SchemaInfo

log = logging.getLogger("odradek.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent's TopicNameStrategy names a topic's value subject "<topic>-value".
VALUE_SUBJECT_SUFFIX = "-value"

# Schema languages a client may register; Odradek's ARROW schemas are native only.
REGISTRY_KINDS = ("AVRO", "JSON")

COMPATIBILITY_MODES = (
    "backward",
    "backward_transitive",
    "forward",
    "forward_transitive",
    "full",
    "full_transitive",
    "none",
)

# Confluent's version ids are positive 32-bit integers.
version_number_max = 2**31 - 1

compiled_cache_entries_max = limits.registry_compiled_cache_entries_max


# -- requests and responses --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b""


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = CONTENT_TYPE

    @classmethod
    def of(cls, document: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(document).encode())

    @classmethod
    def error(cls, status: int, error_code: int, message: str) -> Response:
        return cls.of({"error_code": error_code, "message": message}, status)

    def document(self) -> Any:
        return json.loads(self.body)


# -- what the routes call ------------------------------------------------------------------


class RegistryBackend(Protocol):
    """The engine's schema API, as much of it as the registry uses."""

    def list_topics(self, pattern: str | None = None) -> list[str]: ...
    def create_topic(self, name: str, *, schema: object = None, compatibility: str = ...) -> object: ...
    def set_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> SchemaInfo: ...
    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None: ...
    def schema_versions(self, topic: str) -> Sequence[SchemaInfo]: ...
    def check_schema(self, topic: str, schema: object, *, compatibility: str | None = None) -> list[str]: ...
    def set_compatibility(self, topic: str, mode: str) -> None: ...
    def schema_by_id(self, schema_id: int) -> tuple[str, str] | None: ...
    def schema_id_for(self, kind: str, text: str) -> int: ...
    def schema_subjects_of(self, schema_id: int) -> list[tuple[str, int]]: ...


class SchemaLanguages(Protocol):
    """Compiling a schema and checking one against earlier ones."""

    def compile(self, text: str, kind: str | None) -> CompiledSchema: ...
    def check(self, history: list[pa.StructType], new: pa.StructType, mode: str) -> list[str]: ...


class OdradekSchemaLanguages:
    """The engine's own compiler and compatibility checker."""

    def compile(self, text: str, kind: str | None) -> CompiledSchema:
        from odradek.schemas import compile_schema

        return compile_schema(text, kind)

    def check(self, history: list[pa.StructType], new: pa.StructType, mode: str) -> list[str]:
        from odradek.schemas.compat import check

        return check(history, new, mode)


@dataclasses.dataclass(frozen=True)
class _Submitted:
    """A schema from a request body: its declared kind, its text, its parsed JSON."""

    kind: str
    text: str
    document: Any


Handler = Callable[[Request, dict[str, str]], Response]


# -- the registry ------------------------------------------------------------------------


class Registry:
    """Answers Schema Registry requests over an engine and a subject store."""

    def __init__(
        self,
        backend: RegistryBackend,
        subjects: SubjectStore,
        languages: SchemaLanguages | None = None,
    ) -> None:
        self.backend = backend
        self.subjects = subjects
        self.languages: SchemaLanguages = languages or OdradekSchemaLanguages()
        self._value_types: dict[tuple[str, str], pa.StructType] = {}
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
            ((), {"GET": self._root}),
            (("subjects",), {"GET": self._list_subjects}),
            (("subjects", "{subject}"), {"POST": self._lookup, "DELETE": self._delete_subject}),
            (("subjects", "{subject}", "versions"), {"GET": self._list_versions, "POST": self._register}),
            (
                ("subjects", "{subject}", "versions", "{version}"),
                {"GET": self._get_version, "DELETE": self._delete_version},
            ),
            (("subjects", "{subject}", "versions", "{version}", "schema"), {"GET": self._get_version_text}),
            (
                ("subjects", "{subject}", "versions", "{version}", "referencedby"),
                {"GET": self._referenced_by},
            ),
            (("schemas", "types"), {"GET": self._schema_types}),
            (("schemas", "ids", "{id}"), {"GET": self._get_by_id}),
            (("schemas", "ids", "{id}", "schema"), {"GET": self._get_text_by_id}),
            (("schemas", "ids", "{id}", "subjects"), {"GET": self._subjects_by_id}),
            (("schemas", "ids", "{id}", "versions"), {"GET": self._versions_by_id}),
            (("schemas", "guids", "{guid}"), {"GET": self._get_by_guid}),
            (("compatibility", "subjects", "{subject}", "versions"), {"POST": self._test_compatibility}),
            (
                ("compatibility", "subjects", "{subject}", "versions", "{version}"),
                {"POST": self._test_compatibility},
            ),
            (
                ("config",),
                {
                    "GET": self._get_default_config,
                    "PUT": self._put_default_config,
                    "DELETE": self._reset_config,
                },
            ),
            (
                ("config", "{subject}"),
                {"GET": self._get_config, "PUT": self._put_config, "DELETE": self._delete_config},
            ),
            (("mode",), {"GET": self._get_mode, "PUT": self._put_mode}),
            (("mode", "{subject}"), {"GET": self._get_mode, "PUT": self._put_mode, "DELETE": self._get_mode}),
            (("contexts",), {"GET": self._contexts}),
            (("associations", "resources", "{namespace}", "{name}"), {"GET": self._associations}),
            # The JSON API's first route (DESIGN §3, --http-listen): a view's key.
            (("v1", "views", "{view}", "keys", "{key}"), {"GET": self._view_key}),
        ]

    def handle(self, request: Request) -> Response:
        """One request, one response; never raises."""
        try:
            handler, parameters = self._match(request)
            return handler(request, parameters)
        except RegistryError as exc:
            return Response.error(exc.status, exc.error_code, exc.message)
        except OdradekError as exc:
            return _translate(exc)
        except Exception:
            log.exception("registry request failed", extra={"fields": {"path": request.path}})
            return Response.error(500, 50001, "Error in the backend data store")

    def _match(self, request: Request) -> tuple[Handler, dict[str, str]]:
        segments = [urllib.parse.unquote(part) for part in request.path.strip("/").split("/") if part]
        for pattern, handlers in self._routes:
            if len(pattern) != len(segments):
                continue
            parameters: dict[str, str] = {}
            for expected, actual in zip(pattern, segments):
                if expected.startswith("{"):
                    parameters[expected[1:-1]] = actual
                elif expected != actual:
                    break
            else:
                handler = handlers.get(request.method.upper())
                if handler is None:
                    raise RegistryError(405, 405, "HTTP 405 Method Not Allowed")
                return handler, parameters
        raise RegistryError(404, 404, "HTTP 404 Not Found")

    # -- subjects and versions ------------------------------------------------------------

    def _list_subjects(self, request: Request, _: dict[str, str]) -> Response:
        include_deleted = _flag(request, "deleted")
        deleted_only = _flag(request, "deleted_only")
        stored_live = set(self.subjects.names())
        if deleted_only:
            names = set(self.subjects.names(include_deleted=True)) - stored_live
        else:
            names = set(self.subjects.names(include_deleted=include_deleted)) | set(self._topic_subjects())
        prefix = request.query.get("subjectPrefix", "")
        chosen = sorted(name for name in names if name.startswith(prefix))
        return Response.of(_page(request, chosen))

    def _topic_subjects(self) -> list[str]:
        """``<topic>-value`` of every topic that has a schema."""
        subjects = []
        for topic in self.backend.list_topics():  # a loop over topics, not records
            try:
                if self.backend.get_schema(topic) is not None:
                    subjects.append(topic + VALUE_SUBJECT_SUFFIX)
            except TopicNotFound:
                continue  # deleted between the listing and the look
        return subjects

    def _list_versions(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        if _flag(request, "deleted_only"):
            every = self._versions(subject, include_deleted=True)
            numbers = [version.version for version in every if version.deleted]
        else:
            versions = self._versions(subject, include_deleted=_flag(request, "deleted"))
            numbers = [version.version for version in versions]
        return Response.of(_page(request, numbers))

    def _get_version(self, request: Request, parameters: dict[str, str]) -> Response:
        version = self._version(parameters["subject"], parameters["version"], _flag(request, "deleted"))
        return Response.of(_version_document(version))

    def _get_version_text(self, request: Request, parameters: dict[str, str]) -> Response:
        version = self._version(parameters["subject"], parameters["version"], _flag(request, "deleted"))
        return Response(200, version.text.encode())

    def _referenced_by(self, request: Request, parameters: dict[str, str]) -> Response:
        self._version(parameters["subject"], parameters["version"], include_deleted=True)
        return Response.of([])  # schema references are not supported, so nothing refers

    def _versions(self, subject: str, *, include_deleted: bool = False) -> list[StoredVersion]:
        """The subject's versions, oldest first; 40401 when it has none."""
        topic = topic_of(subject)
        if topic is not None:
            try:
                infos = self.backend.schema_versions(topic)
            except TopicNotFound:
                raise subject_not_found(subject) from None
            versions = [_from_topic(subject, info) for info in infos]
        else:
            versions = self.subjects.versions(subject, include_deleted=include_deleted) or []
        if not versions:
            raise subject_not_found(subject)
        return versions

    def _version(self, subject: str, text: str, include_deleted: bool = False) -> StoredVersion:
        number = _version_number(text)
        versions = self._versions(subject, include_deleted=include_deleted)
        if number is None:
            live = [version for version in versions if not version.deleted]
            if not live:
                raise version_not_found(subject, text)
            return live[-1]
        for version in versions:
            if version.version == number:
                return version
        raise version_not_found(subject, number)

    # -- registering and looking up ------------------------------------------------------

    def _register(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        submitted = _submitted_schema(request)
        topic = topic_of(subject)
        if topic is not None:
            version = self._register_in_topic(subject, topic, submitted)
        else:
            version = self._register_in_store(subject, submitted)
        return Response.of(_version_document(version))

    def _register_in_topic(self, subject: str, topic: str, submitted: _Submitted) -> StoredVersion:
        try:
            validate_topic_name(topic)
        except InvalidRequest as exc:
            raise RegistryError(422, 42208, f"Invalid subject '{subject}': {exc.message}") from None
        self._compile_as_engine_reads(submitted)
        # A topic's first schema takes the mode set for the subject beforehand, else the
        # registry default; later ones keep the topic's mode.
        pending = self.subjects.compatibility(subject)
        first_mode = pending or self.subjects.default_compatibility
        try:
            mode = first_mode if self._topic_schema(topic) is None else None
            info = self.backend.set_schema(topic, submitted.document, compatibility=mode)
        except TopicNotFound:
            try:
                self.backend.create_topic(topic, schema=submitted.document, compatibility=first_mode)
            except TopicExists:  # created meanwhile by another request
                info = self.backend.set_schema(topic, submitted.document)
            else:
                created = self.backend.get_schema(topic)
                if created is None:
                    raise RegistryError(
                        500, 50001, f"topic '{topic}' was created without its schema"
                    ) from None
                info = created
        if pending is not None:
            self.subjects.set_compatibility(subject, None)  # the topic holds its mode now
        return _from_topic(subject, info)

    def _register_in_store(self, subject: str, submitted: _Submitted) -> StoredVersion:
        with self.subjects.lock:
            compiled = self.languages.compile(submitted.text, submitted.kind)
            live = self.subjects.versions(subject) or []
            for version in live:
                if version.kind == compiled.kind and version.text == compiled.text:
                    return version
            mode = self._mode_of(subject)
            problems = self._problems(live, compiled, mode)
            if problems:
                raise _incompatible(subject, mode, problems)
            schema_id = self.backend.schema_id_for(compiled.kind, compiled.text)
            return self.subjects.add_version(subject, compiled.kind, compiled.text, schema_id)

    def _lookup(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        submitted = _submitted_schema(request)
        versions = self._versions(subject, include_deleted=_flag(request, "deleted"))
        compiled = self.languages.compile(submitted.text, submitted.kind)
        for version in versions:
            if version.kind == compiled.kind and version.text == compiled.text:
                return Response.of(_version_document(version))
        raise RegistryError(404, 40403, "Schema not found")

    def _compile_as_engine_reads(self, submitted: _Submitted) -> CompiledSchema:
        """Compile the way the engine will (it tells the language from the document) and
        refuse a schema it would read as another language than ``schemaType`` says."""
        compiled = self.languages.compile(submitted.text, None)
        if compiled.kind != submitted.kind:
            raise RegistryError(
                422,
                42201,
                f"Invalid schema: schemaType is {submitted.kind} but the schema reads as {compiled.kind}",
            )
        return compiled

    # -- deleting -----------------------------------------------------------------------

    def _delete_subject(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        _refuse_topic_deletion(subject)
        return Response.of(self.subjects.delete_subject(subject, permanent=_flag(request, "permanent")))

    def _delete_version(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        _refuse_topic_deletion(subject)
        number = _version_number(parameters["version"])
        if number is None:
            number = self._version(subject, "latest").version
        deleted = self.subjects.delete_version(subject, number, permanent=_flag(request, "permanent"))
        return Response.of(deleted)

    # -- schemas by id ------------------------------------------------------------------

    def _schema_of_id(self, text: str) -> tuple[int, str, str]:
        try:
            schema_id = int(text)
        except ValueError:
            schema_id = -1
        found = self.backend.schema_by_id(schema_id) if schema_id > 0 else None
        if found is None:
            raise RegistryError(404, 40403, f"Schema {text} not found")
        return schema_id, found[0], found[1]

    def _get_by_id(self, request: Request, parameters: dict[str, str]) -> Response:
        _, kind, text = self._schema_of_id(parameters["id"])
        document: dict[str, Any] = {"schema": text}
        if kind != "AVRO":
            document["schemaType"] = kind
        return Response.of(document)

    def _get_text_by_id(self, request: Request, parameters: dict[str, str]) -> Response:
        _, _, text = self._schema_of_id(parameters["id"])
        return Response(200, text.encode())

    def _uses_of(self, request: Request, schema_id: int) -> list[tuple[str, int]]:
        uses = [
            (topic + VALUE_SUBJECT_SUFFIX, version)
            for topic, version in self.backend.schema_subjects_of(schema_id)
        ]
        stored = self.subjects.uses_of(schema_id, include_deleted=_flag(request, "deleted"))
        uses.extend((version.subject, version.version) for version in stored)
        wanted = request.query.get("subject")
        return sorted(use for use in uses if wanted is None or use[0] == wanted)

    def _subjects_by_id(self, request: Request, parameters: dict[str, str]) -> Response:
        schema_id, _, _ = self._schema_of_id(parameters["id"])
        subjects = sorted({subject for subject, _ in self._uses_of(request, schema_id)})
        return Response.of(_page(request, subjects))

    def _versions_by_id(self, request: Request, parameters: dict[str, str]) -> Response:
        schema_id, _, _ = self._schema_of_id(parameters["id"])
        uses = [
            {"subject": subject, "version": version} for subject, version in self._uses_of(request, schema_id)
        ]
        return Response.of(_page(request, uses))

    def _get_by_guid(self, request: Request, parameters: dict[str, str]) -> Response:
        raise RegistryError(
            404, 40403, f"Schema {parameters['guid']} not found: schemas have numeric ids only"
        )

    def _schema_types(self, request: Request, _: dict[str, str]) -> Response:
        return Response.of(list(REGISTRY_KINDS))

    # -- compatibility ------------------------------------------------------------------

    def _test_compatibility(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        submitted = _submitted_schema(request)
        wanted = parameters.get("version", "latest")
        number = _version_number(wanted)
        topic = topic_of(subject)
        if topic is not None:
            compiled = self._compile_as_engine_reads(submitted)
        else:
            compiled = self.languages.compile(submitted.text, submitted.kind)
        if number is None and topic is not None:
            try:
                problems = self.backend.check_schema(topic, submitted.document)
            except TopicNotFound:
                problems = []  # nothing to be incompatible with, as for a new subject
        elif number is None:
            versions = self.subjects.versions(subject) or []
            problems = self._problems(versions, compiled, self._mode_of(subject))
        else:
            target = self._version(subject, wanted)
            problems = self._problems([target], compiled, _single_version_mode(self._mode_of(subject)))
        document: dict[str, Any] = {"is_compatible": not problems}
        if _flag(request, "verbose"):
            document["messages"] = problems
        return Response.of(document)

    def _problems(self, history: list[StoredVersion], compiled: CompiledSchema, mode: str) -> list[str]:
        """What breaks ``mode`` if ``compiled`` followed ``history`` (oldest first)."""
        if mode == "none" or not history:
            return []
        chosen = history if mode.endswith("_transitive") else history[-1:]
        earlier = [self._value_type(version) for version in chosen]
        return self.languages.check(earlier, compiled.value_type, mode)

    def _value_type(self, version: StoredVersion) -> pa.StructType:
        key = (version.kind, version.text)
        cached = self._value_types.get(key)
        if cached is None:
            if len(self._value_types) >= compiled_cache_entries_max:
                self._value_types.clear()
            cached = self.languages.compile(version.text, version.kind).value_type
            self._value_types[key] = cached
        return cached

    # -- config and mode ----------------------------------------------------------------

    def _mode_of(self, subject: str) -> str:
        """The subject's effective mode: its own, else the registry default."""
        topic = topic_of(subject)
        info = self._topic_schema(topic) if topic is not None else None
        if info is not None:
            return info.compatibility
        return self.subjects.compatibility(subject) or self.subjects.default_compatibility

    def _get_default_config(self, request: Request, _: dict[str, str]) -> Response:
        return Response.of({"compatibilityLevel": self.subjects.default_compatibility.upper()})

    def _put_default_config(self, request: Request, _: dict[str, str]) -> Response:
        mode = _requested_mode(request)
        self.subjects.set_default_compatibility(mode)
        return Response.of({"compatibility": mode.upper()})

    def _reset_config(self, request: Request, _: dict[str, str]) -> Response:
        previous = self.subjects.default_compatibility
        self.subjects.set_default_compatibility(DEFAULT_COMPATIBILITY)
        return Response.of({"compatibilityLevel": previous.upper()})

    def _get_config(self, request: Request, parameters: dict[str, str]) -> Response:
        return Response.of({"compatibilityLevel": self._mode_of(parameters["subject"]).upper()})

    def _put_config(self, request: Request, parameters: dict[str, str]) -> Response:
        mode = _requested_mode(request)
        self._set_mode(parameters["subject"], mode)
        return Response.of({"compatibility": mode.upper()})

    def _delete_config(self, request: Request, parameters: dict[str, str]) -> Response:
        subject = parameters["subject"]
        previous = self._mode_of(subject)
        self._set_mode(subject, None)
        return Response.of({"compatibilityLevel": previous.upper()})

    def _set_mode(self, subject: str, mode: str | None) -> None:
        """Set a subject's mode; None returns it to the registry default."""
        topic = topic_of(subject)
        if topic is not None and self._topic_schema(topic) is not None:
            self.backend.set_compatibility(topic, mode or self.subjects.default_compatibility)
            return
        # A stored subject, or a topic without a schema yet: kept here, and handed to the
        # topic when a registration gives it its first schema.
        self.subjects.set_compatibility(subject, mode)

    def _topic_schema(self, topic: str) -> SchemaInfo | None:
        """The topic's newest schema; None when it has none or does not exist."""
        try:
            return self.backend.get_schema(topic)
        except TopicNotFound:
            return None

    def _get_mode(self, request: Request, _: dict[str, str]) -> Response:
        return Response.of({"mode": "READWRITE"})

    def _put_mode(self, request: Request, _: dict[str, str]) -> Response:
        document = _body_object(request)
        mode = document.get("mode")
        if mode != "READWRITE":
            raise RegistryError(422, 42204, f"Invalid mode {mode!r}: only READWRITE is supported")
        return Response.of({"mode": mode})

    # -- the rest -----------------------------------------------------------------------

    def _root(self, request: Request, _: dict[str, str]) -> Response:
        return Response.of({})

    def _contexts(self, request: Request, _: dict[str, str]) -> Response:
        return Response.of(["."])

    def _associations(self, request: Request, _: dict[str, str]) -> Response:
        # No subject is associated with a topic explicitly: clients fall back to
        # TopicNameStrategy, which names exactly the subjects described above.
        return Response.of([])

    def _view_key(self, request: Request, parameters: dict[str, str]) -> Response:
        """``GET /v1/views/{view}/keys/{key}``: a key's state in a materialized view
        (decision 0019). The key is the path segment's UTF-8, or with ``?key_encoding=hex``
        or ``base64`` its bytes so written; the state is ``state`` (UTF-8 text) or, when
        it is not UTF-8, ``state_b64``. 404 for an unknown view or a key without state."""
        views = _views_of(self.backend)
        if views is None:
            raise RegistryError(404, 404, "HTTP 404 Not Found: this server keeps no views")
        key = _key_of(parameters["key"], request.query.get("key_encoding", "utf-8"))
        state = views.get(parameters["view"], key)
        if state is None:
            raise RegistryError(404, 40404, f"Key not found in view {parameters['view']!r}")
        document: dict[str, Any] = {"view": parameters["view"], "key": parameters["key"]}
        try:
            document["state"] = state.decode()
        except UnicodeDecodeError:
            document["state_b64"] = base64.b64encode(state).decode()
        return Response(200, json.dumps(document).encode(), "application/json")


# -- helpers -------------------------------------------------------------------------------


def _views_of(backend: object) -> Any:
    """The views of the node serving ``backend`` (an Engine), or None for other backends."""
    from odradek.engine.engine import Engine  # the routes stay importable without a node
    from odradek.node import Node

    return Node.of(backend).views if isinstance(backend, Engine) else None


def _key_of(text: str, encoding: str) -> bytes:
    try:
        if encoding == "utf-8":
            return text.encode()
        if encoding == "hex":
            return bytes.fromhex(text)
        if encoding == "base64":
            return base64.b64decode(text, altchars=b"-_", validate=False)
    except ValueError:
        raise RegistryError(422, 42201, f"The key is not valid {encoding}") from None
    raise RegistryError(422, 42201, f"key_encoding is utf-8, hex or base64, not {encoding!r}")


def topic_of(subject: str) -> str | None:
    """The topic whose value schema ``subject`` names, or None for a stored subject."""
    if subject.endswith(VALUE_SUBJECT_SUFFIX) and len(subject) > len(VALUE_SUBJECT_SUFFIX):
        return subject[: -len(VALUE_SUBJECT_SUFFIX)]
    return None


def _from_topic(subject: str, info: SchemaInfo) -> StoredVersion:
    return StoredVersion(subject, info.version, info.id, info.kind, info.text)


def _version_document(version: StoredVersion) -> dict[str, Any]:
    document: dict[str, Any] = {
        "subject": version.subject,
        "version": version.version,
        "id": version.schema_id,
        "schema": version.text,
    }
    if version.kind != "AVRO":  # Confluent leaves out the default type
        document["schemaType"] = version.kind
    return document


def _version_number(text: str) -> int | None:
    """A version id from a path: a number, or None for ``latest`` / ``-1``."""
    if text in ("latest", "-1"):
        return None
    number = int(text) if text.isdigit() else 0
    if not 1 <= number <= version_number_max:
        raise RegistryError(
            422,
            42202,
            f"The specified version '{text}' is not a valid version id. Allowed values are "
            f'between [1, {version_number_max}] and the string "latest"',
        )
    return number


def _single_version_mode(mode: str) -> str:
    return mode.removesuffix("_transitive")


def _flag(request: Request, name: str) -> bool:
    return request.query.get(name, "false").strip().lower() == "true"


def _page(request: Request, items: list[Any]) -> list[Any]:
    """``offset`` and ``limit`` (negative: no limit) applied to a listing."""
    try:
        offset = max(int(request.query.get("offset", "0")), 0)
        limit = int(request.query.get("limit", "-1"))
    except ValueError:
        raise RegistryError(400, 400, "offset and limit must be integers") from None
    chosen = items[offset:]
    return chosen if limit < 0 else chosen[:limit]


def _body_object(request: Request) -> dict[str, Any]:
    try:
        document = json.loads(request.body)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(400, 400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RegistryError(400, 400, "The request body must be a JSON object")
    return document


def _submitted_schema(request: Request) -> _Submitted:
    document = _body_object(request)
    text = document.get("schema")
    if not isinstance(text, str):
        raise RegistryError(422, 42201, "Invalid schema: the request has no 'schema' string")
    kind = document.get("schemaType") or "AVRO"
    if not isinstance(kind, str):
        raise RegistryError(422, 42201, f"Invalid schema: schemaType must be a string, got {kind!r}")
    kind = kind.upper()
    if kind == "PROTOBUF":
        raise RegistryError(422, 42201, "Protobuf schemas are not supported yet")
    if kind not in REGISTRY_KINDS:
        raise RegistryError(
            422,
            42201,
            f"Invalid schema: unknown schemaType {kind!r} (supported: {', '.join(REGISTRY_KINDS)})",
        )
    if document.get("references"):
        raise RegistryError(422, 42201, "Schema references are not supported yet")
    for unsupported in ("metadata", "ruleSet"):
        if document.get(unsupported):
            raise RegistryError(422, 42201, f"Schema {unsupported} is not supported yet")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(422, 42201, f"Invalid schema: the schema is not valid JSON: {exc}") from None
    return _Submitted(kind, text, parsed)


def _requested_mode(request: Request) -> str:
    document = _body_object(request)
    level = document.get("compatibility") or document.get("compatibilityLevel")
    if not isinstance(level, str) or level.lower() not in COMPATIBILITY_MODES:
        names = ", ".join(mode.upper() for mode in COMPATIBILITY_MODES)
        raise RegistryError(422, 42203, f"Invalid compatibility level {level!r}; one of {names}")
    return level.lower()


def _refuse_topic_deletion(subject: str) -> None:
    topic = topic_of(subject)
    if topic is not None:
        raise RegistryError(
            422,
            42205,
            f"Subject '{subject}' is the value schema of topic '{topic}', whose schema history is "
            "append-only: delete the topic to delete its schema",
        )


def _incompatible(subject: str, mode: str, problems: list[str]) -> RegistryError:
    return RegistryError(
        409,
        409,
        f"Schema being registered is incompatible with an earlier schema for subject '{subject}' "
        f"({mode.upper()}): " + "; ".join(problems),
    )


def _translate(error: OdradekError) -> Response:
    """An engine refusal in Confluent's terms."""
    if isinstance(error, IncompatibleSchema):
        missing = [problem for problem in error.problems if problem not in error.message]
        message = error.message + (": " + "; ".join(missing) if missing else "")
        return Response.error(409, 409, message)
    if isinstance(error, InvalidSchema):
        return Response.error(422, 42201, f"Invalid schema: {error.message}")
    if isinstance(error, TopicNotFound):
        return Response.error(404, 40401, f"Subject not found: {error.message}")
    if isinstance(error, ViewNotFound):
        return Response.error(404, 40403, error.message)
    if isinstance(error, InvalidRequest):
        return Response.error(422, 42201, error.message)
    if isinstance(error, Unavailable):  # retriable (a failover, a cell changing hands)
        return Response.error(503, 50003, error.message)
    log.warning("registry backend error", extra={"fields": {"error": error.message}})
    return Response.error(500, 50001, f"Error in the backend data store: {error.message}")
