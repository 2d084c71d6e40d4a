"""JSON Schema topics: compiling a JSON Schema into a typed struct column and checking
its rules on whole arrays.

Supported (drafts 07 and 2020-12 keywords): ``type`` (one type, or one type and
``"null"``), ``properties``, ``required``, ``additionalProperties`` (an object with
only a schema-valued ``additionalProperties`` is a map), ``items``, ``enum``,
``const``, ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``,
``multipleOf`` (integers), ``minLength``/``maxLength``, ``pattern``,
``minItems``/``maxItems``, ``format: date-time`` (kept as a string, checked), local
``$ref`` to ``#/$defs/…`` or ``#/definitions/…``, ``anyOf``/``oneOf`` of ``{"type":
"null"}`` and one schema, and annotations. Anything else is refused with the keyword
and its path: a topic stores declared fields as columns, so a rule it cannot enforce
or a shape it cannot store is an error, not a silent pass.

Unknown properties are refused whatever ``additionalProperties`` says, ``true``
included: a columnar topic keeps only declared fields, and dropping data silently would
be worse. Two more places where a topic is stricter or looser than a JSON Schema
validator, because a column cannot tell the cases apart: a null and an absent property
are both a null in the column, so an optional property also accepts ``null`` and a
required property whose type allows ``null`` also accepts absence; and an integer
property takes integer literals only (``1``, not ``1.0``).
Types: integer → int64, number → float64, string → utf8, boolean → bool, array →
list, object → struct. A property not in ``required`` is nullable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.conform import check_values
from odradek.schemas.json_values import decode_json, encode_json
from odradek.schemas.model import (
    DEFAULT_KEY,
    ENUM_KEY,
    CompiledSchema,
    schema_bytes_max,
    schema_depth_max,
    schema_fields_max,
)

_TYPES = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "string": pa.utf8(),
    "boolean": pa.bool_(),
}
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
     "readOnly", "writeOnly", "$defs", "definitions", "contentMediaType", "contentEncoding"}
)  # fmt: skip
_RULES = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum",
     "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
     "pattern", "minItems", "maxItems", "format", "$ref", "anyOf", "oneOf"}
)  # fmt: skip
# RFC 3339 (section 5.6) date-time, as `format: date-time` asks: "T" between date and
# time, a fraction of any length, "Z" or a numeric offset; a leap second is allowed.
_DATE_TIME = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)

# Longest text of a bad value quoted in a violation message.
quoted_value_chars_max = 80


@dataclass(frozen=True)
class Rule:
    """One rule on the values at ``path`` (``("items", "[]", "sku")``)."""

    path: tuple[str, ...]
    keyword: str
    argument: Any


def compile_json_schema(schema: Mapping[str, Any] | str) -> CompiledSchema:
    document = _load(schema)
    compiler = _Compiler(document)
    if document.get("type") != "object" or "properties" not in document:
        raise InvalidSchema("a topic's JSON Schema must be an object schema with 'properties' (at the root)")
    value_type = compiler.object_type(document, (), "")
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return CompiledSchema(
        kind="JSON",
        text=text,
        value_type=value_type,
        codec=JsonSchemaCodec(value_type, tuple(compiler.rules)),
        extras={"json_schema": document},
    )


def _load(schema: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(schema, str):
        if len(schema.encode()) > schema_bytes_max:
            raise InvalidSchema(f"a schema is at most {schema_bytes_max} bytes of JSON")
        try:
            schema = json.loads(schema)
        except (ValueError, RecursionError) as exc:
            raise InvalidSchema(f"the JSON Schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, Mapping):
        raise InvalidSchema("a JSON Schema is a JSON object")
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidSchema(f"the JSON Schema is not JSON data: {exc}") from exc
    if len(text.encode()) > schema_bytes_max:
        raise InvalidSchema(f"a schema is at most {schema_bytes_max} bytes of JSON")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.rules: list[Rule] = []
        self.fields = 0
        self._resolving: list[str] = []

    def object_type(self, node: Mapping[str, Any], path: tuple[str, ...], where: str) -> pa.StructType:
        properties = node.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise InvalidSchema(f"{where or 'the root'}: an object needs at least one entry in 'properties'")
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise InvalidSchema(f"{_at(where, 'required')}: 'required' is a list of property names")
        missing = [name for name in required if name not in properties]
        if missing:
            raise InvalidSchema(f"{_at(where, 'required')}: {missing} are required but not in 'properties'")
        extra = node.get("additionalProperties")
        if extra is not None and not isinstance(extra, (bool, Mapping)):
            raise InvalidSchema(f"{_at(where, 'additionalProperties')}: must be a boolean or a schema")
        fields = []
        for name, child in properties.items():
            self.fields += 1
            if self.fields > schema_fields_max:
                raise InvalidSchema(f"a schema has at most {schema_fields_max} fields")
            child_where = _at(where, f"properties.{name}")
            data_type, nullable, annotations = self.node_type(child, (*path, name), child_where)
            metadata = {}
            if "default" in annotations:
                metadata[DEFAULT_KEY] = json.dumps(annotations["default"]).encode()
            if "enum" in annotations:
                metadata[ENUM_KEY] = json.dumps(annotations["enum"]).encode()
            fields.append(
                pa.field(name, data_type, nullable=nullable or name not in required, metadata=metadata)
            )
        return pa.struct(fields)

    def node_type(
        self, node: Any, path: tuple[str, ...], where: str
    ) -> tuple[pa.DataType, bool, dict[str, Any]]:
        """(Arrow type, whether null is allowed, annotations kept as field metadata)."""
        if len(path) > schema_depth_max:
            raise InvalidSchema(f"{where}: nested deeper than {schema_depth_max} levels")
        if not isinstance(node, Mapping):
            raise InvalidSchema(f"{where}: a schema is a JSON object, got {json.dumps(node)[:40]}")
        if "$ref" in node:
            return self.reference(node, path, where)
        unknown = sorted(set(node) - _RULES - _ANNOTATIONS)
        if unknown:
            raise InvalidSchema(
                f"{_at(where, unknown[0])}: the keyword {unknown[0]!r} is not supported for columnar "
                "topics (see the schemas guide for what is)"
            )
        for choice in ("anyOf", "oneOf"):
            if choice in node:
                return self.optional(node, choice, path, where)
        declared = node.get("type")
        nullable = False
        if isinstance(declared, list):
            kinds = [t for t in declared if t != "null"]
            nullable = len(kinds) != len(declared)
            if len(kinds) != 1:
                raise InvalidSchema(
                    f"{_at(where, 'type')}: one type (optionally with 'null') per field, got {declared}"
                )
            declared = kinds[0]
        annotations: dict[str, Any] = {}
        if "default" in node:
            annotations["default"] = node["default"]
        if declared is None and "enum" in node:
            declared = _enum_type(node["enum"], _at(where, "enum"))
        elif declared is None and "const" in node:
            declared = _enum_type([node["const"]], _at(where, "const"))
        if declared in ("object", "array"):
            for keyword in ("enum", "const"):
                if keyword in node:
                    raise InvalidSchema(
                        f"{_at(where, keyword)}: '{keyword}' on an {declared} is not supported for columnar "
                        "topics; put it on the scalar fields inside"
                    )
        if declared == "object":
            if "properties" not in node and isinstance(node.get("additionalProperties"), Mapping):
                value_type, value_nullable, _ = self.node_type(
                    node["additionalProperties"], (*path, "{}"), _at(where, "additionalProperties")
                )
                return (
                    pa.map_(pa.utf8(), pa.field("value", value_type, nullable=value_nullable)),
                    nullable,
                    annotations,
                )
            return self.object_type(node, path, where), nullable, annotations
        if declared == "array":
            items = node.get("items")
            if not isinstance(items, Mapping):
                raise InvalidSchema(f"{_at(where, 'items')}: an array needs 'items' with one schema")
            item_type, item_nullable, _ = self.node_type(items, (*path, "[]"), _at(where, "items"))
            self.bounds(node, path, where, ("minItems", "maxItems"))
            return pa.list_(pa.field("item", item_type, nullable=item_nullable)), nullable, annotations
        if declared not in _TYPES:
            raise InvalidSchema(f"{_at(where, 'type')}: unknown or missing type {declared!r}")
        self.scalar_rules(node, declared, path, where, annotations)
        return _TYPES[declared], nullable, annotations

    def scalar_rules(
        self,
        node: Mapping[str, Any],
        declared: str,
        path: tuple[str, ...],
        where: str,
        annotations: dict[str, Any],
    ) -> None:
        if "enum" in node:
            symbols = node["enum"]
            if not isinstance(symbols, list) or not symbols:
                raise InvalidSchema(f"{_at(where, 'enum')}: 'enum' is a non-empty list")
            if declared == "string" and all(isinstance(s, str) for s in symbols):
                annotations["enum"] = symbols
            self.rules.append(Rule(path, "enum", [s for s in symbols if s is not None]))
        if "const" in node:
            self.rules.append(Rule(path, "enum", [node["const"]]))
        if declared in ("integer", "number"):
            self.bounds(node, path, where, ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))
            if "multipleOf" in node:
                if (
                    declared != "integer"
                    or not isinstance(node["multipleOf"], int)
                    or node["multipleOf"] <= 0
                ):
                    raise InvalidSchema(
                        f"{_at(where, 'multipleOf')}: supported on integers, a positive integer"
                    )
                self.rules.append(Rule(path, "multipleOf", node["multipleOf"]))
        if declared == "string":
            self.bounds(node, path, where, ("minLength", "maxLength"))
            if "pattern" in node:
                pattern = node["pattern"]
                try:
                    pc.match_substring_regex(pa.array([""]), pattern)
                except (pa.ArrowInvalid, TypeError) as exc:
                    raise InvalidSchema(f"{_at(where, 'pattern')}: not a regular expression: {exc}") from exc
                self.rules.append(Rule(path, "pattern", pattern))
            if node.get("format") == "date-time":
                self.rules.append(Rule(path, "format", _DATE_TIME))

    def bounds(
        self, node: Mapping[str, Any], path: tuple[str, ...], where: str, keywords: tuple[str, ...]
    ) -> None:
        for keyword in keywords:
            if keyword in node:
                value = node[keyword]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InvalidSchema(f"{_at(where, keyword)}: must be a number")
                self.rules.append(Rule(path, keyword, value))

    def optional(
        self, node: Mapping[str, Any], choice: str, path: tuple[str, ...], where: str
    ) -> tuple[pa.DataType, bool, dict[str, Any]]:
        options = node[choice]
        if not isinstance(options, list):
            raise InvalidSchema(f"{_at(where, choice)}: must be a list")
        others = [
            o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null" and len(o) == 1)
        ]
        if len(others) != 1 or len(options) != 2:
            raise InvalidSchema(
                f'{_at(where, choice)}: only a choice between {{"type": "null"}} and one schema can be '
                "stored as one column; use optional properties instead"
            )
        data_type, _, annotations = self.node_type(others[0], path, _at(where, choice))
        return data_type, True, annotations

    def reference(
        self, node: Mapping[str, Any], path: tuple[str, ...], where: str
    ) -> tuple[pa.DataType, bool, dict[str, Any]]:
        reference = node["$ref"]
        prefixes = ("#/$defs/", "#/definitions/")
        if not isinstance(reference, str) or not reference.startswith(prefixes):
            raise InvalidSchema(
                f"{_at(where, '$ref')}: only local references to #/$defs/… or #/definitions/…"
            )
        if reference in self._resolving:
            raise InvalidSchema(
                f"{_at(where, '$ref')}: {reference} refers to itself; recursive types cannot be columns"
            )
        section, name = reference[2:].split("/", 1)
        target = self.root.get(section, {}).get(name) if isinstance(self.root.get(section), Mapping) else None
        if target is None:
            raise InvalidSchema(f"{_at(where, '$ref')}: {reference} is not defined")
        self._resolving.append(reference)
        try:
            return self.node_type(target, path, f"{section}.{name}")
        finally:
            self._resolving.pop()


def _enum_type(symbols: Any, where: str) -> str:
    """The column type of an ``enum`` or ``const`` without ``type``: the one JSON type
    all its values share (``null`` aside, which makes the field nullable elsewhere)."""
    values = [s for s in symbols if s is not None] if isinstance(symbols, list) else []
    if values and all(isinstance(s, str) for s in values):
        return "string"
    if values and all(isinstance(s, bool) for s in values):
        return "boolean"
    if values and all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        return "integer"
    if values and all(isinstance(s, int | float) and not isinstance(s, bool) for s in values):
        return "number"
    raise InvalidSchema(f"{where}: without 'type', the values must all be strings, booleans or numbers")


def _at(where: str, keyword: str) -> str:
    return f"{where}.{keyword}" if where else keyword


class JsonSchemaCodec:
    """JSON text in and out; ``check`` enforces required fields, enums and every rule."""

    def __init__(self, value_type: pa.StructType, rules: tuple[Rule, ...]) -> None:
        self.value_type = value_type
        self.rules = rules

    def decode(self, payloads: pa.Array) -> pa.StructArray:
        """Decode then check. When decoding refuses record k, the records before it
        decode, and one of them may break a rule: that one is the first violation."""
        try:
            values = decode_json(payloads, self.value_type)
        except SchemaViolation as violation:
            if violation.index:
                self.check(decode_json(payloads.slice(0, violation.index), self.value_type))
            raise
        self.check(values)
        return values

    def encode(self, values: pa.StructArray) -> pa.Array:
        return encode_json(values).cast(pa.binary())

    def check(self, values: pa.StructArray) -> None:
        check_values(values, self.value_type)  # required fields and string enums
        first: tuple[int, str, str] | None = None
        for rule in self.rules:
            found = _first_breaking(values, rule)
            if found is not None and (first is None or found[0] < first[0]):
                first = found
        if first is not None:
            index, path, message = first
            raise SchemaViolation(f"record {index}, field `{path}`: {message}", index, path)


def _first_breaking(values: pa.StructArray, rule: Rule) -> tuple[int, str, str] | None:
    """(record index, path, what broke) of the first value breaking ``rule``."""
    column, records, labels, present = _column(values, rule.path)
    if len(column) == 0:
        return None
    broken = _breaks(column, rule)
    if broken is None:
        return None
    # Rules apply to values; a null is the business of `required`.
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    mask = broken.fill_null(False).to_numpy(zero_copy_only=False) & present & valid
    hits = np.flatnonzero(mask)
    if not len(hits):
        return None
    # Items keep record order, so the first hit is in the first offending record.
    at = int(hits[0])
    path = _render(rule.path, labels, at)
    bad = column[at].as_py()
    return int(records[at]), path, f"{_describe(rule)}, got {_shown(bad)}"


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= quoted_value_chars_max else text[: quoted_value_chars_max - 1] + "…"


def _column(
    values: pa.Array, path: tuple[str, ...]
) -> tuple[pa.Array, np.ndarray, list[Callable[[int], str]], np.ndarray]:
    """The values at ``path``; for each, its record, a label per ``[]``/``{}`` step
    (list position or map key, given the element's position) and whether it is data
    (not under a null struct, list or map)."""
    column: pa.Array = values
    records = np.arange(len(values), dtype=np.int64)
    present = np.ones(len(values), bool)
    labels: list[Callable[[int], str]] = []
    for step in path:
        if step in ("[]", "{}"):
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            offsets = column.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
            lengths = np.diff(offsets)
            parents = np.repeat(np.arange(len(column)), lengths)
            low, high = int(offsets[0]), int(offsets[-1])
            starts = offsets[:-1] - low
            labels = [_through(label, parents) for label in labels]
            if step == "[]":
                column = column.values.slice(low, high - low)
                labels.append(_list_position(parents, starts))
            else:
                labels.append(_map_key(column.keys.slice(low, high - low)))
                column = column.items.slice(low, high - low)
            records, present = records[parents], (present & valid)[parents]
        else:
            present = present & column.is_valid().to_numpy(zero_copy_only=False)
            column = column.field(column.type.get_field_index(step))
    return column, records, labels, present


def _through(label: Callable[[int], str], parents: np.ndarray) -> Callable[[int], str]:
    return lambda at: label(int(parents[at]))


def _list_position(parents: np.ndarray, starts: np.ndarray) -> Callable[[int], str]:
    return lambda at: f"[{at - int(starts[parents[at]])}]"


def _map_key(keys: pa.Array) -> Callable[[int], str]:
    return lambda at: f"[{json.dumps(keys[at].as_py(), default=str)}]"


def _render(path: tuple[str, ...], labels: list[Callable[[int], str]], at: int) -> str:
    text = ""
    steps = iter(labels)
    for step in path:
        if step in ("[]", "{}"):
            text += next(steps)(at)
        else:
            text = f"{text}.{step}" if text else step
    return text


def _breaks(column: pa.Array, rule: Rule) -> pa.Array | None:
    keyword, argument = rule.keyword, rule.argument
    if keyword == "enum":
        return pc.invert(pc.is_in(column, value_set=pa.array(argument, column.type)))
    if keyword == "minimum":
        return pc.less(column, argument)
    if keyword == "maximum":
        return pc.greater(column, argument)
    if keyword == "exclusiveMinimum":
        return pc.less_equal(column, argument)
    if keyword == "exclusiveMaximum":
        return pc.greater_equal(column, argument)
    if keyword == "multipleOf":
        numbers = column.fill_null(0).to_numpy(zero_copy_only=False)
        return pa.array((numbers % argument) != 0)
    if keyword == "minLength":
        return pc.less(pc.utf8_length(column), argument)
    if keyword == "maxLength":
        return pc.greater(pc.utf8_length(column), argument)
    if keyword in ("pattern", "format"):
        return pc.invert(pc.match_substring_regex(column, argument))
    if keyword == "minItems":
        return pc.less(pc.list_value_length(column), argument)
    if keyword == "maxItems":
        return pc.greater(pc.list_value_length(column), argument)
    return None


def _describe(rule: Rule) -> str:
    keyword, argument = rule.keyword, rule.argument
    return {
        "enum": f"must be one of {json.dumps(argument)[:80]}",
        "minimum": f"must be >= {argument}",
        "maximum": f"must be <= {argument}",
        "exclusiveMinimum": f"must be > {argument}",
        "exclusiveMaximum": f"must be < {argument}",
        "multipleOf": f"must be a multiple of {argument}",
        "minLength": f"must be at least {argument} characters long",
        "maxLength": f"must be at most {argument} characters long",
        "pattern": f"must match the pattern {argument!r}",
        "format": "must be an RFC 3339 date-time",
        "minItems": f"must have at least {argument} items",
        "maxItems": f"must have at most {argument} items",
    }.get(keyword, keyword)
