"""Access control lists: what a principal may do, decided in one place for every door.

Rules (Kafka's authorizer, over Odradek's names; decision 0020)
---------------------------------------------------------------
* A :class:`Binding` says that a principal (``User:NAME``, or ``User:*`` for every
  principal) is allowed or denied an operation on the resources of one type whose name
  matches a pattern.
* Resource types: ``topic``, ``group``, ``subject`` (a Schema Registry subject),
  ``transactional_id`` and ``cluster`` (one resource, named ``kafka-cluster``).
* Pattern types: ``literal`` (the name itself; the pattern ``*`` is every name, as in
  Kafka), ``prefixed`` (names starting with the pattern) and ``match`` (Odradek's
  subject patterns over dotted names: ``*`` is one segment, ``>`` last is one or more
  trailing segments).
* Operations: ``read``, ``write``, ``create``, ``delete``, ``alter``, ``describe`` and
  ``all``. An allowed read, write, delete or alter implies describe (Kafka's
  implication); a denied one does not deny describe. ``all`` stands for every operation
  in an allow and in a deny.
* A deny wins over any allow. What no binding allows is refused (Kafka's
  ``allow.everyone.if.no.acl.found=false``). An admin principal (decision 0017) is a
  super user: it is allowed everything, whatever the bindings say.

This module is pure logic: no IO. :class:`Acl` is an immutable set of bindings with an
index by resource type; :class:`Decider` answers questions over one and remembers its
answers (per principal, resource and operation) until the bindings change. The store of
bindings is security/acl_store.py; the doors call security/authorizer.py.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.security.principal import Principal

RESOURCE_TYPES = ("topic", "group", "subject", "transactional_id", "cluster")
PATTERN_TYPES = ("literal", "prefixed", "match")
OPERATIONS = ("read", "write", "create", "delete", "alter", "describe", "all")
PERMISSIONS = ("allow", "deny")
CLUSTER = "kafka-cluster"
ANY_PRINCIPAL = "User:*"
WILDCARD = "*"

# Allowed operations that also allow describe (Kafka's AclAuthorizer).
_IMPLY_DESCRIBE = frozenset({"read", "write", "delete", "alter"})
_PRINCIPAL = re.compile(r"^User:(\*|[A-Za-z0-9_.@-]+)$")


@dataclasses.dataclass(frozen=True, slots=True)
class Binding:
    """One access control entry (see the module docstring). Build it with :func:`binding`,
    which checks every field."""

    principal: str
    resource_type: str
    pattern_type: str
    pattern: str
    operation: str
    permission: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.permission} {self.principal} {self.operation} on {self.resource_type} "
            f"{self.pattern_type} {self.pattern!r}"
        )


def _choice(value: object, field: str, choices: Sequence[str]) -> str:
    text = value.lower() if isinstance(value, str) else value
    if text not in choices:
        raise InvalidRequest(f"{field} must be one of {', '.join(choices)}, got {str(value)[:64]!r}")
    return str(text)


def check_match_pattern(pattern: str) -> None:
    """Raise InvalidRequest unless ``pattern`` is a valid ``match`` pattern."""
    segments = pattern.split(".")
    for position, segment in enumerate(segments):
        if not segment:
            raise InvalidRequest(f"invalid match pattern {pattern!r}: an empty segment")
        if segment == ">" and position != len(segments) - 1:
            raise InvalidRequest(f"invalid match pattern {pattern!r}: '>' must be the last segment")


def binding(
    principal: object,
    resource_type: object,
    pattern_type: object,
    pattern: object,
    operation: object,
    permission: object,
) -> Binding:
    """A checked :class:`Binding`; InvalidRequest naming the bad field otherwise."""
    if (
        isinstance(principal, str)
        and not principal.startswith("User:")
        and _PRINCIPAL.match("User:" + principal)
    ):
        principal = "User:" + principal
    if not isinstance(principal, str) or not _PRINCIPAL.match(principal):
        raise InvalidRequest(
            f"a principal is 'User:NAME' (or 'User:*' for everyone), got {str(principal)[:64]!r}"
        )
    if len(principal) > limits.security_name_chars_max + len("User:"):
        raise InvalidRequest(f"the principal is longer than {limits.security_name_chars_max} characters")
    kind = _choice(resource_type, "resource type", RESOURCE_TYPES)
    pattern_kind = _choice(pattern_type, "pattern type", PATTERN_TYPES)
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequest("a pattern is a non-empty string")
    if len(pattern) > limits.acl_pattern_chars_max:
        raise InvalidRequest(f"a pattern is at most {limits.acl_pattern_chars_max} characters")
    if pattern_kind == "match":
        check_match_pattern(pattern)
    if kind == "cluster" and (pattern_kind != "literal" or pattern not in (CLUSTER, WILDCARD)):
        raise InvalidRequest(
            f"the cluster resource is the literal {CLUSTER!r}, got {pattern_kind} {pattern!r}"
        )
    return Binding(
        principal,
        kind,
        pattern_kind,
        pattern,
        _choice(operation, "operation", OPERATIONS),
        _choice(permission, "permission", PERMISSIONS),
    )


def binding_of(data: Any) -> Binding:
    """A binding from its JSON form (InvalidRequest if it is not one)."""
    if not isinstance(data, dict):
        raise InvalidRequest("a binding is a JSON object")
    return binding(
        data.get("principal"),
        data.get("resource_type"),
        data.get("pattern_type", "literal"),
        data.get("pattern"),
        data.get("operation"),
        data.get("permission", "allow"),
    )


def name_matches(pattern_type: str, pattern: str, name: str) -> bool:
    """Whether resource ``name`` is covered by a binding's pattern."""
    if pattern_type == "literal":
        return pattern == WILDCARD or name == pattern
    if pattern_type == "prefixed":
        return name.startswith(pattern)
    wanted = pattern.split(".")
    segments = name.split(".")
    if wanted[-1] == ">":
        if len(segments) < len(wanted):
            return False
        segments = segments[: len(wanted) - 1]
        wanted = wanted[:-1]
    elif len(segments) != len(wanted):
        return False
    return all(
        segment and (part == WILDCARD or part == segment)
        for part, segment in zip(wanted, segments, strict=True)
    )


