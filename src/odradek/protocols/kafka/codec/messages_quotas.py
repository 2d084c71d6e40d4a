"""Messages of client quotas: DescribeClientQuotas (48) and AlterClientQuotas (49).

Field layouts follow the Kafka protocol's message definitions (both flexible from
version 1); each field names the versions it exists in. An entity name that is null is
the ``<default>`` entity of its type.
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.schema import BOOL, FLOAT64, INT8, INT16, INT32, STRING, Array, f

# DescribeClientQuotas' match types.
MATCH_EXACT = 0  # the entity named by ``match``
MATCH_DEFAULT = 1  # the type's <default> entity
MATCH_ANY = 2  # any entity of the type, named or <default>


# -- DescribeClientQuotas (48) --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ComponentData:
    entity_type: str = f(STRING)
    match_type: int = f(INT8)
    match: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClientQuotasRequest:
    components: tuple[ComponentData, ...] = f(Array(ComponentData))
    strict: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EntityData:
    entity_type: str = f(STRING)
    entity_name: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ValueData:
    key: str = f(STRING)
    value: float = f(FLOAT64)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClientQuotasEntry:
    entity: tuple[EntityData, ...] = f(Array(EntityData))
    values: tuple[ValueData, ...] = f(Array(ValueData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClientQuotasResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    entries: tuple[DescribeClientQuotasEntry, ...] | None = f(
        Array(DescribeClientQuotasEntry), nullable="0+", default=None
    )


# -- AlterClientQuotas (49) -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OpData:
    key: str = f(STRING)
    value: float = f(FLOAT64)
    remove: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterClientQuotasEntry:
    entity: tuple[EntityData, ...] = f(Array(EntityData))
    ops: tuple[OpData, ...] = f(Array(OpData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterClientQuotasRequest:
    entries: tuple[AlterClientQuotasEntry, ...] = f(Array(AlterClientQuotasEntry))
    validate_only: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterClientQuotasEntryResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    entity: tuple[EntityData, ...] = f(Array(EntityData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterClientQuotasResponse:
    throttle_time_ms: int = f(INT32)
    entries: tuple[AlterClientQuotasEntryResponse, ...] = f(Array(AlterClientQuotasEntryResponse))
