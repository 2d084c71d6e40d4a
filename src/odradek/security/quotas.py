"""Client quotas: settings per entity, resolved as Kafka resolves them, and the rates
they bound, measured over sample windows as Kafka measures them (decision 0021).

Entities
--------
An entity is a combination of entity types, each naming one entity or its ``<default>``:
``user=alice``, ``user=<default>``, ``client-id=app``, ``user=alice,client-id=app``,
``user=<default>,client-id=<default>``... (Kafka's model: the user is the principal's
name, the client id the Kafka client's ``client.id``; the native door's calls have no
client id). Each entity holds quota values:

* ``producer_byte_rate``: bytes/s a principal's produce requests (appends) may write;
* ``consumer_byte_rate``: bytes/s its fetches (reads) may take;
* ``request_rate``: requests/s of any kind (Odradek's own key; Kafka's
  ``request_percentage`` is a share of broker thread time, which a door serving from one
  event loop and an engine pool cannot attribute: it is refused with a clear error).

A tenant's quotas (decision 0028): ``tenant=acme`` (or ``tenant=<default>``, a rate of
each tenant's own) names no user or client id; it bounds all the tenant's principals
together, *in addition* to their user and client quotas: a request of a tenant's
principal is recorded on both, and its throttle is the longer. A tenant's entity alone
may also hold

* ``storage_bytes``: the bytes its topics may store. Not a rate: the engine refuses
  appends to the tenant's topics while they store that much or more
  (engine/tenant_storage.py, ``QuotaExceeded``), whichever door they come through.

Precedence (Kafka's, per quota key: the first entity holding the key applies)::

    user=U,client-id=C           user=U,client-id=<default>        user=U
    user=<default>,client-id=C   user=<default>,client-id=<default> user=<default>
    client-id=C                  client-id=<default>

Requests that resolve to one entity share its rate: a quota on ``user=alice`` bounds all
of alice's clients together; ``user=<default>`` gives each user a rate of its own.

Rates and throttles (Kafka's SampledStat and QuotaUtils)
--------------------------------------------------------
A rate is measured over ``limits.quota_window_count`` samples of
``limits.quota_window_seconds``: a request's bytes are added to the current sample
(recorded even when over the quota, as Kafka does), the rate is the sum of the live
samples over the time they span (at least ``count - 1`` whole windows, so the first
bytes are not read as a burst). Over a quota Q at rate R, the request is answered and the
client throttled for ``(R - Q) / Q * span``, at most ``limits.quota_throttle_seconds_max``:
the time after which the rate is back at the quota.

Bounds: ``limits.quota_entities_max`` entities; sensors (one per (user, client id)
resolved and quota key) at most ``limits.quota_sensors_max`` in all and
``limits.quota_sensors_per_user_max`` per user, least recently used first out, and
dropped after ``limits.quota_sensor_idle_seconds`` unused.

Storage
-------
One checksummed JSON document behind the storage seam, beside the credential store and
where it lives (``<data dir>/security/quotas.json``, the object ``security/quotas.json``
of a server's store, or in a cluster the key ``/odradek/<cluster>/security/quotas.json``
of its etcd, watched by every agent: cluster/documents.py)::

    {"version": 1, "entities": {"user=alice": {"producer_byte_rate": 1048576.0}, ...}}

A change is made on a copy, saved, then published: a refused or failed save changes
nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.security.credentials import (
    _InDataDirectory,
    _InObjectStore,
    _Persistence,
    check_name,
    document_in,
    refresh_thread,
)
from odradek.security.tenants import check_tenant_name
from odradek.storage.disk import LOCAL, Disk
from odradek.storage.documents import Document

if TYPE_CHECKING:
    from odradek.storage.objects import ObjectStore

log = logging.getLogger("odradek.security")

DOCUMENT = "security/quotas.json"
DEFAULT_NAME = "<default>"

USER = "user"
CLIENT_ID = "client-id"
TENANT = "tenant"
# Entity types in the order an entity names them (a tenant, when it exists, goes first).
ENTITY_TYPES = (USER, CLIENT_ID)

PRODUCE = "producer_byte_rate"
FETCH = "consumer_byte_rate"
REQUEST = "request_rate"
STORAGE = "storage_bytes"  # a tenant's stored bytes (not a rate; engine/tenant_storage.py)
QUOTA_KEYS = (PRODUCE, FETCH, REQUEST, STORAGE)
_KAFKA_ONLY_KEYS = {
    "request_percentage": "a share of broker thread time, which Odradek does not measure; "
    "use request_rate (requests/s)",
    "controller_mutation_rate": "Odradek has no controller; topic creation is not rate-bounded",
    "connection_creation_rate": "connections are bounded per peer by the doors' connection caps",
}


@dataclasses.dataclass(frozen=True)
class QuotaEntity:
    """An entity: (type, name) pairs in ``ENTITY_TYPES`` order; name None is ``<default>``."""

    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def of(cls, parts: Iterable[tuple[str, str | None]]) -> QuotaEntity:
        """The entity of (type, name or None) pairs, checked."""
        named: dict[str, str | None] = {}
        for kind, name in parts:
            if kind not in (*ENTITY_TYPES, TENANT):
                known = ", ".join((*ENTITY_TYPES, TENANT))
                raise InvalidRequest(f"a quota entity type is one of {known}, got {str(kind)[:64]!r}")
            if kind in named:
                raise InvalidRequest(f"a quota entity names {kind} once, not twice")
            if name is not None:
                check_name(name, f"{kind} name")
            named[kind] = name
        if not named:
            raise InvalidRequest("a quota entity names a user, a client id or both, or a tenant")
        if TENANT in named:
            if len(named) > 1:
                raise InvalidRequest("a tenant's quota entity names the tenant alone (tenant=acme)")
            if named[TENANT] is not None:
                check_tenant_name(named[TENANT])
            return cls(((TENANT, named[TENANT]),))
        return cls(tuple((kind, named[kind]) for kind in ENTITY_TYPES if kind in named))

    @classmethod
    def parse(cls, text: str) -> QuotaEntity:
        """``user=alice,client-id=<default>`` (the CLI's and the document's form)."""
        parts: list[tuple[str, str | None]] = []
        for item in str(text).split(","):
            kind, equals, name = item.strip().partition("=")
            if not equals or not name:
                raise InvalidRequest(
                    f"a quota entity is TYPE=NAME[,TYPE=NAME] (user=alice, client-id=<default>), "
                    f"got {str(text)[:64]!r}"
                )
            parts.append((kind, None if name == DEFAULT_NAME else name))
        return cls.of(parts)

    def get(self, kind: str) -> str | None:
        return dict(self.parts)[kind]

    def names(self, kind: str) -> bool:
        return any(part == kind for part, _ in self.parts)

    def __str__(self) -> str:
        return ",".join(f"{kind}={DEFAULT_NAME if name is None else name}" for kind, name in self.parts)


def check_value(key: str, value: object) -> float:
    """A quota value: a positive, finite number of its key's unit."""
    if key in _KAFKA_ONLY_KEYS:
        raise InvalidRequest(f"quota {key} is not served: {_KAFKA_ONLY_KEYS[key]}")
    if key not in QUOTA_KEYS:
        raise InvalidRequest(f"a quota is one of {', '.join(QUOTA_KEYS)}, got {str(key)[:64]!r}")
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number <= 0:
        raise InvalidRequest(f"quota {key} must be a positive number, got {str(value)[:64]!r}")
    return float(number)


