"""Tenants: each a namespace of topics, groups and registry subjects (decision 0028).

The one translation every door uses between the names a principal says and the names
the engine keeps. A principal of tenant ``acme`` who names topic ``orders`` reaches the
engine's topic ``_t.acme.orders`` (names.py: names starting with ``_`` are reserved, so
no one forges it); answers carry ``orders`` again. Its patterns are anchored inside its
prefix (``>`` becomes ``_t.acme.>``), so they can never match another tenant's topics or
untenanted ones. Groups and registry subjects are prefixed the same way.

Three kinds of namespace, by principal (:func:`namespace_of`):

* a tenant's principal (``tenant`` set): its tenant's namespace, above; the tenant must
  exist (``odradek tenant create``), else every request of it is refused;
* an untenanted principal that is not an admin: the default namespace, the names as
  they are, none of them in the tenant space (a pattern's leading wildcard never matches
  it: names.compile_pattern); a name or pattern naming the tenant space is refused;
* a cluster admin (and every caller of a server without authentication): the engine's
  names unchanged, tenants' topics included (``_t.acme.orders``; ``_t.>`` lists them).

A tenant's principal is never a cluster admin (principal.py drops the flag).
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, Unauthorized
from odradek.names import (
    NAME_RULES,
    PATTERN_RULES,
    TENANT_NAME,
    TENANT_ROOT,
    compile_pattern,
    tenant_prefix,
    validate_topic_name,
)
from odradek.security.principal import Principal

TENANT_RULES = (
    f"a tenant name is 1 to {limits.tenant_name_length_max} letters, digits, '_' and '-', "
    "starting with a letter or digit (e.g. 'acme')"
)


def check_tenant_name(name: object) -> str:
    """``name`` if it is a valid tenant name, else InvalidRequest."""
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        raise InvalidRequest(f"invalid tenant name {str(name)[:80]!r}: {TENANT_RULES}")
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Namespace:
    """The names one principal sees. ``tenant`` None and ``raw``: a cluster admin's (the
    engine's names); ``tenant`` None, not ``raw``: the default namespace."""

    tenant: str | None = None
    raw: bool = False

    @classmethod
    def of_tenant(cls, tenant: str) -> Namespace:
        return cls(check_tenant_name(tenant))

    @property
    def prefix(self) -> str:
        """What the engine's names of this namespace start with ("" outside tenants)."""
        return "" if self.tenant is None else tenant_prefix(self.tenant)

    @property
    def translates(self) -> bool:
        """Whether names change on the way in and out (a tenant's namespace)."""
        return self.tenant is not None

    def __str__(self) -> str:
        return (
            f"tenant {self.tenant}" if self.tenant else "the cluster" if self.raw else "the default namespace"
        )

    # -- into the engine ----------------------------------------------------------------------

    def topic(self, name: object, what: str = "topic name") -> str:
        """The engine's name of topic (or group) ``name`` said in this namespace;
        InvalidRequest for a name that is not one here."""
        if self.raw:
            if not isinstance(name, str):
                raise InvalidRequest(f"a {what} must be a string, got {type(name).__name__}")
            return name
        local = validate_topic_name(name)
        if local.startswith("_"):  # the tenant space (names.py lets the engine name it)
            raise InvalidRequest(f"{what} {local!r} is reserved for the system: {NAME_RULES}")
        if self.tenant is None:
            return local
        engine = self.prefix + local
        if len(engine) > limits.topic_name_length_max:
            raise InvalidRequest(
                f"{what} {local!r} is {len(local)} characters long; a name of {self} is at most "
                f"{limits.topic_name_length_max - len(self.prefix)} characters: {NAME_RULES}"
            )
        return engine

    def group(self, name: object) -> str:
        """The engine's name of a group (groups follow the topic name rules)."""
        return self.topic(name, "group name")

    def pattern(self, pattern: object) -> str:
        """The engine's pattern of ``pattern`` said here: a tenant's is anchored inside its
        prefix; a pattern naming the tenant space (``_t...``) is refused outside the raw
        namespace."""
        if not isinstance(pattern, str):
            raise InvalidRequest(f"a pattern must be a string, got {type(pattern).__name__}")
        if self.raw:
            return pattern
        compile_pattern(pattern)  # InvalidRequest for a malformed one
        if pattern.startswith("_"):
            raise InvalidRequest(
                f"invalid pattern {pattern!r}: names starting with '_' are reserved; {PATTERN_RULES}"
            )
        engine = self.prefix + pattern
        if len(engine) > limits.topic_name_length_max:
            raise InvalidRequest(
                f"pattern {pattern!r} is too long: a pattern of {self} is at most "
                f"{limits.topic_name_length_max - len(self.prefix)} characters"
            )
        return engine

    def regex(self, regex: str) -> str:
        """The engine's regular expression of a Kafka subscription ``regex`` said here
        (fully matched against engine names, as the consumer-group protocol does): a
        tenant's matches inside its prefix only, the default namespace's never in the
        tenant space. Leading global flags (``(?i)``) stay global but never touch the
        prefix; a tenant's ``^`` (librdkafka sends ``(^orders.*)``) matches where its
        name starts, right after the prefix. Whatever the regex, the prefix is a literal
        outside it, so it never matches outside. A regex that does not compile is left
        as it is, for the engine to refuse."""
        if self.raw or not regex:
            return regex
        try:
            re.compile(regex)
        except re.error:
            return regex
        flags, body = _split_flags(regex)
        if self.tenant is None:
            return f"{flags}{_DEFAULT_GUARD}(?:{body})"
        return f"{flags}{self._regex_prefix}(?:{_starts_at(body, self._regex_start)})"

    def local_regex(self, regex: str) -> str:
        """The regex said here of an engine regex made by :meth:`regex` (others as they are)."""
        if self.raw or not regex:
            return regex
        guard = _DEFAULT_GUARD if self.tenant is None else self._regex_prefix
        flags, body = _split_flags(regex)
        if body.startswith(guard + "(?:") and body.endswith(")"):
            inner = body[len(guard) + 3 : -1]
            return flags + (inner if self.tenant is None else inner.replace(self._regex_start, "^"))
        return regex

    @property
    def _regex_prefix(self) -> str:
        return f"(?-i:{re.escape(self.prefix)})"

    @property
    def _regex_start(self) -> str:
        """A tenant's ``^``: right after its prefix at the start of the engine name."""
        return f"(?<=^{self._regex_prefix})"

    def subject(self, name: str) -> str:
        """The registry's name of a subject said here (same prefix, any subject text)."""
        if self.raw or self.tenant is None:
            if not self.raw and name.startswith(TENANT_ROOT + "."):
                raise InvalidRequest(
                    f"subject {name[:80]!r} is in the tenants' reserved space '{TENANT_ROOT}.'"
                )
            return name
        return self.prefix + name

    # -- out of the engine --------------------------------------------------------------------

    def owns(self, engine_name: str) -> bool:
        """Whether an engine name (topic, group, subject) belongs to this namespace."""
        if self.raw:
            return True
        if self.tenant is None:
            return not engine_name.startswith(TENANT_ROOT + ".")
        return engine_name.startswith(self.prefix) and len(engine_name) > len(self.prefix)

    def local(self, engine_name: str) -> str:
        """The name said here for an engine name this namespace owns."""
        if not self.owns(engine_name):
            raise Unauthorized(f"{engine_name!r} is not a name of {self}")
        return engine_name[len(self.prefix) :]

    def locals(self, engine_names: Iterable[str]) -> list[str]:
        """The names said here of those ``engine_names`` this namespace owns, in order."""
        if self.raw:
            return list(engine_names)
        cut = len(self.prefix)
        return [name[cut:] for name in engine_names if self.owns(name)]

    def local_column(self, column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """A ``topic`` column of engine names as said here (one Arrow kernel)."""
        if not self.translates:
            return column
        return pc.utf8_slice_codeunits(column, len(self.prefix))

    def engine_column(self, column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """A ``topic`` column said here as engine names (one Arrow kernel)."""
        if not self.translates:
            return column
        return pc.binary_join_element_wise(
            pa.scalar(self.prefix, column.type), column, pa.scalar("", column.type)
        )

    def local_batch(self, batch: pa.RecordBatch, field: str = "topic") -> pa.RecordBatch:
        """``batch`` with its ``field`` column of engine names as said here."""
        if not self.translates or field not in batch.schema.names:
            return batch
        index = batch.schema.get_field_index(field)
        return batch.set_column(index, batch.schema.field(index), self.local_column(batch.column(index)))

    def local_value(self, value: Any) -> Any:
        """A JSON value of an answer with every string (and key) that is an engine name
        of this namespace as said here; the answers of a tenant's requests name its own
        names only, each starting with its prefix."""
        if not self.translates:
            return value
        prefix, cut = self.prefix, len(self.prefix)
        if isinstance(value, str):
            return value[cut:] if value.startswith(prefix) else value
        if isinstance(value, list):
            return [self.local_value(item) for item in value]
        if isinstance(value, dict):
            return {self.local_value(key): self.local_value(item) for key, item in value.items()}
        return value

    def local_json(self, raw: bytes) -> bytes:
        """:meth:`local_value` of a JSON document."""
        if not self.translates or not raw:
            return raw
        return json.dumps(self.local_value(json.loads(raw))).encode()

    def local_text(self, text: str) -> str:
        """An error message naming engine names, as said here (the prefix taken out)."""
        return text.replace(self.prefix, "") if self.translates else text


_DEFAULT_GUARD = f"(?!{re.escape(TENANT_ROOT + '.')})"
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def _split_flags(regex: str) -> tuple[str, str]:
    """A regex's leading global flag groups (``(?i)``) and the rest."""
    end = 0
    while found := _GLOBAL_FLAGS.match(regex, end):
        end = found.end()
    return regex[:end], regex[end:]


def _starts_at(regex: str, start: str) -> str:
    """``regex`` with each ``^`` and ``\\A`` outside a character class as ``start``."""
    out: list[str] = []
    index, in_class, class_opened = 0, False, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            pair = regex[index : index + 2]
            out.append(start if pair == "\\A" and not in_class else pair)
            index += 2
            continue
        if in_class:
            if char == "]" and not class_opened:
                in_class = False
            class_opened = False
        elif char == "[":
            in_class, class_opened = True, True
            if regex.startswith("^", index + 1):  # a negated class: its '^' is no anchor
                out.append("[^")
                index += 2
                continue
        elif char == "^":
            out.append(start)
            index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def local_error(namespace: Namespace, error: OdradekError) -> OdradekError:
    """``error`` (changed in place) naming engine names as ``namespace`` says them: its
    message and its text attributes (a TopicNotFound's topic)."""
    if namespace.translates:
        for attribute, value in vars(error).items():
            if isinstance(value, str):
                setattr(error, attribute, namespace.local_text(value))
        error.args = tuple(namespace.local_text(arg) if isinstance(arg, str) else arg for arg in error.args)
    return error


def not_served(principal: Principal, door: str) -> str | None:
    """Why ``door`` refuses ``principal`` (None: it does not). The doors that do not
    translate a tenant's names yet (Kafka, the Schema Registry, the HTTP doors) refuse a
    tenant's principals at authentication rather than let them into the default
    namespace."""
    if principal.tenant is None:
        return None
    return (
        f"{principal} belongs to tenant {principal.tenant[:80]!r}, and the {door} does not serve "
        "tenants yet: use the native (Flight) door"
    )


def names_tenant_space(path: str) -> bool:
    """Whether an HTTP request target names the tenants' space: a path segment or a
    query value (percent-decoded) starting with ``_t.`` (a topic, subject, group or
    pattern of some tenant). The HTTP doors refuse such a request of anyone but a
    cluster admin: they serve the default namespace only."""
    split = urllib.parse.urlsplit(path)
    space = TENANT_ROOT + "."
    if any(urllib.parse.unquote(part).startswith(space) for part in split.path.split("/")):
        return True
    return any(value.startswith(space) for _, value in urllib.parse.parse_qsl(split.query))


RAW = Namespace(None, raw=True)
DEFAULT = Namespace(None, raw=False)


def namespace_of(principal: Principal, tenant_exists: Callable[[str], bool] | None = None) -> Namespace:
    """The namespace of ``principal``'s requests. A tenant's principal whose tenant does
    not exist (never made, or deleted) is refused (Unauthorized), never let into another
    namespace."""
    if principal.tenant is None:
        return RAW if principal.admin else DEFAULT
    if not TENANT_NAME.fullmatch(principal.tenant) or (
        tenant_exists is not None and not tenant_exists(principal.tenant)
    ):
        raise Unauthorized(
            f"{principal} belongs to tenant {principal.tenant[:80]!r}, which does not exist "
            "(odradek tenant create makes it)"
        )
    return Namespace(principal.tenant)
