"""Topic names and subscription patterns (DESIGN §3).

A topic name is one or more segments of ``[A-Za-z0-9_-]+`` joined by ``.``, at most
249 characters; names starting with ``_`` are reserved for the system. A pattern is a
name whose segments may also be ``*`` (exactly one segment) or, as the last segment
only, ``>`` (one or more trailing segments), as in NATS subjects.

Tenants (decision 0028): the topics of tenant ``acme`` are ``_t.acme.<name>`` in the
engine, where ``<name>`` is a topic name as above; the doors translate (the shared
module security/tenants.py). No user names a topic there directly (names starting with
``_`` are reserved), and a wildcard in a pattern's first segment never matches a
reserved segment, so ``>`` and ``*.x`` never reach a tenant's topics: only a pattern
naming the tenant space (``_t.acme.>``, ``_t.>``) does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from odradek import limits
from odradek.errors import InvalidRequest

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
# The first segment of every tenant's topics; a tenant name is one segment after it.
TENANT_ROOT = "_t"
TENANT_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{limits.tenant_name_length_max - 1}}}")

NAME_RULES = (
    "a topic name is segments of letters, digits, '_' and '-' joined by '.', "
    f"at most {limits.topic_name_length_max} characters, not starting with '_' "
    "(e.g. 'orders.eu.created')"
)
PATTERN_RULES = (
    "a pattern is a topic name whose segments may be '*' (one segment) or, last, "
    "'>' (one or more segments), e.g. 'orders.*.created' or 'orders.>'"
)


def validate_topic_name(name: object, *, allow_reserved: bool = False) -> str:
    """Return ``name`` if it is a valid topic name, else raise InvalidRequest."""
    if not isinstance(name, str):
        raise InvalidRequest(f"topic name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidRequest(f"empty topic name: {NAME_RULES}")
    if len(name) > limits.topic_name_length_max:
        raise InvalidRequest(f"topic name is {len(name)} characters long: {NAME_RULES}")
    for segment in name.split("."):
        if not _SEGMENT.fullmatch(segment):
            raise InvalidRequest(f"invalid topic name {name!r}: {NAME_RULES}")
    if name.startswith("_") and not allow_reserved and tenant_of(name) is None:
        raise InvalidRequest(f"topic name {name!r} is reserved for the system: {NAME_RULES}")
    return name


def tenant_prefix(tenant: str) -> str:
    """The prefix of tenant ``tenant``'s topics and groups in the engine (``_t.acme.``)."""
    return f"{TENANT_ROOT}.{tenant}."


def tenant_of(name: str) -> str | None:
    """The tenant whose topic (or group) ``name`` is, if it is in the tenant space
    (``_t.<tenant>.<name>``, the rest a topic name not starting with ``_``); else None."""
    if not name.startswith(TENANT_ROOT + "."):
        return None
    tenant, _, rest = name[len(TENANT_ROOT) + 1 :].partition(".")
    if not TENANT_NAME.fullmatch(tenant) or not rest or rest.startswith("_"):
        return None
    return tenant


def dead_letter_topic(group: str) -> str:
    """The default dead-letter topic of ``group``: ``dlq.<group>``, or within a tenant's
    space ``_t.<tenant>.dlq.<name>`` (so a tenant's dead letters stay its own)."""
    tenant = tenant_of(group)
    if tenant is None:
        return f"dlq.{group}"
    prefix = tenant_prefix(tenant)
    return f"{prefix}dlq.{group[len(prefix) :]}"


def is_pattern(text: str) -> bool:
    """True if ``text`` contains a wildcard segment."""
    return any(segment in ("*", ">") for segment in text.split("."))


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Return a predicate telling whether a topic name matches ``pattern``.

    Raises InvalidRequest for a malformed pattern. Compiled predicates are cached.
    """
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequest(f"empty pattern: {PATTERN_RULES}")
    if len(pattern) > limits.topic_name_length_max:
        raise InvalidRequest(f"pattern is {len(pattern)} characters long: {PATTERN_RULES}")
    segments = pattern.split(".")
    parts: list[str] = []
    for position, segment in enumerate(segments):
        # A wildcard first segment never matches a reserved one ('_...': the tenants').
        first = r"[A-Za-z0-9-][A-Za-z0-9_-]*" if position == 0 else r"[A-Za-z0-9_-]+"
        if segment == "*":
            parts.append(first)
        elif segment == ">":
            if position != len(segments) - 1:
                raise InvalidRequest(f"invalid pattern {pattern!r}: '>' must be last; {PATTERN_RULES}")
            parts.append(first + r"(?:\.[A-Za-z0-9_-]+)*")
        elif _SEGMENT.fullmatch(segment):
            parts.append(re.escape(segment))
        else:
            raise InvalidRequest(f"invalid pattern {pattern!r}: {PATTERN_RULES}")
    regex = re.compile(r"\.".join(parts))

    def matches(name: str) -> bool:
        return regex.fullmatch(name) is not None

    return matches