def candidates(user: str, client_id: str | None) -> list[QuotaEntity]:
    """The entities a request of ``user`` from ``client_id`` may resolve to, most
    specific first (Kafka's precedence; the native door has no client id)."""
    client = [(CLIENT_ID, client_id), (CLIENT_ID, None)] if client_id is not None else [(CLIENT_ID, None)]
    order: list[QuotaEntity] = []
    for user_part in ((USER, user), (USER, None)):
        order += [QuotaEntity((user_part, part)) for part in client]
        order.append(QuotaEntity((user_part,)))
    order += [QuotaEntity((part,)) for part in client]
    return order


# -- settings ----------------------------------------------------------------------------


def _load(data: Any, path: str) -> dict[QuotaEntity, dict[str, float]]:
    if data is None:
        return {}
    try:
        return {
            QuotaEntity.parse(text): {key: check_value(key, value) for key, value in values.items()}
            for text, values in data["entities"].items()
        }
    except (AttributeError, KeyError, TypeError, InvalidRequest) as exc:
        raise StorageError(f"{path} is not a quota document ({type(exc).__name__}: {exc})") from None


@dataclasses.dataclass(frozen=True)
class Alteration:
    """One entity's change: each key set to a value, or removed (None)."""

    entity: QuotaEntity
    values: Mapping[str, float | None]