def operation_covers(binding_operation: str, permission: str, operation: str) -> bool:
    """Whether a binding of ``binding_operation`` speaks to a request for ``operation``."""
    if binding_operation in ("all", operation):
        return True
    return permission == "allow" and operation == "describe" and binding_operation in _IMPLY_DESCRIBE


@dataclasses.dataclass(frozen=True)
class Acl:
    """An immutable set of bindings, indexed by resource type and by (resource type,
    principal), so a decision scans only the bindings of its principal and of ``User:*``."""

    bindings: tuple[Binding, ...] = ()
    by_type: dict[str, tuple[Binding, ...]] = dataclasses.field(default_factory=dict, compare=False)
    by_principal: dict[tuple[str, str], tuple[Binding, ...]] = dataclasses.field(
        default_factory=dict, compare=False
    )

    @classmethod
    def of(cls, bindings: Iterable[Binding]) -> Acl:
        unique = tuple(dict.fromkeys(bindings))
        index: dict[str, list[Binding]] = {}
        by_principal: dict[tuple[str, str], list[Binding]] = {}
        for entry in unique:
            index.setdefault(entry.resource_type, []).append(entry)
            by_principal.setdefault((entry.resource_type, entry.principal), []).append(entry)
        return cls(
            unique,
            {kind: tuple(entries) for kind, entries in index.items()},
            {key: tuple(entries) for key, entries in by_principal.items()},
        )

    def decide(self, principal: Principal, operation: str, resource_type: str, name: str) -> bool:
        """Allowed? Deny wins; nothing allowing means refused; an admin may do anything."""
        if principal.admin:
            return True
        allowed = False
        for who in (str(principal), ANY_PRINCIPAL):
            for entry in self.by_principal.get((resource_type, who), ()):
                if not operation_covers(entry.operation, entry.permission, operation):
                    continue
                if not name_matches(entry.pattern_type, entry.pattern, name):
                    continue
                if entry.permission == "deny":
                    return False
                allowed = True
        return allowed


