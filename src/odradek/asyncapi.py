"""AsyncAPI 3.0.0 documents describing Odradek topics, built from their schemas.

A topic's schema is what producers and consumers of other teams need to know; an
AsyncAPI document is the form their tools (code generators, catalogues, docs sites)
read. This module only builds the document as a dict and renders it as text: asking
the topics and schemas is the given client's business, writing the text the caller's.

Each topic becomes one channel (address = the topic name) with one message, a
``receive`` and a ``send`` operation, a message component and a schema component. The
payload is the topic's schema in its own language (Avro and JSON Schema as multi-format
schema objects), an Arrow schema converted to the equivalent JSON Schema, or opaque
bytes for a schemaless topic. The schema's version, global id, kind and the topic's
compatibility mode ride along in ``x-odradek-*`` extension fields.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import pyarrow as pa

from odradek.errors import InvalidRequest, TopicNotFound
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY
from odradek.types import SchemaInfo

ASYNCAPI_VERSION = "3.0.0"
AVRO_SCHEMA_FORMAT = "application/vnd.apache.avro;version=1.9.0"
JSON_SCHEMA_FORMAT_PREFIX = "application/schema+json;version="
# The draft assumed for a JSON Schema that names none: AsyncAPI 3.0.0 requires tools
# to support draft-07, and a schema without ``$schema`` is read as draft-07 there.
DEFAULT_JSON_SCHEMA_DRAFT = "draft-07"
# The latest version of the Kafka bindings the AsyncAPI 3.0.0 JSON Schema knows.
KAFKA_BINDING_VERSION = "0.5.0"

# ``$schema`` URIs of the JSON Schema drafts, by the name AsyncAPI's schemaFormat uses.
_JSON_SCHEMA_DRAFTS = {
    "draft-04": "draft-04",
    "draft-06": "draft-06",
    "draft-07": "draft-07",
    "2019-09": "2019-09",
    "2020-12": "2020-12",
}

_KEY_DESCRIPTION = (
    "The record key: opaque bytes, or absent. Records of one key are ordered and numbered "
    "by version 1, 2, 3...; a key's records can be replayed on their own."
)
_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Record headers: names (text) mapped to opaque byte values.",
    "additionalProperties": {"type": "string", "contentEncoding": "binary"},
}
_SCHEMALESS_PAYLOAD: dict[str, Any] = {
    "type": "string",
    "contentEncoding": "binary",
    "description": "Opaque bytes: the topic has no schema, so Odradek neither checks nor interprets values.",
}

# Inclusive value ranges of Arrow's integer types, for JSON Schema minimum/maximum.
_INTEGER_BOUNDS: dict[pa.DataType, tuple[int, int]] = {
    pa.int8(): (-(2**7), 2**7 - 1),
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1),
    pa.uint8(): (0, 2**8 - 1),
    pa.uint16(): (0, 2**16 - 1),
    pa.uint32(): (0, 2**32 - 1),
    pa.uint64(): (0, 2**64 - 1),
}


class TopicCatalog(Protocol):
    """What the document needs of a client: embedded, remote, or anything alike."""

    def list_topics(self, pattern: str) -> list[str]: ...

    def get_schema(self, topic: str) -> SchemaInfo | None: ...


@dataclass(frozen=True)
class Server:
    """One way in to the topics, as an AsyncAPI server object names it."""

    name: str
    host: str
    protocol: str
    description: str
    protocol_version: str | None = None
    # The Schema Registry serving this server's clients (the Kafka door's), if any.
    registry_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        server: dict[str, Any] = {"host": self.host, "protocol": self.protocol}
        if self.protocol_version is not None:
            server["protocolVersion"] = self.protocol_version
        server["description"] = self.description
        if self.registry_url is not None and self.protocol == "kafka":
            server["bindings"] = {
                "kafka": {
                    "schemaRegistryUrl": self.registry_url,
                    "schemaRegistryVendor": "confluent",
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        return server


def flight_server(url: str) -> Server:
    """The Arrow Flight server at ``url`` (``grpc://HOST:PORT``, ``grpc+tls://...``)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("grpc") or not parts.netloc:
        raise InvalidRequest(f"not an Arrow Flight URL (grpc://HOST:PORT): {url!r}")
    secure = parts.scheme == "grpc+tls"
    return Server(
        name="flight",
        host=parts.netloc,
        protocol="grpc",
        description=(
            "Odradek's native protocol, Arrow Flight over gRPC"
            + (" with TLS" if secure else "")
            + f" ({url}): `odradek.connect(url)`, the `odradek` command line, any Flight client."
        ),
    )


def kafka_server(address: str, registry_url: str | None = None) -> Server:
    """The Kafka door at ``address`` (``HOST:PORT``), and the Schema Registry door at
    ``registry_url`` (``http://HOST:PORT``) its clients' serializers use, if given."""
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise InvalidRequest(f"the Kafka address must be HOST:PORT, not {address!r}")
    if registry_url is not None and (
        urlsplit(registry_url).scheme not in ("http", "https") or not urlsplit(registry_url).netloc
    ):
        raise InvalidRequest(f"the Schema Registry URL must be http(s)://HOST:PORT, not {registry_url!r}")
    description = "Odradek's Kafka wire-protocol door: every topic is a Kafka topic of the same name."
    if registry_url is not None:
        description += (
            f" Its Schema Registry door ({registry_url}) serves each schema'd topic's schema as the "
            "subject `<topic>-value`."
        )
    return Server(
        name="kafka", host=address, protocol="kafka", description=description, registry_url=registry_url
    )


def build_document(
    client: TopicCatalog,
    pattern: str,
    *,
    servers: Sequence[Server] = (),
    title: str = "Odradek topics",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document for the topics matching ``pattern`` (``*`` one name
    segment, ``>`` the rest). Raises TopicNotFound when no topic matches."""
    topics = client.list_topics(pattern)
    if not topics:
        raise TopicNotFound(f"no topic matches {pattern!r}")
    with_kafka = any(server.protocol == "kafka" for server in servers)
    with_registry = any(server.protocol == "kafka" and server.registry_url for server in servers)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in topics:
        info = client.get_schema(topic)
        channels[topic] = _channel(topic, info)
        operations.update(_operations(topic))
        messages[topic] = _message(topic, info, with_kafka, with_registry)
        schemas[topic] = payload_schema(topic, info)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": f"The Odradek topics matching `{pattern}`, with their schemas.",
        },
    }
    if servers:
        document["servers"] = {server.name: server.to_json() for server in servers}
    document["channels"] = channels
    document["operations"] = operations
    document["components"] = {"messages": messages, "schemas": schemas}
    return document


def document_text(document: dict[str, Any], style: str = "json") -> str:
    """The document as JSON (``style="json"``) or YAML (``"yaml"``, needs PyYAML)."""
    if style == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if style == "yaml":
        try:
            import yaml
        except ImportError as exc:
            raise InvalidRequest("YAML output needs PyYAML (pip install pyyaml); use JSON") from exc
        text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return text
    raise InvalidRequest(f"unknown document format {style!r}: json or yaml")


def yaml_available() -> bool:
    """Whether :func:`document_text` can write YAML here."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def _channel(topic: str, info: SchemaInfo | None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "address": topic,
        "title": topic,
        "description": _topic_description(topic, info),
        "messages": {"record": {"$ref": f"#/components/messages/{topic}"}},
    }
    if info is not None:
        channel["x-odradek-schema-kind"] = info.kind
        channel["x-odradek-schema-version"] = info.version
        channel["x-odradek-schema-id"] = info.id
        channel["x-odradek-compatibility"] = info.compatibility
    return channel


def _topic_description(topic: str, info: SchemaInfo | None) -> str:
    if info is None:
        return f"Topic `{topic}`: schemaless, values are opaque bytes."
    return (
        f"Topic `{topic}`: values follow its {info.kind} schema (version {info.version}, "
        f"id {info.id}, compatibility {info.compatibility}); appends that do not conform are "
        "refused. Reads return the values as a typed Arrow struct column `value`."
    )


def _operations(topic: str) -> dict[str, Any]:
    channel = {"$ref": f"#/channels/{topic}"}
    message = [{"$ref": f"#/channels/{topic}/messages/record"}]
    return {
        f"{topic}.receive": {
            "action": "receive",
            "channel": channel,
            "messages": message,
            "summary": f"Read or consume the records of `{topic}` (alone, by pattern, or in a group).",
        },
        f"{topic}.send": {
            "action": "send",
            "channel": channel,
            "messages": message,
            "summary": f"Append records to `{topic}`.",
        },
    }


def _message(topic: str, info: SchemaInfo | None, with_kafka: bool, with_registry: bool) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": topic,
        "title": f"A record of {topic}",
        "description": f"{_KEY_DESCRIPTION} The value is the payload.",
        "headers": copy.deepcopy(_HEADERS_SCHEMA),
        "payload": {"$ref": f"#/components/schemas/{topic}"},
        "x-odradek-key": {"type": "string", "contentEncoding": "binary", "description": _KEY_DESCRIPTION},
    }
    if info is None:
        message["contentType"] = "application/octet-stream"
    elif info.kind == "JSON":
        message["contentType"] = "application/json"
    if with_kafka:
        binding: dict[str, Any] = {"key": {"type": "string", "description": _KEY_DESCRIPTION}}
        if with_registry and info is not None:
            # Confluent's wire format: byte 0, the 4-byte schema id, then the payload;
            # the subject is named after the topic (TopicNameStrategy).
            binding["schemaIdLocation"] = "payload"
            binding["schemaIdPayloadEncoding"] = "confluent"
            binding["schemaLookupStrategy"] = "TopicNameStrategy"
        binding["bindingVersion"] = KAFKA_BINDING_VERSION
        message["bindings"] = {"kafka": binding}
    return message