class QuotaSettings:
    """The quota values per entity (module docstring). Thread-safe; reads take no lock."""

    def __init__(self, persistence: Document | _Persistence) -> None:
        self._persistence: _Persistence = (
            _InDataDirectory(persistence) if isinstance(persistence, Document) else persistence
        )
        self._lock = threading.Lock()
        self._entities = _load(self._persistence.load(), self._persistence.path)

    @classmethod
    def open(cls, data_dir: str, disk: Disk = LOCAL, *, sync: bool = True) -> QuotaSettings:
        """The settings of the data directory ``data_dir`` (none yet: empty)."""
        return cls(document_in(data_dir, DOCUMENT, disk, sync=sync))

    @classmethod
    def in_object_store(cls, store: ObjectStore) -> QuotaSettings:
        """The settings kept as an object of ``store`` (shared by a cluster's agents)."""
        return cls(_InObjectStore(store, DOCUMENT))

    def refresh(self) -> bool:
        """Read the document again if another agent changed it; True if it did."""
        with self._lock:
            if not self._persistence.changed():
                return False
            self._entities = _load(self._persistence.load(), self._persistence.path)
        return True

    def refresh_every(self, seconds: float | None = None) -> threading.Event:
        """Refresh on a daemon thread every ``seconds`` (default
        ``limits.security_refresh_seconds``), and at once when etcd says the document
        changed (cluster/documents.py), until the returned event is set (settings that
        agents share; a failed read is logged and tried again)."""
        return refresh_thread(
            self.refresh,
            seconds,
            "odradek-quotas",
            "the quota settings",
            wake=getattr(self._persistence, "wake", None),
        )

    def entities(self) -> dict[QuotaEntity, dict[str, float]]:
        return {
            entity: dict(values)
            for entity, values in sorted(self._entities.items(), key=lambda item: str(item[0]))
        }

    def describe(self, entity: QuotaEntity | None = None) -> list[dict[str, Any]]:
        """``[{"entity": "user=alice", "quotas": {key: value}}]`` (one entity, or all)."""
        return [
            {"entity": str(found), "quotas": dict(values)}
            for found, values in self.entities().items()
            if entity is None or found == entity
        ]

    def resolve(self, user: str, client_id: str | None, key: str) -> tuple[QuotaEntity, float] | None:
        """The entity whose ``key`` applies to a request of ``user`` from ``client_id``
        and its value; None when no quota bounds it."""
        entities = self._entities
        if not entities:
            return None
        for entity in candidates(user, client_id):
            values = entities.get(entity)
            if values is not None and key in values:
                return entity, values[key]
        return None

    def tenant_quota(self, tenant: str, key: str) -> float | None:
        """Tenant ``tenant``'s ``key`` (``tenant=T``, else ``tenant=<default>``); None: none."""
        entities = self._entities
        if not entities:
            return None
        for entity in (QuotaEntity(((TENANT, tenant),)), QuotaEntity(((TENANT, None),))):
            values = entities.get(entity)
            if values is not None and key in values:
                return values[key]
        return None

    def storage_quota(self, tenant: str) -> float | None:
        """Tenant ``tenant``'s ``storage_bytes`` quota (None: unbounded), for the engine."""
        return self.tenant_quota(tenant, STORAGE)

    def alter(self, alterations: list[Alteration], *, validate_only: bool = False) -> list[str | None]:
        """Apply each alteration whose entity and values are valid, in one save; the
        error of each (None: applied, or would be with ``validate_only``)."""
        errors: list[str | None] = []
        with self._lock:
            if self._persistence.changed():
                self._entities = _load(self._persistence.load(), self._persistence.path)
            changed = dict(self._entities)
            for alteration in alterations:
                try:
                    values = dict(changed.get(alteration.entity, {}))
                    for key, value in alteration.values.items():
                        if value is None:
                            if key not in QUOTA_KEYS and key not in _KAFKA_ONLY_KEYS:
                                raise InvalidRequest(
                                    f"a quota is one of {', '.join(QUOTA_KEYS)}, got {str(key)[:64]!r}"
                                )
                            values.pop(key, None)
                        else:
                            values[key] = check_value(key, value)
                            if key == STORAGE and not alteration.entity.names(TENANT):
                                raise InvalidRequest(
                                    f"{STORAGE} bounds a tenant's stored bytes: set it on tenant=NAME "
                                    f"or tenant=<default>, not on {alteration.entity}"
                                )
                    if values:
                        if alteration.entity not in changed and len(changed) >= limits.quota_entities_max:
                            raise InvalidRequest(
                                f"the server holds {limits.quota_entities_max} quota entities already"
                            )
                        changed[alteration.entity] = values
                    else:
                        changed.pop(alteration.entity, None)
                except InvalidRequest as exc:
                    errors.append(exc.message)
                    continue
                errors.append(None)
            if not validate_only and changed != self._entities:
                self._persistence.save(
                    {"version": 1, "entities": {str(entity): values for entity, values in changed.items()}}
                )
                self._entities = changed
        return errors

    def set(self, entity: QuotaEntity, values: Mapping[str, float | None]) -> None:
        """Set (or, with None, remove) ``entity``'s values; an invalid one changes nothing."""
        (error,) = self.alter([Alteration(entity, values)])
        if error is not None:
            raise InvalidRequest(error)