def _prefix_of(pattern: str) -> str:
    """The literal text every name the match pattern ``pattern`` matches starts with."""
    literal: list[str] = []
    for part in pattern.split("."):
        if part in ("*", ">"):
            return ".".join(literal) + "." if literal else ""
        literal.append(part)
    return pattern


def _match_covers(cover: str, pattern: str) -> bool:
    """Every name ``pattern`` matches is matched by the match pattern ``cover``."""
    wanted, have = cover.split("."), pattern.split(".")
    for position, part in enumerate(wanted):
        if part == ">":
            return len(have) > position
        if position >= len(have) or have[position] == ">":
            return False
        if part != WILDCARD and part != have[position]:
            return False
    return len(wanted) == len(have)


def pattern_covers(entry: Binding, pattern: str) -> bool:
    """Whether ``entry``'s pattern covers every name the match pattern ``pattern`` can match."""
    if entry.pattern_type == "literal":
        return entry.pattern == WILDCARD or entry.pattern == pattern
    if entry.pattern_type == "prefixed":
        return _prefix_of(pattern).startswith(entry.pattern)
    return _match_covers(entry.pattern, pattern)


def covers(acl: Acl, principal: Principal, operation: str, resource_type: str, pattern: str) -> bool:
    """Whether ``principal`` may ``operation`` every resource the match pattern ``pattern``
    can name, now and later (a wildcard read or subscription): one allow covers the whole
    pattern and no deny of that operation exists for the principal on that resource type
    (conservative: such a deny refuses the wildcard, while a read of one name still works)."""
    if principal.admin:
        return True
    who = (str(principal), ANY_PRINCIPAL)
    allowed = False
    for entry in acl.by_type.get(resource_type, ()):
        if entry.principal not in who or entry.operation not in (operation, "all"):
            continue
        if entry.permission == "deny":
            return False
        allowed = allowed or pattern_covers(entry, pattern)
    return allowed


class Decider:
    """Answers over an :class:`Acl`, remembered per (principal, operation, resource)
    until :meth:`use` hands it other bindings. Thread-safe: the remembered answers are
    replaced whole, never changed while another thread reads them."""

    def __init__(self, acl: Acl | None = None) -> None:
        self._lock = threading.Lock()
        self._acl = acl or Acl.of(())
        self._answers: dict[tuple[str, str | None, bool, str, str, str], bool] = {}

    @property
    def acl(self) -> Acl:
        return self._acl

    def use(self, acl: Acl) -> None:
        """Decide over ``acl`` from now on (every remembered answer is forgotten)."""
        with self._lock:
            self._acl = acl
            self._answers = {}

    def allowed(self, principal: Principal, operation: str, resource_type: str, name: str) -> bool:
        key = (principal.name, principal.tenant, principal.admin, operation, resource_type, name)
        answers = self._answers
        answer = answers.get(key)
        if answer is None:
            answer = self._acl.decide(principal, operation, resource_type, name)
            if len(answers) >= limits.acl_decisions_cached_max:
                with self._lock:
                    if self._answers is answers:
                        self._answers = answers = {}
            answers[key] = answer
        return answer

    def filter(
        self, principal: Principal, operation: str, resource_type: str, names: Iterable[str]
    ) -> list[str]:
        """The names among ``names`` that ``principal`` may ``operation``, in order (one
        pass; an admin's are all of them)."""
        if principal.admin:
            return list(names)
        return [name for name in names if self.allowed(principal, operation, resource_type, name)]
