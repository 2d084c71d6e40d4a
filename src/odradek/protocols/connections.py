"""What one peer may cost a door: connections at once, per door and per peer address.

Every door of ``odradek serve`` holds its connections (the Flight door: its calls, as
gRPC hides connections) in a :class:`ConnectionSlots`: at most ``connections_max`` at
once, at most ``connections_per_peer_max`` from one peer address. A connection over a
cap is refused at once (closed; an HTTP door answers 503 first) with one warning line
naming the door, the peer and the cap, so a flood from one host leaves room for
everybody else. :class:`DoorLimits` carries a door's caps and timeouts; the defaults
are in :mod:`odradek.limits`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from typing import Any

from odradek import limits

log = logging.getLogger("odradek.connections")


@dataclasses.dataclass(frozen=True)
class DoorLimits:
    """The bounds of one door.

    ``idle_seconds``: a connection with no request in progress (or a request whose bytes
    stop arriving) for this long is closed. ``request_seconds``: a request must arrive
    whole within this long of its first byte, waiting for room in the in-flight budget
    included.
    """

    connections_max: int
    connections_per_peer_max: int
    idle_seconds: float
    request_seconds: float = limits.request_read_seconds_default

    def __post_init__(self) -> None:
        for name in ("connections_max", "connections_per_peer_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("idle_seconds", "request_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def replace(self, **changes: Any) -> DoorLimits:
        """These limits with the given fields changed; None values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


KAFKA = DoorLimits(
    limits.kafka_connections_max_default,
    limits.kafka_connections_per_peer_max_default,
    limits.kafka_idle_seconds_default,
)
FLIGHT = DoorLimits(
    limits.flight_calls_max_default,
    limits.flight_calls_per_peer_max_default,
    limits.kafka_idle_seconds_default,  # unused: gRPC keeps its own connections
)
REGISTRY = DoorLimits(
    limits.registry_connections_max_default,
    limits.registry_connections_per_peer_max_default,
    limits.registry_idle_seconds_default,
)
METRICS = DoorLimits(
    limits.metrics_connections_max_default,
    limits.metrics_connections_per_peer_max_default,
    limits.metrics_idle_seconds_default,
)


class ConnectionSlots:
    """Connections open at a door, in total and per peer address; thread-safe."""

    def __init__(self, door: str, connections_max: int, connections_per_peer_max: int) -> None:
        self.door = door
        self.connections_max = connections_max
        self.connections_per_peer_max = connections_per_peer_max
        self._lock = threading.Lock()
        self._open = 0
        self._per_peer: dict[str, int] = {}
        self.accepted = 0  # connections taken and refused, for /metrics (protocols/observe.py)
        self.refused = 0
        _SLOTS.add(self)

    @classmethod
    def of(cls, door: str, bounds: DoorLimits) -> ConnectionSlots:
        return cls(door, bounds.connections_max, bounds.connections_per_peer_max)

    @property
    def open(self) -> int:
        return self._open

    def count(self, peer: str) -> int:
        return self._per_peer.get(peer, 0)

    def acquire(self, peer: str) -> str | None:
        """Take a slot for a connection from ``peer``: None, or why it is refused (the
        refusal is logged at warning)."""
        with self._lock:
            held = self._per_peer.get(peer, 0)
            if self._open >= self.connections_max:
                reason = (
                    f"{self.door} connection from {peer} refused: {self._open} connections are "
                    f"open, the cap of the door (connections_max={self.connections_max})"
                )
            elif held >= self.connections_per_peer_max:
                reason = (
                    f"{self.door} connection from {peer} refused: it has {held} open, the cap per "
                    f"peer address (connections_per_peer_max={self.connections_per_peer_max})"
                )
            else:
                self._open += 1
                self._per_peer[peer] = held + 1
                self.accepted += 1
                return None
            self.refused += 1
        log.warning(
            reason,
            extra={
                "fields": {
                    "door": self.door,
                    "peer": peer,
                    "connections_max": self.connections_max,
                    "connections_per_peer_max": self.connections_per_peer_max,
                }
            },
        )
        return reason

    def release(self, peer: str) -> None:
        with self._lock:
            held = self._per_peer.get(peer, 0)
            if held <= 0:
                return
            self._open -= 1
            if held == 1:
                del self._per_peer[peer]
            else:
                self._per_peer[peer] = held - 1


#: Every door's connection slots, for /metrics (a server's slots live as long as it does).
_SLOTS: weakref.WeakSet[ConnectionSlots] = weakref.WeakSet()


def totals() -> dict[str, tuple[int, int, int]]:
    """Per door name: connections open, accepted and refused (all its live slots)."""
    sums: dict[str, tuple[int, int, int]] = {}
    for slots in list(_SLOTS):
        now, taken, turned = sums.get(slots.door, (0, 0, 0))
        sums[slots.door] = (now + slots.open, taken + slots.accepted, turned + slots.refused)
    return sums


def peer_host(address: object) -> str:
    """The host part of a peer address: a socket's ``(host, port, ...)`` tuple, or
    gRPC's ``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` / ``unix:...`` text."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    if isinstance(address, bytes):
        address = address.decode("utf-8", "replace")
    text = str(address or "")
    scheme, _, rest = text.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host, _, _port = rest.rpartition(":")
        return host.strip("[]") or rest
    if scheme == "unix":
        return "unix"
    return text or "unknown"
