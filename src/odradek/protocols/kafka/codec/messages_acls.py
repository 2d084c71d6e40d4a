"""Messages of access control lists: DescribeAcls (29), CreateAcls (30), DeleteAcls (31).

Field layouts follow the Kafka protocol's message definitions (the JSON files of
``clients/src/main/resources/common/message``); each field names the versions it exists
in. Version 0 has no pattern type (every binding is LITERAL, 3); version 2 is the first
flexible one. The enumerations (resource type, pattern type, operation, permission) are
Kafka's ``org.apache.kafka.common.acl`` and ``resource`` codes, mapped onto Odradek's
model in protocols/kafka/acl_api.py.
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.schema import INT8, INT16, INT32, STRING, Array, f

LITERAL = 3  # PatternType.LITERAL, the pattern type of every version 0 binding

# -- DescribeAcls (29) ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeAclsRequest:
    resource_type_filter: int = f(INT8)
    resource_name_filter: str | None = f(STRING, nullable="0+", default=None)
    pattern_type_filter: int = f(INT8, "1+", default=LITERAL)
    principal_filter: str | None = f(STRING, nullable="0+", default=None)
    host_filter: str | None = f(STRING, nullable="0+", default=None)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AclDescription:
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeAclsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    pattern_type: int = f(INT8, "1+", default=LITERAL)
    acls: tuple[AclDescription, ...] = f(Array(AclDescription), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    resources: tuple[DescribeAclsResource, ...] = f(Array(DescribeAclsResource), default=())


# -- CreateAcls (30) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AclCreation:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    resource_pattern_type: int = f(INT8, "1+", default=LITERAL)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreateAclsRequest:
    creations: tuple[AclCreation, ...] = f(Array(AclCreation))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AclCreationResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreateAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    results: tuple[AclCreationResult, ...] = f(Array(AclCreationResult), default=())


# -- DeleteAcls (31) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsFilter:
    resource_type_filter: int = f(INT8)
    resource_name_filter: str | None = f(STRING, nullable="0+", default=None)
    pattern_type_filter: int = f(INT8, "1+", default=LITERAL)
    principal_filter: str | None = f(STRING, nullable="0+", default=None)
    host_filter: str | None = f(STRING, nullable="0+", default=None)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsRequest:
    filters: tuple[DeleteAclsFilter, ...] = f(Array(DeleteAclsFilter))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsMatchingAcl:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    pattern_type: int = f(INT8, "1+", default=LITERAL)
    principal: str = f(STRING)
    host: str = f(STRING)
    operation: int = f(INT8)
    permission_type: int = f(INT8)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsFilterResult:
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    matching_acls: tuple[DeleteAclsMatchingAcl, ...] = f(Array(DeleteAclsMatchingAcl), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteAclsResponse:
    throttle_time_ms: int = f(INT32, default=0)
    filter_results: tuple[DeleteAclsFilterResult, ...] = f(Array(DeleteAclsFilterResult), default=())
