"""How long an agent may still act on its etcd lease, by its own clock (no IO).

Theory of operation. etcd expires a lease TTL seconds after the last renewal *it
received*. A renewal the agent sent at local time ``s`` and that etcd answered with
``ttl`` therefore keeps the lease alive until at least ``s + ttl`` on the agent's clock
(etcd received it after ``s``; clocks run at the same rate to a few parts per million,
and etcd only ever *extends* leases, e.g. on a leader change). That instant is
``expires_at``; no other agent can acquire what the lease holds before it.

The agent acts as an owner only until ``expires_at - margin`` (``safe_until``): it fences
itself first, a margin before anyone else can take over, as Bufstream's brokers and
Kafka's KRaft brokers do. The margin absorbs the agent's own scheduling delays between
looking at the clock and acting. It cannot absorb an unbounded pause (SIGSTOP, a swap
storm) between the look and the act: that is what the store's fences are for (decision
record 0012). Once the clock passes ``safe_until`` the lease is *lost for good* here,
even if a late renewal succeeds: the agent joins again with a new lease rather than
resuming what it already told everyone it had given up.

The clock is ``time.monotonic`` (CLOCK_MONOTONIC on Linux keeps counting while the
process is stopped, so a process woken from SIGSTOP sees the time it lost).
"""

from __future__ import annotations

import dataclasses

from odradek import limits
from odradek.errors import InvalidRequest


@dataclasses.dataclass
class LeaseClock:
    """A lease's safe window on the local monotonic clock."""

    lease: int
    ttl_seconds: float
    expires_at: float
    margin_seconds: float
    lost: bool = False

    @classmethod
    def granted(cls, lease: int, sent_at: float, ttl_seconds: float) -> LeaseClock:
        """The clock of a lease whose grant was sent at ``sent_at`` and answered with
        ``ttl_seconds`` (etcd may grant more than asked, never less than its minimum)."""
        if not ttl_seconds > 0:
            raise InvalidRequest(f"lease {lease} was granted with TTL {ttl_seconds!r}")
        margin = ttl_seconds * limits.cluster_lease_margin_ratio
        return cls(lease, ttl_seconds, sent_at + ttl_seconds, margin)

    @property
    def safe_until(self) -> float:
        return self.expires_at - self.margin_seconds

    @property
    def keepalive_seconds(self) -> float:
        """How often to renew: TTL / cluster_keepalive_per_ttl."""
        return self.ttl_seconds / limits.cluster_keepalive_per_ttl

    def held(self, now: float) -> bool:
        """True while the agent may act on the lease; once False, False for good."""
        if not self.lost and now >= self.safe_until:
            self.lost = True
        return not self.lost

    def renewed(self, sent_at: float, ttl_seconds: float, now: float) -> bool:
        """A renewal sent at ``sent_at`` came back at ``now`` with ``ttl_seconds`` left
        (etcd answers a TTL <= 0 for a lease it no longer has). Returns ``held(now)``."""
        if ttl_seconds <= 0:
            self.lost = True
        elif self.held(now):
            self.expires_at = max(self.expires_at, sent_at + ttl_seconds)
        return self.held(now)

    def remaining(self, now: float) -> float:
        """Seconds the agent may still act (0 once lost)."""
        return max(0.0, self.safe_until - now) if self.held(now) else 0.0