# -- rates -------------------------------------------------------------------------------


class Rate:
    """Kafka's sampled rate: ``limits.quota_window_count`` samples of
    ``limits.quota_window_seconds``, the oldest reused when a new window starts."""

    __slots__ = ("_current", "_starts", "_values", "owner", "used")

    def __init__(self, now: float, owner: str = "") -> None:
        self.owner = owner  # the principal whose request made it (its memory is counted there)
        count = limits.quota_window_count
        self._starts = [now] + [-math.inf] * (count - 1)
        self._values = [0.0] * count
        self._current = 0
        self.used = now

    def record(self, value: float, now: float) -> None:
        if now - self._starts[self._current] >= limits.quota_window_seconds:
            self._current = (self._current + 1) % len(self._starts)
            self._starts[self._current] = now
            self._values[self._current] = 0.0
        self._values[self._current] += value
        self.used = now

    def measure(self, now: float) -> tuple[float, float]:
        """(rate per second, the span in seconds it is measured over)."""
        window = limits.quota_window_seconds
        expiry = len(self._starts) * window
        total = 0.0
        oldest = now
        for number, start in enumerate(self._starts):
            if now - start >= expiry:
                continue  # obsolete: no longer counts
            total += self._values[number]
            oldest = min(oldest, start)
        span = now - oldest
        full_windows = math.floor(span / window)
        if full_windows < len(self._starts) - 1:
            span += (len(self._starts) - 1 - full_windows) * window
        return total / span, span


def throttle_seconds(rate: float, quota: float, span: float) -> float:
    """How long a client at ``rate`` over ``quota`` waits for its rate to fall back to
    the quota (QuotaUtils.throttleTime), at most ``limits.quota_throttle_seconds_max``."""
    if rate <= quota:
        return 0.0
    return min((rate - quota) / quota * span, limits.quota_throttle_seconds_max)


_SensorKey = tuple[str, str, str]  # quota key, user ("" if the entity names none), client id ("" likewise)


