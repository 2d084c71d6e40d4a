"""The OpenAPI 3.1 document of the HTTP API, written as data: the one source of the
API's shape. ``GET /openapi.json`` serves it, ``scripts/http_api_reference.py`` writes
the reference part of docs/http-api.md from it, and the suite checks the running
server against it with schemathesis (tests/protocols/http_api/test_openapi.py).

Keep it true: a route added to routes.py is added here with its parameters, bodies,
answers and errors; the tests fail on an answer the document does not allow.
"""

from __future__ import annotations

from typing import Any

from odradek import limits
from odradek.console import openapi as console  # the web console's endpoints (decision 0025)

VERSION = "1.0.0"

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_JSON: {"schema": schema}}}


def _answers(status: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A success answer and the error shape for every refusal."""
    return {
        status: {"description": description, "content": {_JSON: {"schema": schema}}},
        "default": {
            "description": "A refusal: 400 invalid, 401 unauthenticated, 404 not found, 409 conflict, "
            "413 too large, 503 unavailable (with Retry-After). The body is the error shape.",
            "content": {_JSON: {"schema": _ERROR}},
        },
    }


def _throttled(answers: dict[str, Any], quota: str) -> dict[str, Any]:
    """``answers`` and the 429 of a request that counts against a byte quota."""
    return {
        **answers,
        "429": {
            "description": f"Over the principal's (or its tenant's) `{quota}` quota: nothing was done; "
            "retry after `Retry-After` seconds (the error's code is `throttled`).",
            "headers": {
                "Retry-After": {"description": "Whole seconds to wait.", "schema": {"type": "integer"}}
            },
            "content": {_JSON: {"schema": _ERROR}},
        },
    }


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


# DESIGN §3: segments of [A-Za-z0-9_-] joined by '.', not starting with '_' (reserved).
TOPIC_NAME = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9-][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$",
    "maxLength": limits.topic_name_length_max,
}
# A topic name whose segments may be '*', or end with '>' (system topics, '_', match too).
TOPIC_PATTERN = {
    "type": "string",
    "pattern": r"^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?$|^>$",
    "maxLength": limits.topic_name_length_max,
}
# A group's name is a topic name too (its dead-letter topic is dlq.<group>).
GROUP_NAME = {**TOPIC_NAME, "maxLength": limits.group_name_length_max}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_TOPIC = _path("topic", "A topic name: segments of [A-Za-z0-9_-] joined by '.'.", TOPIC_NAME)
_KEY = _path("key", "A key: its UTF-8 text, or base64 (URL-safe allowed) with key_encoding=base64.")
_GROUP = _path("group", "A consumer group's name.", GROUP_NAME)
_MEMBER = _path(
    "member", "A member id, as the join answered it.", {"type": "string", "minLength": 1, "maxLength": 64}
)
_KEY_ENCODING = _query("key_encoding", "How the key in the path is written.", {"enum": ["text", "base64"]})
_VALUE_ENCODING = _query(
    "value_encoding",
    "auto (default): a schema'd topic's values as JSON, other values as UTF-8 text in `value` "
    "or, when not text, base64 in `value_b64`; base64: every value in `value_b64`.",
    {"enum": ["auto", "base64"]},
)
_OFFSET = _query("offset", "Start at this offset.", {"type": "integer", "minimum": 0})
_TIME = _query(
    "time",
    "Start at the first record at or after this time (ISO-8601 with an offset).",
    {"type": "string", "format": "date-time"},
)
_START = _query(
    "start", "Start at the earliest (default) or the latest offset.", {"enum": ["earliest", "latest"]}
)

_NULLABLE_STRING = {"type": ["string", "null"]}
_SETTING = {"type": ["string", "integer", "number", "null"]}
_TEXT_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# The settings a topic is created with and altered by (TopicSettings, CreateTopic).
_TOPIC_SETTINGS: dict[str, Any] = {
    "retention": _SETTING,
    "retention_bytes": _SETTING,
    "segment_bytes": _SETTING,
    "segment_age": _SETTING,
    "cleanup": {"type": "string"},
    "delete_retention": _SETTING,
    "min_compaction_lag": _SETTING,
    "min_cleanable_dirty_ratio": {"type": "number"},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every refusal: the code and details of docs/flight-protocol.md's errors.",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "description": "conflict, topic_not_found, invalid_request, ..."},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "RecordIn": {
        "type": "object",
        "additionalProperties": False,
        "description": "A record to produce. Bytes as UTF-8 text, or base64 in the *_b64 fields.",
        "properties": {
            "key": _NULLABLE_STRING,
            "key_b64": _NULLABLE_STRING,
            "value": {
                "description": "Text (its UTF-8 bytes), an object (a schema'd topic's typed value; "
                "JSON text on other topics), other JSON (its text), or null."
            },
            "value_b64": {"type": "string"},
            "headers": _TEXT_MAP,
            "headers_b64": _TEXT_MAP,
            "timestamp": {
                "type": ["integer", "string", "null"],
                "description": "Microseconds since the epoch, or ISO-8601 with an offset.",
            },
        },
    },
    "Record": {
        "type": "object",
        "description": "A stored record. `key`/`value`/`headers` hold text; bytes that are not "
        "UTF-8 come in `key_b64`/`value_b64`/`headers_b64`.",
        "required": ["offset", "timestamp", "version"],
        "properties": {
            "topic": {"type": "string"},
            "offset": {
                "type": ["integer", "null"],
                "description": "Null only on a snapshot row whose version's event was gone when it "
                "was stored.",
            },
            "timestamp": {"type": "string", "description": "ISO-8601 UTC, microseconds."},
            "key": _NULLABLE_STRING,
            "key_b64": {"type": "string"},
            "value": {},
            "value_b64": {"type": "string"},
            "headers": _TEXT_MAP,
            "headers_b64": _TEXT_MAP,
            "version": {"type": ["integer", "null"], "description": "The key's version; null without key."},
            "snapshot": {
                "type": "boolean",
                "description": "A key read with `from_snapshot=true` only: true on the snapshot row "
                "(its `value` the state, `version` the version it covers, `offset` that version's "
                "offset or null), false on the events after it.",
            },
            "state": {
                "type": ["string", "null"],
                "description": "A schema'd topic's key read with `from_snapshot=true` only: the "
                "snapshot's state on its row (whose `value` is null), null on the events.",
            },
            "state_b64": {"type": "string", "description": "`state` in base64, when it is not text."},
        },
    },
    "ProduceRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["records"],
        "properties": {
            "records": {
                "type": "array",
                "minItems": 1,
                # At most limits.http_produce_records_max (413 beyond), said in the
                # operation's description: a maxItems here would make a test tool take
                # the 413 for a failure to refuse a request the document forbids.
                "items": _ref("RecordIn"),
            },
            "expect": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Key (text) to the version it must be at (0: no records yet).",
            },
            "expect_b64": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "As expect, keys in base64.",
            },
            "expect_offset": {
                "type": ["integer", "null"],
                "description": "The topic's next offset must be this.",
            },
            "producer": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "required": ["id", "sequence"],
                "properties": {"id": {"type": "string"}, "sequence": {"type": "integer"}},
                "description": "An idempotent producer: a retry returns the first result, duplicate true.",
            },
        },
    },
    "AppendResult": {
        "type": "object",
        "required": ["base_offset", "count", "next_offset", "duplicate", "versions"],
        "properties": {
            "base_offset": {"type": "integer"},
            "count": {"type": "integer"},
            "next_offset": {"type": "integer"},
            "duplicate": {"type": "boolean"},
            "versions": {"type": "object", "additionalProperties": {"type": "integer"}},
            "versions_b64": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "Records": {
        "type": "object",
        "required": ["topic", "records", "next_offset"],
        "properties": {
            "topic": {"type": "string"},
            "records": {"type": "array", "items": _ref("Record")},
            "next_offset": {"type": "integer", "description": "Where the next read starts."},
        },
    },
    "KeyVersion": {
        "type": "object",
        "required": ["topic", "version"],
        "properties": {
            "topic": {"type": "string"},
            "key": {"type": "string"},
            "key_b64": {"type": "string"},
            "version": {"type": "integer", "description": "The key's latest version (0: none)."},
        },
    },
    "KeyRecords": {
        "type": "object",
        "required": ["topic", "version", "records", "next_version"],
        "properties": {
            "topic": {"type": "string"},
            "key": {"type": "string"},
            "key_b64": {"type": "string"},
            "version": {"type": "integer"},
            "records": {"type": "array", "items": _ref("Record")},
            "next_version": {"type": ["integer", "null"], "description": "The next page's first version."},
        },
    },
    "SnapshotRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["version"],
        "description": "A key's state as of one of its versions: `state` (UTF-8 text) or "
        "`state_b64` (base64), one of them.",
        "properties": {
            "version": {
                "type": "integer",
                "minimum": 1,
                "description": "The key's version the state covers: at most its current version, at "
                "least its latest snapshot's (the same version replaces it).",
            },
            "state": {"type": "string"},
            "state_b64": {"type": "string"},
        },
    },
    "Snapshot": {
        "type": "object",
        "required": ["topic", "version"],
        "properties": {
            "topic": {"type": "string"},
            "key": {"type": "string"},
            "key_b64": {"type": "string"},
            "version": {"type": "integer", "description": "The version the stored state covers."},
        },
    },
    "TopicList": {
        "type": "object",
        "required": ["topics", "unavailable"],
        "properties": {
            "topics": {"type": "array", "items": {"type": "string"}},
            "unavailable": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "TopicSettings": {
        "type": "object",
        "additionalProperties": False,
        "description": "Retention, segments and cleanup (docs/cli.md); durations like '7d', "
        "sizes like '1GiB'.",
        "properties": {
            **_TOPIC_SETTINGS,
        },
    },
    "CreateTopic": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": TOPIC_NAME,
            "schema": {"type": ["object", "null"], "description": "A JSON Schema or Avro schema document."},
            "compatibility": {"type": "string"},
            "exist_ok": {"type": "boolean"},
            "snapshot_every": {"type": ["integer", "null"]},
            **_TOPIC_SETTINGS,
        },
    },
    "TopicInfo": {
        "type": "object",
        "required": ["name", "first_offset", "next_offset", "records", "bytes", "config"],
        "properties": {
            "name": {"type": "string"},
            "first_offset": {"type": "integer"},
            "next_offset": {"type": "integer"},
            "records": {"type": "integer"},
            "bytes": {"type": "integer"},
            "keys": {"type": "integer"},
            "segments": {"type": "integer"},
            "config": {"type": "object"},
            "created_at": {"type": "number"},
            "incarnation": {"type": "string"},
            "status": {"type": "string"},
        },
    },
    "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "string"}}},
    "TopicSchema": {
        "type": "object",
        "required": ["topic", "schema", "registry"],
        "properties": {
            "topic": {"type": "string"},
            "schema": {
                "type": ["object", "null"],
                "properties": {
                    "version": {"type": "integer"},
                    "id": {"type": "integer"},
                    "kind": {"type": "string"},
                    "compatibility": {"type": "string"},
                    "text": {"type": "string"},
                },
            },
            "registry": {
                "type": "object",
                "description": "The topic's value subject on the Schema Registry endpoints of this listener.",
                "properties": {
                    "subject": {"type": "string"},
                    "versions": {"type": "string"},
                    "latest": {"type": "string"},
                },
            },
        },
    },
    "GroupList": {
        "type": "object",
        "required": ["groups"],
        "properties": {"groups": {"type": "array", "items": {"type": "object"}}},
    },
    "GroupInfo": {
        "type": "object",
        "description": "A group of either kind with its members and its lag per topic "
        "(docs/flight-protocol.md).",
        "required": ["group", "kind", "state", "members", "topics"],
        "properties": {
            "group": {"type": "string"},
            "kind": {"type": "string"},
            "state": {"type": "string"},
            "members": {"type": "array", "items": _ref("GroupMember")},
            "topics": {"type": "array", "items": {"type": "object"}},
        },
    },
    "GroupMember": {
        "type": "object",
        "description": "A member of a group (docs/console.md, Groups). A Kafka group's member "
        "has its client and the partitions it holds; an odradek group assigns nothing, so its "
        "members show the records they hold in flight.",
        "required": ["member", "joined_at", "idle_seconds", "in_flight", "active"],
        "properties": {
            "member": {"type": "string"},
            "joined_at": {"type": "number", "description": "Seconds since the epoch."},
            "idle_seconds": {"type": "number", "description": "Since its last call (0 while it polls)."},
            "in_flight": {"type": "integer", "description": "Deliveries it holds, not settled."},
            "active": {"type": "boolean", "description": "False: a standby member (ordering topic)."},
            "client_id": {"type": "string", "description": "Kafka: the client.id it joined with."},
            "client_host": {"type": "string", "description": "Kafka: the address it joined from."},
            "lag": {
                "type": "integer",
                "description": "The lag of what it holds: a Kafka member's, summed over its "
                "partitions with a committed offset; an ordering topic group's active member's, "
                "the group's (a standby's 0). Absent when it holds nothing of its own (ordering "
                "key or none).",
            },
            "assignment": {
                "type": "array",
                "description": "Kafka: the partitions it holds, per topic.",
                "items": {
                    "type": "object",
                    "required": ["topic", "partitions", "lag", "uncommitted"],
                    "properties": {
                        "topic": {"type": "string"},
                        "partitions": {"type": "array", "items": {"type": "integer"}},
                        "lag": {
                            "type": "integer",
                            "description": "Summed over those of its partitions with a committed offset.",
                        },
                        "uncommitted": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "description": "Its partitions with no committed offset: their lag is not known.",
                        },
                    },
                },
            },
        },
    },
    "JoinRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["pattern"],
        "properties": {
            "pattern": TOPIC_PATTERN,
            "start": {"type": ["string", "integer"]},
            "ack_timeout": {
                "type": "number",
                "description": "Also the member's lease: silent this long, it is dropped.",
            },
            "max_deliveries": {"type": ["integer", "null"]},
            "dead_letter_topic": _NULLABLE_STRING,
            "max_in_flight_per_key": {"type": ["integer", "null"]},
            "ordering": {"type": "string"},
        },
    },
    "Joined": {
        "type": "object",
        "required": ["group", "member", "options"],
        "properties": {
            "group": {"type": "string"},
            "member": {"type": "string"},
            "options": {"type": "object"},
        },
    },
    "Left": {"type": "object", "required": ["left"], "properties": {"left": {"type": "string"}}},
    "PollRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_records": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number", "minimum": 0, "maximum": limits.http_poll_seconds_max},
            "value_encoding": {"enum": ["auto", "base64"]},
        },
    },
    "Polled": {
        "type": "object",
        "required": ["member", "deliveries"],
        "properties": {
            "member": {"type": "string"},
            "deliveries": {
                "type": "array",
                "items": {
                    "allOf": [
                        _ref("Record"),
                        {
                            "type": "object",
                            "required": ["topic", "lease", "attempt"],
                            "properties": {"lease": {"type": "integer"}, "attempt": {"type": "integer"}},
                        },
                    ]
                },
            },
        },
    },
    "Settle": {
        "type": "object",
        "additionalProperties": False,
        "required": ["deliveries"],
        "properties": {
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["topic", "offset", "lease"],
                    "properties": {
                        "topic": {"type": "string"},
                        "offset": {"type": "integer"},
                        "lease": {"type": "integer"},
                    },
                },
            },
            "delay": {
                "type": "number",
                "minimum": 0,
                "description": "nack only: redeliver after this many seconds.",
            },
        },
    },
    "Settled": {
        "type": "object",
        "required": ["settled", "rejected"],
        "properties": {
            "settled": {"type": "integer"},
            "rejected": {"type": "array", "items": {"type": "object"}},
        },
    },
}


# The W3C Trace Context request headers a produce copies into each record without a
# ``traceparent`` header of its own (docs/observability.md, trace context).
_TRACE_CONTEXT: list[dict[str, Any]] = [
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context (level 1): copied into the headers of each record that has no "
        "`traceparent` header of its own. A malformed one is refused (400, nothing appended).",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    },
    {
        "name": "tracestate",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context vendor state (at most 32 `key=value` members, 512 characters), "
        "copied with `traceparent`.",
        "schema": {"type": "string", "maxLength": 512},
    },
]


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    answers: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "responses": answers,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


PATHS: dict[str, Any] = {
    "/v1/topics": {
        "get": _operation(
            "listTopics",
            "List topics",
            "Topic names, sorted; `pattern` keeps those it matches (`*` one segment, `>` the rest).",
            _answers("200", "The topics.", _ref("TopicList")),
            parameters=[_query("pattern", "A topic pattern such as orders.>.", TOPIC_PATTERN)],
        ),
        "post": _operation(
            "createTopic",
            "Create a topic",
            "Creates a topic with its settings and, optionally, a schema. 409 topic_exists unless exist_ok.",
            _answers("201", "The topic.", _ref("TopicInfo")),
            body=_body(_ref("CreateTopic")),
        ),
    },
    "/v1/topics/{topic}": {
        "parameters": [_TOPIC],
        "get": _operation(
            "describeTopic",
            "Describe a topic",
            "Offsets, sizes, settings and status.",
            _answers("200", "The topic.", _ref("TopicInfo")),
        ),
        "patch": _operation(
            "alterTopic",
            "Alter a topic's settings",
            "Changes the settings given; an unknown setting or a bad value changes nothing.",
            _answers("200", "The topic with its new settings.", _ref("TopicInfo")),
            body=_body(_ref("TopicSettings")),
        ),
        "delete": _operation(
            "deleteTopic",
            "Delete a topic",
            "Deletes the topic and its records.",
            _answers("200", "Deleted.", _ref("Deleted")),
        ),
    },
    "/v1/topics/{topic}/records": {
        "parameters": [_TOPIC],
        "post": _operation(
            "produce",
            "Append records",
            f"Appends the records atomically (at most {limits.http_produce_records_max} a request) once "
            "durable. With `expect` / `expect_offset` nothing is written unless every expectation holds "
            "(409 conflict, naming the key, the expected and the actual version). With `producer` a "
            "retry returns the first result with `duplicate: true`. A topic of a tenant whose topics store "
            "its `storage_bytes` quota or more refuses it: 403 `quota_exceeded` (details `tenant`, `used`, "
            "`quota`), nothing written.",
            _throttled(
                _answers("200", "What the append assigned.", _ref("AppendResult")), "producer_byte_rate"
            ),
            body=_body(_ref("ProduceRequest")),
            parameters=_TRACE_CONTEXT,
        ),
        "get": _operation(
            "read",
            "Read records",
            f"Up to `limit` records (default 100, at most {limits.http_read_records_max}) from `offset`, "
            "`time`, or `start` (earliest by default), without waiting. Read on from `next_offset`.",
            _throttled(_answers("200", "The records.", _ref("Records")), "consumer_byte_rate"),
            parameters=[
                _OFFSET,
                _TIME,
                _START,
                _query(
                    "limit",
                    "Records at most.",
                    {"type": "integer", "minimum": 1, "maximum": limits.http_read_records_max},
                ),
                _VALUE_ENCODING,
            ],
        ),
    },
    "/v1/topics/{topic}/events": {
        "parameters": [_TOPIC],
        "get": _operation(
            "tail",
            "Tail a topic (Server-Sent Events)",
            "A `text/event-stream`: one `record` event per record, its `id` the offset and its data the "
            "record's JSON. Starts after `Last-Event-ID` (a reconnect resumes), else at `offset`, `time` "
            "or `start`, else at the end. A comment line every "
            f"{limits.http_sse_heartbeat_seconds:g} s while nothing arrives. Ends with an `end` event "
            "after `limit` records or when the server stops, with an `error` event on an error (its "
            "principal's token revoked or user removed: `unauthenticated`). Over the `consumer_byte_rate` "
            "quota it is refused 429 before it starts; once open, its events wait out the throttle.",
            _throttled(
                {
                    "200": {
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "default": {"description": "A refusal.", "content": {_JSON: {"schema": _ERROR}}},
                },
                "consumer_byte_rate",
            ),
            parameters=[
                _OFFSET,
                _TIME,
                _START,
                _query("limit", "End the stream after this many records.", {"type": "integer", "minimum": 1}),
                _VALUE_ENCODING,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The id (offset) of the last event received.",
                    "schema": {"type": "string"},
                },
            ],
        ),
    },
    "/v1/topics/{topic}/schema": {
        "parameters": [_TOPIC],
        "get": _operation(
            "getTopicSchema",
            "A topic's schema",
            "The topic's newest schema (null without one) and its subject on the Schema Registry "
            "endpoints of this listener, where versions are listed, checked and registered.",
            _answers("200", "The schema and its registry links.", _ref("TopicSchema")),
        ),
    },
    "/v1/topics/{topic}/keys/{key}": {
        "parameters": [_TOPIC, _KEY],
        "get": _operation(
            "keyVersion",
            "A key's version",
            "The key's latest version (0 when it has no records): what `expect` compares with.",
            _answers("200", "The version.", _ref("KeyVersion")),
            parameters=[_KEY_ENCODING],
        ),
    },
    "/v1/topics/{topic}/keys/{key}/records": {
        "parameters": [_TOPIC, _KEY],
        "get": _operation(
            "readKey",
            "A key's records",
            "The key's records in version order from `from_version` (default 1), at most `limit` "
            "(default 100), up to `to_version`; read on from `next_version`. With "
            "`from_snapshot=true` (without `from_version` and `to_version`): the key's latest "
            "snapshot first (`snapshot: true`; on a topic with a schema its state in `state` and "
            "its `value` null), then at most `limit` events after it (`snapshot: false`); without "
            "a snapshot, the key's stream from its first version, each `snapshot: false`. Read on "
            "from `next_version` without `from_snapshot`.",
            _throttled(_answers("200", "The records.", _ref("KeyRecords")), "consumer_byte_rate"),
            parameters=[
                _KEY_ENCODING,
                _query("from_version", "First version.", {"type": "integer", "minimum": 1}),
                _query("to_version", "Last version.", {"type": "integer", "minimum": 1}),
                _query(
                    "limit",
                    "Records at most (with `from_snapshot`: events after the snapshot row).",
                    {"type": "integer", "minimum": 1, "maximum": limits.http_read_records_max},
                ),
                _query(
                    "from_snapshot",
                    "Start at the key's latest snapshot (false by default).",
                    {"enum": ["true", "false"]},
                ),
                _VALUE_ENCODING,
            ],
        ),
    },
    "/v1/topics/{topic}/keys/{key}/snapshot": {
        "parameters": [_TOPIC, _KEY],
        "put": _operation(
            "snapshotKey",
            "Store a key's snapshot",
            "Stores the key's state as of `version` (at most "
            f"{limits.snapshot_state_bytes_max // 1024} KiB, 413 beyond) once durable, the events it "
            "covers durable first; the same version again replaces it. Refused, with nothing "
            "stored: a version above the key's current one (400), below its latest snapshot's "
            "(409 conflict: details `expected` the version given, `actual` the latest snapshot's).",
            _answers("200", "The snapshot stored.", _ref("Snapshot")),
            parameters=[_KEY_ENCODING],
            body=_body(_ref("SnapshotRequest")),
        ),
    },
    "/v1/groups": {
        "get": _operation(
            "listGroups",
            "List consumer groups",
            "Groups of both kinds (odradek and kafka).",
            _answers("200", "The groups.", _ref("GroupList")),
        ),
    },
    "/v1/groups/{group}": {
        "parameters": [_GROUP],
        "get": _operation(
            "describeGroup",
            "Describe a group",
            "Its members and its lag per topic.",
            _answers("200", "The group.", _ref("GroupInfo")),
        ),
        "delete": _operation(
            "deleteGroup",
            "Delete a group",
            "Refused while it has members.",
            _answers("200", "Deleted.", _ref("Deleted")),
        ),
    },
    "/v1/groups/{group}/members": {
        "parameters": [_GROUP],
        "post": _operation(
            "joinGroup",
            "Join a group",
            "Adds a member reading `pattern`. The member holds a lease: silent for `ack_timeout` "
            "seconds (no poll, ack or nack), it is dropped and its deliveries go back to the group "
            "(404 unknown_member then: join again).",
            _answers("201", "The member.", _ref("Joined")),
            body=_body(_ref("JoinRequest")),
        ),
    },
    "/v1/groups/{group}/members/{member}": {
        "parameters": [_GROUP, _MEMBER],
        "delete": _operation(
            "leaveGroup",
            "Leave a group",
            "The member's unsettled deliveries go back to the group at once.",
            _answers("200", "Left.", _ref("Left")),
        ),
    },
    "/v1/groups/{group}/members/{member}/poll": {
        "parameters": [_GROUP, _MEMBER],
        "post": _operation(
            "poll",
            "Poll deliveries",
            f"Up to `max_records` deliveries (default 100), waiting up to `timeout` seconds (default 1, "
            f"at most {limits.http_poll_seconds_max:g}) for the first. Records of one key are delivered "
            "one at a time, in order; ack each by (topic, offset, lease).",
            _throttled(_answers("200", "The deliveries.", _ref("Polled")), "consumer_byte_rate"),
            body=_body(_ref("PollRequest"), required=False),
        ),
    },
    "/v1/groups/{group}/members/{member}/ack": {
        "parameters": [_GROUP, _MEMBER],
        "post": _operation(
            "ack",
            "Acknowledge deliveries",
            "Settles them; `rejected` lists those that were not (with why).",
            _answers("200", "What was settled.", _ref("Settled")),
            body=_body(_ref("Settle")),
        ),
    },
    "/v1/groups/{group}/members/{member}/nack": {
        "parameters": [_GROUP, _MEMBER],
        "post": _operation(
            "nack",
            "Give deliveries back",
            "Each is redelivered after `delay` seconds, or dead-lettered after max_deliveries.",
            _answers("200", "What was settled.", _ref("Settled")),
            body=_body(_ref("Settle")),
        ),
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Odradek HTTP API",
        "version": VERSION,
        "description": "Produce, read, tail (Server-Sent Events), keys, topics and consumer groups "
        "over HTTP and JSON. See docs/http-api.md.",
    },
    "servers": [{"url": "/"}],
    "security": [{}, {"basic": []}, {"bearer": []}],
    "paths": {**PATHS, **console.PATHS},
    "components": {
        "schemas": {**SCHEMAS, **console.SCHEMAS},
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic", "description": "A user of `odradek user add`."},
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token of `odradek token create`, or a JWT.",
            },
        },
    },
}
