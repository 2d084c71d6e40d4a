"""The HTTP API and the web console over a cluster whose topics are spread over cells
(decision 0036), without IO.

Every agent serves the API on its registry listener (decision 0034); each cell it
serves answers with an :class:`~odradek.protocols.http_api.HttpApi` of its own over the
cell's node. A request is answered by the cell it concerns, here when this agent serves
that cell, else by the agent that does, to which the listener forwards it (the same
forward as the registry's, with the client's credentials and ``X-Odradek-Cell``):

* ``/v1/topics/{topic}[/...]`` (and a console tail of one topic): the topic's cell,
  routed by the engine's name (a tenant's ``orders`` is ``_t.<tenant>.orders``);
* ``POST /v1/topics``: the cell of the topic named in the body, or the home cell for
  a topic placed nowhere yet, which places it there as it creates it;
* ``GET /v1/topics``, ``GET /v1/groups`` and ``GET /v1/console/topics``: every cell's
  answer, merged into one document of the same shape;
* ``POST /v1/groups/{g}/members`` (a join): the cell of the topic the pattern names (a
  group lives in its topic's cell, decision 0035); with a wildcard, every cell: the
  member is joined to each (cells_member.py, decision 0039);
* ``/v1/groups/{g}/members/{m}[/...]`` of a member joined to every cell (its id begins
  with :data:`MEMBER_PREFIX`): every cell (cells_member.py);
* other ``/v1/groups/{g}/...`` routes: the first cell, in cell order, whose group
  listing has ``g`` (the home cell when none has: it answers 404, as one node does);
  ``GET`` and ``DELETE /v1/groups/{g}`` of a group several cells list (one subscribing
  to a pattern, decision 0038): every such cell, the answers merged;
* ``/openapi.json``, the console's static assets, ``/v1/console/cluster`` and any path
  the API does not know: answered here (the home cell's answer is the same everywhere).

A tail of a pattern (the console's) is every cell's tail, merged into one stream by
the agent it reached (console/cells_tail.py, decision 0039).
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.names import is_pattern, validate_topic_name

# Where a request goes.
LOCAL = "local"  # answered by this agent, with any cell's API it serves (or the home cell's)
ONE = "one"  # one cell: the topic's (``topic``), else the home cell
GROUP = "group"  # the first cell whose group listing has ``group``
MERGE = "merge"  # every cell; the answers merged (``listing`` says which merge)
TAILS = "tails"  # a console tail of a pattern: every cell's, merged (console/cells_tail.py)
MEMBER = "member"  # a member by pattern, in every cell (cells_member.py)

# The listings merged.
TOPICS = "topics"
GROUPS = "groups"
CONSOLE_TOPICS = "console_topics"

# The id of a member joined by pattern to every cell begins with this (a member one
# cell's group made is a bare hexadecimal uuid, never with a dot).
MEMBER_PREFIX = "cells."


@dataclasses.dataclass(frozen=True)
class ApiRoute:
    """Where an API request is answered (see the module's docstring)."""

    kind: str
    topic: str | None = None
    group: str | None = None
    listing: str | None = None


HERE = ApiRoute(LOCAL)
HOME = ApiRoute(ONE)


def route(method: str, path: str, query: dict[str, str], body: bytes, prefix: str = "") -> ApiRoute:
    """Where an API or console request goes. ``prefix`` is what the principal's namespace
    puts before its topics' names (security/tenants.py; "" outside a tenant). A request
    whose routing input is malformed (a body that is not JSON, no name) goes to the home
    cell, whose API refuses it as one node does."""
    segments = [urllib.parse.unquote(part) for part in path.strip("/").split("/") if part]
    method = method.upper()
    if segments[:2] == ["v1", "topics"]:
        if len(segments) == 2:
            if method == "GET":
                return ApiRoute(MERGE, listing=TOPICS)
            if method == "POST":
                name = _field(body, "name")
                return HOME if name is None else _topic(prefix + name)
            return HERE  # a 405, the same everywhere
        return _topic(prefix + segments[2])
    if segments[:2] == ["v1", "groups"]:
        if len(segments) == 2:
            return ApiRoute(MERGE, listing=GROUPS) if method == "GET" else HERE
        if len(segments) == 4 and segments[3] == "members" and method == "POST":
            pattern = _field(body, "pattern")
            if pattern is None:
                return HOME
            if is_pattern(pattern):
                return ApiRoute(MEMBER, group=segments[2])
            return _topic(prefix + pattern)
        if len(segments) >= 5 and segments[3] == "members" and segments[4].startswith(MEMBER_PREFIX):
            return ApiRoute(MEMBER, group=segments[2])
        return ApiRoute(GROUP, group=segments[2])
    if segments[:3] == ["v1", "console", "topics"] and len(segments) == 3:
        return ApiRoute(MERGE, listing=CONSOLE_TOPICS) if method == "GET" else HERE
    if segments[:3] == ["v1", "console", "tail"] and len(segments) == 3 and method == "GET":
        pattern = query.get("pattern", "")
        if not pattern:
            return HERE  # refused as one node refuses it
        if is_pattern(pattern):
            return ApiRoute(TAILS)
        return _topic(prefix + pattern)
    return HERE


def _topic(name: str) -> ApiRoute:
    """The route to topic ``name``'s cell; the home cell for a name that cannot be a
    topic's (its API refuses it, wherever it is asked)."""
    try:
        validate_topic_name(name)
    except InvalidRequest:
        return HOME
    return ApiRoute(ONE, topic=name)


def _field(body: bytes, name: str) -> str | None:
    """The string ``name`` of a JSON object body; None when there is none."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


def merge(listing: str, documents: Sequence[Any]) -> Any:
    """One document of the shape a cell answers from every cell's (the home cell's
    first): the topics, the groups or the console's topic rows, sorted by name as one
    cell sorts them; ValueError for a document that is not of that shape."""
    for document in documents:
        if not isinstance(document, dict):
            raise ValueError(f"an agent answered a {listing} listing that is not a JSON object")
    if listing == TOPICS:
        return {
            "topics": sorted({name for document in documents for name in _list(document, "topics")}),
            "unavailable": _union(documents, "unavailable"),
        }
    if listing == GROUPS:
        groups: dict[str, Any] = {}
        for document in documents:
            for entry in _list(document, "groups"):
                if not isinstance(entry, dict) or not isinstance(entry.get("group"), str):
                    raise ValueError("an agent answered a group listing entry without a name")
                groups.setdefault(entry["group"], entry)  # the first cell's, as actions go there
        return {"groups": [groups[name] for name in sorted(groups)]}
    rows: dict[str, Any] = {}
    for document in documents:
        for row in _list(document, "topics"):
            if not isinstance(row, dict) or not isinstance(row.get("name"), str):
                raise ValueError("an agent answered a topic row without a name")
            rows.setdefault(row["name"], row)
    topics_max = limits.console_topics_max
    windows = [
        window
        for document in documents
        if isinstance(window := document.get("rate_window_seconds"), int | float)
    ]
    names = sorted(rows)
    return {
        "topics": [rows[name] for name in names[:topics_max]],
        "truncated": len(names) > topics_max
        or any(document.get("truncated") is True for document in documents),
        "topics_max": topics_max,
        "rate_window_seconds": min(windows) if windows else None,
        "unavailable": _union(documents, "unavailable"),
    }


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise ValueError(f"an agent answered a listing without a {key!r} list")
    return value


def _union(documents: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    union: dict[str, Any] = {}
    for document in documents:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"an agent answered a listing whose {key!r} is not an object")
        for name, why in value.items():
            union.setdefault(name, why)
    return dict(sorted(union.items()))


def group_cells(
    group: str, cells: Sequence[str], listing: Callable[[str], Any], *, first: bool = False
) -> dict[str, int]:
    """The cells whose group listing has ``group`` (a group subscribing to a pattern
    through the Flight door is in every cell: decision 0038), in cell order, each with
    the members it counts; only the first such with ``first``."""
    found: dict[str, int] = {}
    for cell in cells:
        document = listing(cell)
        entries = document.get("groups") if isinstance(document, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("group") == group:
                members = entry.get("members")
                found[cell] = members if isinstance(members, int) else 0
                if first:
                    return found
    return found