def payload_schema(topic: str, info: SchemaInfo | None) -> dict[str, Any]:
    """The schema object of a topic's values, as the document's components hold it."""
    if info is None:
        return copy.deepcopy(_SCHEMALESS_PAYLOAD)
    if info.kind == "AVRO":
        return {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": copy.deepcopy(info.schema)}
    if info.kind == "JSON":
        schema = copy.deepcopy(info.schema)
        return {"schemaFormat": JSON_SCHEMA_FORMAT_PREFIX + json_schema_draft(schema), "schema": schema}
    if info.kind == "ARROW":
        converted = arrow_to_json_schema(info.value_type)
        converted["title"] = topic
        return {
            "schemaFormat": JSON_SCHEMA_FORMAT_PREFIX + DEFAULT_JSON_SCHEMA_DRAFT,
            "schema": converted,
            "x-odradek-arrow-schema": info.text,
        }
    raise InvalidRequest(f"topic {topic!r} has a schema of unknown kind {info.kind!r}")


def json_schema_draft(schema: Any) -> str:
    """The draft a JSON Schema declares in ``$schema`` (draft-07 when it declares none)."""
    declared = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(declared, str):
        for marker, draft in _JSON_SCHEMA_DRAFTS.items():
            if marker in declared:
                return draft
    return DEFAULT_JSON_SCHEMA_DRAFT


# -- Arrow → JSON Schema -------------------------------------------------------------------


def arrow_to_json_schema(value_type: pa.StructType) -> dict[str, Any]:
    """The JSON Schema (draft-07) of the JSON form of values of ``value_type``.

    Reads the facts a compiled schema keeps on its fields: ``nullable`` (the field may
    be absent or null), defaults and enum symbols in the field metadata.
    """
    schema = _struct_schema(value_type)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


def _struct_schema(struct: pa.StructType) -> dict[str, Any]:
    properties = {field.name: _field_schema(field) for field in struct}
    required = [field.name for field in struct if not field.nullable]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _field_schema(field: pa.Field) -> dict[str, Any]:
    schema = _type_schema(field.type)
    metadata = field.metadata or {}
    if ENUM_KEY in metadata:
        schema = {"type": "string", "enum": json.loads(metadata[ENUM_KEY])}
    if field.nullable:
        schema = _or_null(schema)
    if DEFAULT_KEY in metadata:
        schema["default"] = json.loads(metadata[DEFAULT_KEY])
    return schema


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind == "null":
        return schema
    if isinstance(kind, str):
        widened = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            widened["enum"] = [*schema["enum"], None]
        return widened
    return {"anyOf": [schema, {"type": "null"}]}


def _type_schema(arrow_type: pa.DataType) -> dict[str, Any]:
    if pa.types.is_dictionary(arrow_type):
        return _type_schema(arrow_type.value_type)
    if pa.types.is_null(arrow_type):
        return {"type": "null"}
    if pa.types.is_boolean(arrow_type):
        return {"type": "boolean"}
    if pa.types.is_integer(arrow_type):
        minimum, maximum = _INTEGER_BOUNDS[arrow_type]
        return {"type": "integer", "minimum": minimum, "maximum": maximum}
    if pa.types.is_floating(arrow_type):
        return {"type": "number"}
    if pa.types.is_decimal(arrow_type):
        return {"type": "number", "description": f"decimal({arrow_type.precision}, {arrow_type.scale})"}
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"type": "string"}
    if pa.types.is_fixed_size_binary(arrow_type):
        return {
            "type": "string",
            "contentEncoding": "base64",
            "description": f"{arrow_type.byte_width} bytes",
        }
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return {"type": "string", "contentEncoding": "base64"}
    if pa.types.is_timestamp(arrow_type):
        return {"type": "string", "format": "date-time"}
    if pa.types.is_date(arrow_type):
        return {"type": "string", "format": "date"}
    if pa.types.is_time(arrow_type):
        return {"type": "string", "format": "time"}
    if pa.types.is_duration(arrow_type):
        return {"type": "integer", "description": f"a duration in {arrow_type.unit}"}
    if pa.types.is_struct(arrow_type):
        return _struct_schema(arrow_type)
    if pa.types.is_map(arrow_type):
        return _map_schema(arrow_type)
    if pa.types.is_fixed_size_list(arrow_type):
        size = arrow_type.list_size
        return {
            "type": "array",
            "items": _field_schema(arrow_type.value_field),
            "minItems": size,
            "maxItems": size,
        }
    if (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_list_view(arrow_type)
    ):
        return {"type": "array", "items": _field_schema(arrow_type.value_field)}
    return {"description": f"Arrow type {arrow_type}, which has no JSON Schema equivalent"}


def _map_schema(map_type: pa.MapType) -> dict[str, Any]:
    key_type = map_type.key_type
    if pa.types.is_string(key_type) or pa.types.is_large_string(key_type):
        return {"type": "object", "additionalProperties": _field_schema(map_type.item_field)}
    entry = {
        "type": "object",
        "properties": {"key": _type_schema(key_type), "value": _field_schema(map_type.item_field)},
        "required": ["key", "value"],
    }
    return {"type": "array", "items": entry, "description": "map entries as key/value pairs"}
