"""Tenants' stored bytes, and the ``storage_bytes`` quota that bounds them (decision 0028).

The engine checks every append to a tenant's topic here before writing it, whichever
door it came through (Flight, Kafka, the HTTP API, an embedded client, a group's dead
letters): while the tenant's stored bytes are at or over its quota the append is refused
with :class:`~odradek.errors.QuotaExceeded` and nothing of it is written. Reads,
deletions, retention and compaction are never refused, so a tenant gets back under by
deleting topics or records, or by waiting for retention.

Usage is a running total per tenant, never a scan of files: the sum of the segment sizes
the engine already holds in memory (``Log.size_bytes``, what ``odradek_topic_bytes``
shows), taken for every tenant in one pass over the open topics at most every
``limits.tenant_storage_refresh_seconds``, plus the bytes each append accepted since
added to its segment (its frame's size), so a crossing is seen by the next append. A
deleted topic, deleted records (once a whole segment is below the log start), or a
retention or compaction pass that removed something marks the totals stale, so the next
check sums again: the tenant is under again at its next append.

The bound is Kafka-like, checked before an append and not reserved: the append that
crosses the quota is written, the next one is refused. The overshoot is at most the
appends already past the check at that moment, one per writer (each at most
``append_bytes_max``), and the records of Kafka transactions staged before the crossing
(checked when staged, written when their transaction commits: a committed transaction is
never refused half-way).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable

from odradek import limits
from odradek.errors import QuotaExceeded
from odradek.names import tenant_of

# Tenant name -> its storage_bytes quota (None: unbounded); set by the server from the
# quota settings (security/quotas.py).
StorageQuota = Callable[[str], float | None]


class TenantStorage:
    """Per-tenant stored bytes against their quota. Thread-safe (a small lock; one dict
    look-up per append while the totals are fresh)."""

    def __init__(
        self,
        sizes: Callable[[], Iterable[tuple[str, int]]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``sizes`` gives each open topic's name and stored bytes (held in memory)."""
        self._sizes = sizes
        self._clock = clock
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._summed_at = -math.inf
        self._changes = 0  # counted by stale(): a sum taken across one is not fresh
        self.quota: StorageQuota | None = None

    def stale(self) -> None:
        """Sum again at the next check (topics or records were deleted, space freed)."""
        self._changes += 1
        self._summed_at = -math.inf

    def usage(self, tenant: str) -> int:
        """Tenant ``tenant``'s stored bytes as last summed, plus appends since."""
        with self._lock:
            self._fresh()
            return self._totals.get(tenant, 0)

    def check(self, topic: str, *, refuse: bool = True) -> str | None:
        """Refuse an append to ``topic`` while its tenant is at or over its quota (with
        ``refuse``); the tenant to count the append against (None: not a tenant's topic,
        or no quota)."""
        bound = self.quota
        if bound is None:
            return None
        tenant = tenant_of(topic)
        if tenant is None:
            return None
        quota = bound(tenant)
        if quota is None:
            return None
        if not refuse:
            return tenant
        used = self.usage(tenant)
        if used >= quota:
            raise QuotaExceeded(
                f"tenant {tenant} stores {used} bytes, at or over its storage_bytes quota of "
                f"{int(quota)}: appends are refused until it is under (delete topics or records, "
                f"or let retention free space)",
                tenant,
                used,
                int(quota),
            )
        return tenant

    def added(self, tenant: str, size: int) -> None:
        """An append of ``size`` bytes to a topic of ``tenant`` was written."""
        with self._lock:
            self._totals[tenant] = self._totals.get(tenant, 0) + size

    def _fresh(self) -> None:
        now = self._clock()
        if now - self._summed_at < limits.tenant_storage_refresh_seconds:
            return
        changes = self._changes
        totals: dict[str, int] = {}
        for name, size in self._sizes():
            tenant = tenant_of(name)
            if tenant is not None:
                totals[tenant] = totals.get(tenant, 0) + size
        self._totals = totals
        if self._changes == changes:  # else space was freed meanwhile: sum again next time
            self._summed_at = now