class QuotaManager:
    """The rates of every door's requests against the settings. Thread-safe (a small
    lock around the sensors; the doors call it once per request, never per record)."""

    def __init__(self, settings: QuotaSettings, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._sensors: collections.OrderedDict[_SensorKey, Rate] = collections.OrderedDict()
        self._per_user: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._sensors)

    def record(self, user: str, client_id: str | None, key: str, value: float) -> float:
        """Record ``value`` (bytes, or 1 request) for a request; the seconds its client
        is to be throttled for (0.0: within its quota, or no quota applies)."""
        found = self.settings.resolve(user, client_id, key)
        if found is None:
            return 0.0
        entity, quota = found
        sensor_key = (
            key,
            user if entity.names(USER) else "",
            (client_id or "") if entity.names(CLIENT_ID) else "",
        )
        with self._lock:
            now = self._clock()
            rate = self._sensor(sensor_key, user, now)
            rate.record(value, now)
            observed, span = rate.measure(now)
        return throttle_seconds(observed, quota, span)

    def throttle(
        self,
        user: str,
        client_id: str | None,
        *,
        produced: int = 0,
        fetched: int = 0,
        request: bool = True,
        tenant: str | None = None,
    ) -> float:
        """One request's throttle: the longest of its quotas' (each recorded), its
        tenant's among them."""
        waits = [0.0]
        for key, value in ((REQUEST, 1.0 if request else 0.0), (PRODUCE, produced), (FETCH, fetched)):
            if value:
                waits.append(self.record(user, client_id, key, float(value)))
                if tenant is not None:
                    waits.append(self.record_tenant(tenant, key, float(value)))
        return max(waits)

    def pending(self, user: str, client_id: str | None, key: str, tenant: str | None = None) -> float:
        """The throttle the principal's (and its tenant's) rate of ``key`` gives now,
        nothing added: for a door that refuses a request over quota before serving it
        (the HTTP API's 429) rather than delaying it."""
        wait = self.record(user, client_id, key, 0.0)
        if tenant is not None:
            wait = max(wait, self.record_tenant(tenant, key, 0.0))
        return wait

    def record_tenant(self, tenant: str, key: str, value: float) -> float:
        """Record ``value`` on tenant ``tenant``'s rate (all its principals together); the
        seconds to throttle for (0.0: within its quota, or it has none)."""
        quota = self.settings.tenant_quota(tenant, key)
        if quota is None:
            return 0.0
        owner = f"{TENANT}={tenant}"
        with self._lock:
            now = self._clock()
            rate = self._sensor((key, owner, ""), owner, now)
            rate.record(value, now)
            observed, span = rate.measure(now)
        return throttle_seconds(observed, quota, span)

    def _sensor(self, key: _SensorKey, user: str, now: float) -> Rate:
        """The sensor ``key``, made for ``user`` if new (its oldest goes first when the
        user holds its share, the least recently used of all when the total is reached)."""
        sensors = self._sensors
        rate = sensors.get(key)
        if rate is not None:
            sensors.move_to_end(key)
            return rate
        self._expire(now)
        if self._per_user[user] >= limits.quota_sensors_per_user_max:
            self._drop(next(found for found, known in sensors.items() if known.owner == user))
        if len(sensors) >= limits.quota_sensors_max:
            self._drop(next(iter(sensors)))
        rate = sensors[key] = Rate(now, user)
        self._per_user[user] += 1
        return rate

    def _expire(self, now: float) -> None:
        while self._sensors:
            key, oldest = next(iter(self._sensors.items()))
            if now - oldest.used < limits.quota_sensor_idle_seconds:
                return
            self._drop(key)

    def _drop(self, key: _SensorKey) -> None:
        owner = self._sensors.pop(key).owner
        self._per_user[owner] -= 1
        if not self._per_user[owner]:
            del self._per_user[owner]


# -- metering ----------------------------------------------------------------------------

METERS = ("bytes_in", "bytes_out", "records_in", "records_out", "throttle_seconds")
OTHER = "other"


class Metering:
    """What each principal produced, fetched and waited for, for /metrics: the first
    ``limits.metering_principals_max`` principals get a label of their own, the rest add
    up under ``other``. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[float]] = {}
        self._tenants: dict[str, list[float]] = {}  # the same meters per tenant (decision 0028)
        self._tenant_of: dict[str, str] = {}  # a labelled principal's tenant (its /metrics view)

    def add(
        self,
        principal: str,
        *,
        bytes_in: int = 0,
        bytes_out: int = 0,
        records_in: int = 0,
        records_out: int = 0,
        throttle_seconds: float = 0.0,
        tenant: str | None = None,
    ) -> None:
        added = (bytes_in, bytes_out, records_in, records_out, throttle_seconds)
        with self._lock:
            if tenant is not None and principal not in self._counts:
                if len(self._counts) < limits.metering_principals_max:
                    self._tenant_of[principal] = tenant
            tables = [(self._counts, principal, limits.metering_principals_max)]
            if tenant is not None:
                tables.append((self._tenants, tenant, limits.metering_tenants_max))
            for table, label, most in tables:
                counts = table.get(label)
                if counts is None:
                    if label != OTHER and len(table) >= most:
                        label = OTHER
                    counts = table.setdefault(label, [0.0] * len(METERS))
                for index, amount in enumerate(added):
                    counts[index] += amount

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per principal label, each meter's total so far."""
        with self._lock:
            return {name: dict(zip(METERS, counts, strict=True)) for name, counts in self._counts.items()}

    def principals_of(self, tenant: str) -> set[str]:
        """The principal labels of tenant ``tenant``'s users (``other`` never is one)."""
        with self._lock:
            return {name for name, owner in self._tenant_of.items() if owner == tenant}

    def untenanted_principals(self) -> set[str]:
        """The principal labels of untenanted users (``other`` never is one)."""
        with self._lock:
            return {name for name in self._counts if name != OTHER and name not in self._tenant_of}

    def tenants(self) -> dict[str, dict[str, float]]:
        """Per tenant label (the tenants' principals together), each meter's total so far."""
        with self._lock:
            return {name: dict(zip(METERS, counts, strict=True)) for name, counts in self._tenants.items()}
