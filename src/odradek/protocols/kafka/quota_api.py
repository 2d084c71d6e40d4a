"""Client quotas on the Kafka door: throttling (KIP-219) and DescribeClientQuotas /
AlterClientQuotas (security/quotas.py holds the settings and rates, decision 0021).

Rules
-----
* Every request of a connection counts toward its principal's ``request_rate``; a
  Produce's request bytes toward ``producer_byte_rate`` (as Kafka: the request's size);
  a Fetch's record bytes toward ``consumer_byte_rate``. The principal is the
  connection's (the user; ``ANONYMOUS`` without authentication), the client id the
  request header's.
* A request over a quota is answered at once, with ``throttle_time_ms`` set in its
  response, and the connection is then *muted*: its next request is not read until the
  throttle time has passed (KIP-219; a client of a protocol version older than
  client-side throttling waits the same time for its next answer, as TCP holds its next
  request). The throttle is the longest of the request's quotas'.
* DescribeClientQuotas and AlterClientQuotas take an admin principal (Kafka asks for
  the cluster's DescribeConfigs and AlterConfigs): others get
  CLUSTER_AUTHORIZATION_FAILED. A server without quota settings answers them with
  INVALID_REQUEST. AlterClientQuotas answers per entity, as Kafka: an entity refused
  (INVALID_REQUEST, with the reason) changes nothing, the others are applied in one save.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from odradek.errors import InvalidRequest, OdradekError
from odradek.protocols.kafka.codec import messages_data as data_messages
from odradek.protocols.kafka.codec import messages_quotas as m
from odradek.protocols.kafka.codec.api import ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.security.principal import Principal, current_principal
from odradek.security.quotas import Alteration, Metering, QuotaEntity, QuotaManager

API_KEYS = frozenset((ApiKey.DESCRIBE_CLIENT_QUOTAS, ApiKey.ALTER_CLIENT_QUOTAS))

# A v2 record batch's header: base offset (8), length (4), ..., the record count at 57.
_BATCH_LENGTH_AT = 8
_BATCH_OVERHEAD_BYTES = 12
_RECORD_COUNT_AT = 57
_BATCH_HEADER_BYTES = 61


def batch_records(records: bytes | None) -> int:
    """The records of the v2 record batches in ``records`` (one step per batch)."""
    if not records:
        return 0
    count = 0
    position = 0
    view = memoryview(records)
    while position + _BATCH_HEADER_BYTES <= len(view):
        length = int.from_bytes(view[position + _BATCH_LENGTH_AT : position + _BATCH_OVERHEAD_BYTES], "big")
        count += int.from_bytes(view[position + _RECORD_COUNT_AT : position + _BATCH_HEADER_BYTES], "big")
        position += _BATCH_OVERHEAD_BYTES + length
    return count


def _produced(body: data_messages.ProduceRequest) -> int:
    return sum(batch_records(part.records) for topic in body.topic_data for part in topic.partition_data)


def _fetched(body: data_messages.FetchResponse) -> tuple[int, int]:
    """(record bytes, records) of a Fetch response."""
    size = records = 0
    for topic in body.responses:
        for part in topic.partitions:
            if part.records:
                size += len(part.records)
                records += batch_records(part.records)
    return size, records


class ConnectionQuota:
    """One Kafka connection's throttling and metering (on the door's event loop)."""

    def __init__(self, quotas: QuotaManager | None, metering: Metering | None) -> None:
        self.quotas = quotas
        self.metering = metering
        self._muted_until = 0.0

    def _mute(self, seconds: float) -> int:
        if seconds <= 0:
            return 0
        self._muted_until = max(self._muted_until, time.monotonic() + seconds)
        if self.metering is not None:
            principal = current_principal()
            self.metering.add(principal.name, throttle_seconds=seconds, tenant=principal.tenant)
        return round(seconds * 1000)

    def _quotas_throttle(self, user: str, client_id: str | None, **counts: Any) -> float:
        assert self.quotas is not None
        return self.quotas.throttle(user, client_id, **counts)

    def requested(self, request: Request, size: int) -> int:
        """Count a request of ``size`` frame bytes; its throttle in ms (0: none)."""
        principal = current_principal()
        user = principal.name
        produced = 0
        if request.api_key == ApiKey.PRODUCE:
            produced = size
            if self.metering is not None:
                records = _produced(request.body)
                self.metering.add(user, bytes_in=size, records_in=records, tenant=principal.tenant)
        if self.quotas is None:
            return 0
        return self._mute(
            self._quotas_throttle(user, request.client_id, produced=produced, tenant=principal.tenant)
        )

    def answered(self, request: Request, body: Any, throttle_ms: int) -> Any:
        """``body`` with the request's throttle time (a Fetch's bytes counted now)."""
        if request.api_key == ApiKey.FETCH and isinstance(body, data_messages.FetchResponse):
            size, records = _fetched(body)
            principal = current_principal()
            user = principal.name
            if self.metering is not None:
                self.metering.add(user, bytes_out=size, records_out=records, tenant=principal.tenant)
            if self.quotas is not None and size:
                throttle_ms = max(
                    throttle_ms,
                    self._mute(
                        self._quotas_throttle(
                            user, request.client_id, fetched=size, request=False, tenant=principal.tenant
                        )
                    ),
                )
        if throttle_ms and body is not None and hasattr(body, "throttle_time_ms"):
            return dataclasses.replace(body, throttle_time_ms=throttle_ms)
        return body

    async def muted(self) -> None:
        """Return once the connection may be read again (KIP-219's muted channel)."""
        wait = self._muted_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


# -- DescribeClientQuotas and AlterClientQuotas ------------------------------------------


def _entity_data(entity: QuotaEntity) -> tuple[m.EntityData, ...]:
    return tuple(m.EntityData(entity_type=kind, entity_name=name) for kind, name in entity.parts)


def _matches(entity: QuotaEntity, components: tuple[m.ComponentData, ...], strict: bool) -> bool:
    named = dict(entity.parts)
    for component in components:
        if component.entity_type not in named:
            return False
        name = named[component.entity_type]
        if component.match_type == m.MATCH_EXACT and name != component.match:
            return False
        if component.match_type == m.MATCH_DEFAULT and name is not None:
            return False
    return not strict or len(named) == len(components)


def _refusal(quotas: QuotaManager | None, principal: Principal) -> tuple[ErrorCode, str] | None:
    if quotas is None:
        return ErrorCode.INVALID_REQUEST, "this server keeps no quota settings"
    if not principal.admin:
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, f"{principal} may not manage quotas: it takes an admin"
    return None


def describe_client_quotas(
    quotas: QuotaManager | None, principal: Principal, request: Request
) -> m.DescribeClientQuotasResponse:
    body: m.DescribeClientQuotasRequest = request.body
    refused = _refusal(quotas, principal)
    if refused is not None:
        return m.DescribeClientQuotasResponse(error_code=refused[0], error_message=refused[1])
    assert quotas is not None
    for component in body.components:
        if component.match_type not in (m.MATCH_EXACT, m.MATCH_DEFAULT, m.MATCH_ANY):
            return m.DescribeClientQuotasResponse(
                error_code=ErrorCode.INVALID_REQUEST,
                error_message=f"unknown match type {component.match_type} for {component.entity_type!r}",
            )
    entries = tuple(
        m.DescribeClientQuotasEntry(
            entity=_entity_data(entity),
            values=tuple(m.ValueData(key=key, value=value) for key, value in sorted(values.items())),
        )
        for entity, values in quotas.settings.entities().items()
        if _matches(entity, body.components, body.strict)
    )
    return m.DescribeClientQuotasResponse(error_code=ErrorCode.NONE, entries=entries)


def alter_client_quotas(
    quotas: QuotaManager | None, principal: Principal, request: Request
) -> m.AlterClientQuotasResponse:
    body: m.AlterClientQuotasRequest = request.body
    refused = _refusal(quotas, principal)
    if refused is not None:
        return m.AlterClientQuotasResponse(
            entries=tuple(
                m.AlterClientQuotasEntryResponse(
                    error_code=refused[0], error_message=refused[1], entity=entry.entity
                )
                for entry in body.entries
            )
        )
    assert quotas is not None
    answers: list[tuple[ErrorCode, str | None] | None] = []
    alterations: list[Alteration] = []
    for entry in body.entries:
        try:
            entity = QuotaEntity.of((part.entity_type, part.entity_name) for part in entry.entity)
            values: dict[str, float | None] = {}
            for op in entry.ops:
                if op.key in values:
                    raise InvalidRequest(f"quota {op.key} is changed twice for {entity}")
                values[op.key] = None if op.remove else op.value
        except InvalidRequest as exc:
            answers.append((ErrorCode.INVALID_REQUEST, exc.message))
            continue
        answers.append(None)
        alterations.append(Alteration(entity, values))
    try:
        errors = iter(quotas.settings.alter(alterations, validate_only=body.validate_only))
    except OdradekError as exc:  # the save failed: nothing changed
        errors = iter([f"{type(exc).__name__}: {exc.message}"] * len(alterations))
        failed = ErrorCode.KAFKA_STORAGE_ERROR
    else:
        failed = ErrorCode.INVALID_REQUEST
    results = []
    for entry, answer in zip(body.entries, answers, strict=True):
        if answer is None:
            error = next(errors)
            answer = (ErrorCode.NONE, None) if error is None else (failed, error)
        results.append(
            m.AlterClientQuotasEntryResponse(
                error_code=answer[0], error_message=answer[1], entity=entry.entity
            )
        )
    return m.AlterClientQuotasResponse(entries=tuple(results))


def serve(quotas: QuotaManager | None, principal: Principal, request: Request) -> Any:
    """Answer DescribeClientQuotas or AlterClientQuotas for ``principal`` (on an engine
    thread: a change saves the settings)."""
    if request.api_key == ApiKey.DESCRIBE_CLIENT_QUOTAS:
        return describe_client_quotas(quotas, principal, request)
    return alter_client_quotas(quotas, principal, request)
