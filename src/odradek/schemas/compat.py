"""Whether a topic may move from one value type to the next, and what changed.

The checks run on the compiled Arrow value types, so one set of rules covers Avro, JSON
Schema and Arrow schemas alike. The modes are the Schema Registry's:

* ``backward`` — consumers using the new schema can read records written with the old
  one (the reader is new): the usual mode, since the log keeps old records forever.
* ``forward`` — consumers still using the old schema can read records written with the
  new one (the reader is old).
* ``full`` — both; ``none`` — anything goes. ``*_transitive`` compares with every
  earlier version instead of the latest only.

A reader can read a writer's field when it is the same type or a widening promotion
(what :func:`odradek.schemas.conform.evolve` performs on read), when a field the reader
needs but the writer lacks has a default or may be null, and when a null or an enum
symbol the writer may send is something the reader accepts or has a default for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from odradek.errors import InvalidRequest
from odradek.schemas.model import DEFAULT_KEY, ENUM_KEY

__all__ = ["MODES", "check", "diff", "problems", "promotes", "validate_mode"]

MODES = (
    "backward",
    "backward_transitive",
    "forward",
    "forward_transitive",
    "full",
    "full_transitive",
    "none",
)


def validate_mode(mode: object) -> str:
    """The mode in its canonical lower-case spelling (Confluent clients send upper
    case); an unknown mode is refused with the list of valid ones."""
    if not isinstance(mode, str):  # str(None) would be "none", a valid mode
        raise InvalidRequest(f"a compatibility mode is a name ({', '.join(MODES)}), got {mode!r}")
    canonical = mode.strip().lower()
    if canonical not in MODES:
        raise InvalidRequest(f"unknown compatibility mode {mode!r}: use one of {', '.join(MODES)}")
    return canonical


# ---------------------------------------------------------------------------------------
# Facts about fields


def _has_default(field: pa.Field) -> bool:
    return DEFAULT_KEY in (field.metadata or {})


def _default_text(field: pa.Field) -> str | None:
    metadata = field.metadata or {}
    return metadata[DEFAULT_KEY].decode("utf-8", "replace") if DEFAULT_KEY in metadata else None


def _enum_symbols(field: pa.Field) -> list[str] | None:
    metadata = field.metadata or {}
    if ENUM_KEY not in metadata:
        return None
    symbols = json.loads(metadata[ENUM_KEY])
    return [str(symbol) for symbol in symbols]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_variable_list(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(data_type) or pa.types.is_large_list(data_type))


def _is_list_like(data_type: pa.DataType) -> bool:
    return bool(_is_variable_list(data_type) or pa.types.is_fixed_size_list(data_type))


# ---------------------------------------------------------------------------------------
# Promotions: what a reader of one type can read when written as another.

_TIME_UNIT_RANK = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def _integer_bits(data_type: pa.DataType) -> int:
    return int(data_type.bit_width)


def _string_or_bytes(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )


def _bytes(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )


def _finer_or_same_unit(writer: pa.DataType, reader: pa.DataType) -> bool:
    return _TIME_UNIT_RANK[reader.unit] >= _TIME_UNIT_RANK[writer.unit]


def promotes(writer: pa.DataType, reader: pa.DataType) -> bool:
    """Whether every value of the non-nested type ``writer`` is a value of ``reader``
    (up to rounding for int → float, as Avro allows): the reads ``evolve`` can do."""
    if writer == reader:
        return True
    if pa.types.is_integer(writer):
        if pa.types.is_floating(reader):
            return True
        if not pa.types.is_integer(reader) or _integer_bits(reader) <= _integer_bits(writer):
            return False
        # A signed writer never fits an unsigned reader; an unsigned one fits any wider.
        return bool(pa.types.is_signed_integer(reader) or pa.types.is_unsigned_integer(writer))
    if pa.types.is_floating(writer):
        return bool(pa.types.is_floating(reader) and reader.bit_width > writer.bit_width)
    if _string_or_bytes(writer):
        return _string_or_bytes(reader)
    if pa.types.is_fixed_size_binary(writer):
        return _bytes(reader)
    if pa.types.is_timestamp(writer):
        return bool(
            pa.types.is_timestamp(reader) and reader.tz == writer.tz and _finer_or_same_unit(writer, reader)
        )
    if pa.types.is_time(writer) or pa.types.is_duration(writer):
        same_kind = pa.types.is_time(reader) if pa.types.is_time(writer) else pa.types.is_duration(reader)
        return bool(same_kind and _finer_or_same_unit(writer, reader))
    if pa.types.is_date32(writer):
        return bool(pa.types.is_date64(reader))
    if pa.types.is_decimal(writer):
        return bool(
            pa.types.is_decimal(reader)
            and reader.precision - reader.scale >= writer.precision - writer.scale
            and reader.scale >= writer.scale
        )
    return False


# ---------------------------------------------------------------------------------------
# The rules


@dataclass
class _Comparison:
    """One comparison of an old and a new value type, collecting problem lines."""

    backward: bool
    forward: bool
    old_label: str
    found: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        if line not in self.found:
            self.found.append(line)

    def structs(self, old: pa.StructType, new: pa.StructType, path: str) -> None:
        old_fields = {item.name: item for item in old}
        new_fields = {item.name: item for item in new}
        for name, new_field in new_fields.items():
            field_path = _join(path, name)
            if name in old_fields:
                self.fields(old_fields[name], new_field, field_path)
            elif self.backward and not new_field.nullable and not _has_default(new_field):
                self.add(
                    f"field `{field_path}` was added without a default and is required: records written "
                    f"with {self.old_label} have no value for it (give it a default or make it optional)"
                )
        for name, old_field in old_fields.items():
            if (
                name not in new_fields
                and self.forward
                and not old_field.nullable
                and not _has_default(old_field)
            ):
                self.add(
                    f"field `{_join(path, name)}` was removed, but {self.old_label} requires it and has no "
                    f"default: consumers using {self.old_label} cannot read records written with the new "
                    "schema (keep the field)"
                )

    def fields(self, old: pa.Field, new: pa.Field, path: str) -> None:
        self.nullability(old, new, path)
        self.enums(old, new, path)
        self.types(old.type, new.type, path)

    def nullability(self, old: pa.Field, new: pa.Field, path: str) -> None:
        if self.backward and old.nullable and not new.nullable and not _has_default(new):
            self.add(
                f"field `{path}` became required without a default: records written with "
                f"{self.old_label} may hold null for it (give it a default or keep it optional)"
            )
        if self.forward and new.nullable and not old.nullable and not _has_default(old):
            self.add(
                f"field `{path}` became optional, but {self.old_label} requires it and has no default: "
                f"consumers using {self.old_label} cannot read a null written with the new schema "
                "(keep it required)"
            )

    def enums(self, old: pa.Field, new: pa.Field, path: str) -> None:
        old_symbols, new_symbols = _enum_symbols(old), _enum_symbols(new)
        if self.backward and new_symbols is not None and not _has_default(new):
            if old_symbols is None:
                self.add(
                    f"field `{path}` became an enum without a default: records written with "
                    f"{self.old_label} may hold any string (give it a default)"
                )
            elif lost := [symbol for symbol in old_symbols if symbol not in new_symbols]:
                self.add(
                    f"field `{path}` lost enum symbols {', '.join(lost)}: records written with "
                    f"{self.old_label} may hold them (keep the symbols or give the enum a default)"
                )
        if self.forward and old_symbols is not None and not _has_default(old):
            if new_symbols is None:
                self.add(
                    f"field `{path}` is no longer an enum: consumers using {self.old_label} accept only "
                    "its symbols and have no default for others"
                )
            elif gained := [symbol for symbol in new_symbols if symbol not in old_symbols]:
                self.add(
                    f"field `{path}` gained enum symbols {', '.join(gained)}: consumers using "
                    f"{self.old_label} do not know them and have no default for the field"
                )

    def types(self, old: pa.DataType, new: pa.DataType, path: str) -> None:
        if pa.types.is_struct(old) and pa.types.is_struct(new):
            self.structs(old, new, path)
        elif pa.types.is_map(old) and pa.types.is_map(new):
            self.types(old.key_type, new.key_type, f"{path}[key]")
            self.fields(old.item_field, new.item_field, f"{path}[]")
        elif _is_list_like(old) and _is_list_like(new):
            self.list_kinds(old, new, path)
            self.fields(old.value_field, new.value_field, f"{path}[]")
        elif (
            pa.types.is_struct(old)
            or pa.types.is_struct(new)
            or pa.types.is_nested(old)
            or pa.types.is_nested(new)
        ):
            self.changed_type(old, new, path, backward_ok=False, forward_ok=False)
        else:
            self.changed_type(old, new, path, promotes(old, new), promotes(new, old))

    def list_kinds(self, old: pa.DataType, new: pa.DataType, path: str) -> None:
        """A fixed-size list reads as a variable one, not the other way round."""
        old_size = old.list_size if pa.types.is_fixed_size_list(old) else None
        new_size = new.list_size if pa.types.is_fixed_size_list(new) else None
        if old_size == new_size:
            return
        self.changed_type(
            old, new, path, backward_ok=new_size is None, forward_ok=old_size is None, element_types=False
        )

    def changed_type(
        self,
        old: pa.DataType,
        new: pa.DataType,
        path: str,
        backward_ok: bool,
        forward_ok: bool,
        element_types: bool = True,
    ) -> None:
        shown_old, shown_new = (old, new) if element_types else (_list_shape(old), _list_shape(new))
        if self.backward and not backward_ok:
            self.add(
                f"field `{path}` changed type from {shown_old} to {shown_new}: records written with "
                f"{self.old_label} hold {shown_old} values that {shown_new} cannot represent (only "
                "widening promotions such as int32 → int64 or float → double can be read)"
            )
        if self.forward and not forward_ok:
            self.add(
                f"field `{path}` changed type from {shown_old} to {shown_new}: consumers using "
                f"{self.old_label} read {shown_old} and cannot read {shown_new} values written with the "
                "new schema"
            )


def _list_shape(data_type: pa.DataType) -> str:
    if pa.types.is_fixed_size_list(data_type):
        return f"a list of exactly {data_type.list_size} items"
    return "a list of any length"


def problems(
    old: pa.StructType, new: pa.StructType, mode: str, *, old_version: int | None = None
) -> list[str]:
    """What breaks if a topic whose records were written with ``old`` moves to ``new``
    under ``mode`` (one readable line each; empty when compatible). ``old_version``
    (numbered from 1) names the old schema in the lines."""
    canonical = validate_mode(mode)
    base = canonical.removesuffix("_transitive")
    if base == "none":
        return []
    label = f"version {old_version}" if old_version is not None else "the previous schema"
    comparison = _Comparison(
        backward=base in ("backward", "full"), forward=base in ("forward", "full"), old_label=label
    )
    comparison.structs(old, new, "")
    return comparison.found


def check(history: list[pa.StructType], new: pa.StructType, mode: str) -> list[str]:
    """The problems of registering ``new`` after ``history`` (oldest first): against the
    latest version only, or against every version for the ``*_transitive`` modes."""
    canonical = validate_mode(mode)
    if canonical == "none" or not history:
        return []
    if canonical.endswith("_transitive"):
        compared = list(enumerate(history, start=1))
    else:
        compared = [(len(history), history[-1])]
    found: list[str] = []
    for version, old in compared:
        for line in problems(old, new, canonical, old_version=version):
            if line not in found:
                found.append(line)
    return found


# ---------------------------------------------------------------------------------------
# diff


def _field_summary(item: pa.Field) -> str:
    facts = ["optional" if item.nullable else "required"]
    default = _default_text(item)
    if default is not None:
        facts.append(f"default {default}")
    symbols = _enum_symbols(item)
    if symbols is not None:
        facts.append(f"enum {', '.join(symbols)}")
    return f"{item.name}: {item.type} ({'; '.join(facts)})"


def _diff_types(old: pa.DataType, new: pa.DataType, path: str, lines: list[str]) -> None:
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        _diff_structs(old, new, path, lines)
    elif pa.types.is_map(old) and pa.types.is_map(new):
        if old.key_type != new.key_type:
            lines.append(f"~ {path}[key]: {old.key_type} → {new.key_type}")
        _diff_fields(old.item_field, new.item_field, f"{path}[]", lines)
    elif _is_list_like(old) and _is_list_like(new):
        if old.id != new.id or (pa.types.is_fixed_size_list(old) and old.list_size != new.list_size):
            lines.append(f"~ {path}: {_list_shape(old)} → {_list_shape(new)}")
        _diff_fields(old.value_field, new.value_field, f"{path}[]", lines)
    elif old != new:
        lines.append(f"~ {path}: {old} → {new}")


def _diff_fields(old: pa.Field, new: pa.Field, path: str, lines: list[str]) -> None:
    _diff_types(old.type, new.type, path, lines)
    if old.nullable != new.nullable:
        change = "optional → required" if old.nullable else "required → optional"
        lines.append(f"~ {path}: {change}")
    old_default, new_default = _default_text(old), _default_text(new)
    if old_default != new_default:
        shown_old = "none" if old_default is None else old_default
        shown_new = "none" if new_default is None else new_default
        lines.append(f"~ {path}: default {shown_old} → {shown_new}")
    old_symbols, new_symbols = _enum_symbols(old), _enum_symbols(new)
    if old_symbols != new_symbols:
        if old_symbols is None or new_symbols is None:
            lines.append(f"~ {path}: {'no longer an enum' if new_symbols is None else 'became an enum'}")
        else:
            changes = [f"\N{MINUS SIGN}{symbol}" for symbol in old_symbols if symbol not in new_symbols]
            changes += [f"+{symbol}" for symbol in new_symbols if symbol not in old_symbols]
            lines.append(f"~ {path}: enum symbols {' '.join(changes) if changes else 'reordered'}")


def _diff_structs(old: pa.StructType, new: pa.StructType, path: str, lines: list[str]) -> None:
    old_fields = {item.name: item for item in old}
    new_fields = {item.name: item for item in new}
    for name, old_field in old_fields.items():
        if name not in new_fields:
            lines.append(f"- {_join(path, name)}: {old_field.type}")
    for name, new_field in new_fields.items():
        if name in old_fields:
            _diff_fields(old_fields[name], new_field, _join(path, name), lines)
        else:
            prefix = f"{path}." if path else ""
            lines.append(f"+ {prefix}{_field_summary(new_field)}")


def diff(old: pa.StructType, new: pa.StructType) -> list[str]:
    """A readable change list from ``old`` to ``new`` (``+`` added, ``-`` removed, ``~``
    changed), shown next to the problems when a schema change is refused."""
    lines: list[str] = []
    _diff_structs(old, new, "", lines)
    return lines
