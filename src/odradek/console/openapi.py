"""The console's endpoints in the HTTP API's OpenAPI document (api.py answers them).

Plain data, importing nothing of the HTTP API: its document (protocols/http_api/
openapi.py) adds these paths and schemas to its own.
"""

from __future__ import annotations

from typing import Any

from odradek import limits

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"
_REFUSAL = {
    "description": "A refusal: 400 invalid, 401 unauthenticated, 404 not found, 503 unavailable "
    "(with Retry-After). The body is the error shape.",
    "content": {_JSON: {"schema": _ERROR}},
}
# As the HTTP API's TOPIC_PATTERN: a topic name whose segments may be '*', or end with '>'.
_PATTERN = {
    "type": "string",
    "minLength": 1,
    "maxLength": limits.topic_name_length_max,
    "pattern": r"^([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?$|^>$",
}
_RATE = {"type": ["number", "null"], "minimum": 0}

SCHEMAS: dict[str, Any] = {
    "ConsoleTopic": {
        "type": "object",
        "required": ["name", "records", "bytes", "next_offset", "records_per_second", "bytes_per_second"],
        "properties": {
            "name": {"type": "string"},
            "records": {"type": "integer"},
            "bytes": {"type": "integer"},
            "keys": {"type": "integer"},
            "first_offset": {"type": "integer"},
            "next_offset": {"type": "integer"},
            "segments": {"type": "integer"},
            "cleanup": {"type": "string"},
            "schema": {"type": ["string", "null"], "description": "AVRO, JSON or ARROW; null: none"},
            "status": {"type": "string"},
            "created_at": {"type": "number"},
            "records_per_second": {**_RATE, "description": "null until a second sample"},
            "bytes_per_second": _RATE,
        },
    },
    "ConsoleTopics": {
        "type": "object",
        "required": ["topics", "truncated", "topics_max", "rate_window_seconds"],
        "properties": {
            "topics": {"type": "array", "items": {"$ref": "#/components/schemas/ConsoleTopic"}},
            "truncated": {"type": "boolean"},
            "topics_max": {"type": "integer"},
            "rate_window_seconds": {"type": ["number", "null"]},
            "unavailable": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "ConsoleCluster": {
        "type": "object",
        "required": ["clustered"],
        "properties": {
            "clustered": {"type": "boolean"},
            "status": {"type": "object", "description": "The agent's cluster_status"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/v1/console/topics": {
        "get": {
            "operationId": "consoleTopics",
            "summary": "Topics with sizes and rates (the web console)",
            "description": "Every topic (or those `pattern` matches, at most "
            f"{limits.console_topics_max:,}) with its records, bytes and keys, and its records/s "
            "and bytes/s since the oldest of the last samples: each call takes a sample (one a "
            f"second at most, the last {limits.console_rate_samples_max} kept); rates are null "
            "until there is an earlier one.",
            "parameters": [
                {
                    "name": "pattern",
                    "in": "query",
                    "required": False,
                    "description": "A topic pattern such as orders.>.",
                    "schema": _PATTERN,
                }
            ],
            "responses": {
                "200": {
                    "description": "The topics.",
                    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ConsoleTopics"}}},
                },
                "default": _REFUSAL,
            },
        }
    },
    "/v1/console/tail": {
        "get": {
            "operationId": "consoleTail",
            "summary": "Tail a topic or a pattern (Server-Sent Events; the web console)",
            "description": "A `text/event-stream` of every topic `pattern` matches (at most "
            f"{limits.console_tail_topics_max}), including topics created while it runs (from "
            "their first record): one `record` event per record, its data the record's JSON with "
            "its `topic`. Events carry no id: a reconnect starts again at the end. A comment line "
            f"every {limits.http_sse_heartbeat_seconds:g} s while nothing arrives; an `end` event "
            "when the server stops, an `error` event on an error.",
            "parameters": [
                {
                    "name": "pattern",
                    "in": "query",
                    "required": True,
                    "description": "A topic name, or a pattern such as orders.>.",
                    "schema": _PATTERN,
                },
                {
                    "name": "start",
                    "in": "query",
                    "required": False,
                    "description": "Where the topics matching now start: at their end (latest, the "
                    f"default), {limits.console_tail_recent_records} offsets before it (recent) or at "
                    "their first record (earliest).",
                    "schema": {"enum": ["latest", "recent", "earliest"]},
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "default": _REFUSAL,
            },
        }
    },
    "/v1/console/cluster": {
        "get": {
            "operationId": "consoleCluster",
            "summary": "The cluster's agents (the web console)",
            "description": "On a cluster agent, its `cluster_status` (what `odradek cluster status` "
            'shows); on a single node `{"clustered": false}`.',
            "responses": {
                "200": {
                    "description": "The cluster status.",
                    "content": {_JSON: {"schema": {"$ref": "#/components/schemas/ConsoleCluster"}}},
                },
                "default": _REFUSAL,
            },
        }
    },
}

# The console's routes, as the HTTP API's tests compare the document with the routes.
ROUTES = (("GET", "/v1/console/topics"), ("GET", "/v1/console/tail"), ("GET", "/v1/console/cluster"))
