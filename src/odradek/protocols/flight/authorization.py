"""Authorization on the Flight door: which operation on which resource each call is,
asked of the server's authorizer (security/authorizer.py) before anything is done.

* DoPut and the append stream: ``write`` on the topic, for each append.
* DoGet: ``read`` on the topic (a fetch, a key's records, a read of one topic); a
  wildcard read yields only the topics the principal may read: each batch is filtered on
  its ``topic`` column (Arrow ``is_in`` against the batch's allowed topics, one decision
  per distinct topic, remembered), so a topic created later is checked as it appears.
* DoAction: the table :data:`ACTIONS` (create, delete, alter, describe, read or write on a
  topic; describe or delete on a group); ``list_topics`` and ``list_groups`` answer only
  what the principal may describe; a view's reads need ``read`` on every topic it folds;
  making or deleting a view and a handover take an admin.
* DoExchange (a consumer group): ``read`` on the group and on the topics of its pattern:
  a wildcard pattern must be covered by bindings allowing every topic it can match and
  must meet no deny for the principal's reads (``Authorizer.covers``).
* ListFlights and GetFlightInfo: ``describe`` on the topics.

A refusal is :class:`~odradek.errors.Unauthorized` (gRPC UNAUTHORIZED, the operation and
the resource in its message), logged at info by the authorizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import OdradekError, Unauthorized
from odradek.names import is_pattern
from odradek.node import Node
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal

# action -> (operation, resource type, field of the body naming the resource)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "create_topic": ("create", "topic", "name"),
    "delete_topic": ("delete", "topic", "name"),
    "describe_topic": ("describe", "topic", "name"),
    "alter_topic": ("alter", "topic", "name"),
    "verify_topic": ("describe", "topic", "name"),
    "repair_topic": ("alter", "topic", "name"),
    "key_version": ("read", "topic", "topic"),
    "snapshot": ("write", "topic", "topic"),
    "set_schema": ("alter", "topic", "topic"),
    "set_compatibility": ("alter", "topic", "topic"),
    "get_schema": ("describe", "topic", "topic"),
    "schema_versions": ("describe", "topic", "topic"),
    "check_schema": ("describe", "topic", "topic"),
    "describe_group": ("describe", "group", "group"),
    "delete_group": ("delete", "group", "group"),
    "reset_offsets": ("read", "group", "group"),
    "wait_for": ("write", "topic", "topic"),
    "check_waiters": ("write", "topic", "topic"),
    "partition_map": ("describe", "topic", "topic"),
}
# Reads of a view: ``read`` on every topic its pattern names (views/view.py).
VIEW_READS = frozenset({"view_get", "view_scan", "describe_view"})
# Actions of the cluster itself: an admin's (views run code; a handover moves the data).
ADMIN_ACTIONS = frozenset({"handover", "create_view", "delete_view", "release_topic", "adopt_topic"})


def _view_pattern(node: Node, name: str) -> str | None:
    try:
        pattern: str = node.views.view(name).definition.pattern
    except OdradekError:
        return None  # the action says the view does not exist
    return pattern


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}  # the action refuses it with its own message
    return body if isinstance(body, dict) else {}


def check_action(
    authorizer: Authorizer, principal: Principal, action: str, raw: bytes, node: Node | None = None
) -> None:
    """Unauthorized unless ``principal`` may run ``action`` on what its body names."""
    if principal.admin:
        return
    if action in ADMIN_ACTIONS:
        raise Unauthorized(authorizer.refusal(principal, "alter", "cluster"))
    if action in VIEW_READS and node is not None:
        name = _body(raw).get("name")
        pattern = _view_pattern(node, name) if isinstance(name, str) else None
        if pattern is not None and not (
            authorizer.covers(principal, "read", "topic", pattern)
            if is_pattern(pattern)
            else authorizer.allowed(principal, "read", "topic", pattern)
        ):
            raise Unauthorized(
                f"{principal} is not authorized to read the topics of view {name!r} ({pattern!r}; "
                "odradek acl add grants it)"
            )
        return
    wanted = ACTIONS.get(action)
    if wanted is None:
        return  # ping, cluster status, listings (filtered), views (read their own checks)
    operation, resource_type, field = wanted
    name = _body(raw).get(field)
    if isinstance(name, str):
        authorizer.check(principal, operation, resource_type, name)


def filter_listing(authorizer: Authorizer, principal: Principal, action: str, result: bytes) -> bytes:
    """``list_topics`` and ``list_groups`` without what ``principal`` may not describe."""
    if principal.admin or action not in ("list_topics", "list_groups"):
        return result
    answer = json.loads(result)
    if action == "list_topics":
        answer["topics"] = authorizer.filter(principal, "describe", "topic", answer["topics"])
        answer["unavailable"] = authorizer.filter(
            principal, "describe", "topic", answer.get("unavailable", [])
        )
    else:
        allowed = set(authorizer.filter(principal, "describe", "group", answer["groups"]))
        answer["groups"] = [group for group in answer["groups"] if group in allowed]
        answer["listing"] = [entry for entry in answer.get("listing", []) if entry.get("group") in allowed]
    return json.dumps(answer).encode()


def check_read(authorizer: Authorizer, principal: Principal, topic_or_pattern: str) -> None:
    """A read of one topic: ``read`` on it (a wildcard read is filtered instead)."""
    if not is_pattern(topic_or_pattern):
        authorizer.check(principal, "read", "topic", topic_or_pattern)


def only_readable(
    authorizer: Authorizer, principal: Principal, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """A wildcard read's batches without the rows of topics ``principal`` may not read."""
    for batch in batches:
        if principal.admin or batch.num_rows == 0:
            yield batch
            continue
        topics = batch.column("topic")
        present = pc.unique(topics).to_pylist()
        allowed = authorizer.filter(principal, "read", "topic", present)
        if len(allowed) == len(present):
            yield batch
        elif allowed:
            yield batch.filter(pc.is_in(topics, value_set=pa.array(allowed, topics.type)))


def check_subscription(authorizer: Authorizer, principal: Principal, group: str, pattern: str) -> None:
    """A consumer group's subscription: ``read`` on the group and on its topics."""
    authorizer.check(principal, "read", "group", group)
    if not is_pattern(pattern):
        authorizer.check(principal, "read", "topic", pattern)
    elif not authorizer.covers(principal, "read", "topic", pattern):
        raise Unauthorized(
            f"{principal} is not authorized to read every topic of {pattern!r} (no access control "
            "binding covers the whole pattern, or one denies such reads; odradek acl add grants it)"
        )
