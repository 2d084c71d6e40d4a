"""The faults of the chaos run and the rotator that injects them at random.

A fault is injected, *held* for a while, then *healed*:

============================  ====================================  ===========================
kind                          injected                              healed
============================  ====================================  ===========================
``kill_owner``                SIGKILL of the owner agent            started again once the
                                                                    cluster serves (sometimes
                                                                    with an empty data dir)
``pause_owner``               SIGSTOP of the owner, held for twice  SIGCONT: it wakes up a
                              the lease TTL and more                zombie that must be fenced
``stop_owner``                SIGTERM of the owner (a handover)     started again
``kill_etcd_member``          SIGKILL of an etcd follower           started again (its data kept)
``kill_etcd_leader``          SIGKILL of the etcd leader            started again
``store_latency``             every store request delayed           the proxy cleared
``store_errors``              store requests refused (503 SlowDown) the proxy cleared
============================  ====================================  ===========================

In a cluster whose topics are spread over cells (the rotator given ``cells``), an owner
fault hits the agent serving a cell drawn at random for that fault (``details["cell"]``);
the etcd and store faults hit every cell alike.

The rotator acts through a :class:`FaultTarget` (the harness's cluster, or a fake in
tests) and draws everything from its own seeded generator, so a run's faults are the
same for the same seed. It never waits for the cluster itself: the harness decides when
to heal (``Fault.heal_after_recovery``, ``Fault.hold_seconds``).
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from odradek.chaos.stores import StoreFaults
from odradek.errors import InvalidRequest


class FaultKind(enum.StrEnum):
    KILL_OWNER = "kill_owner"
    PAUSE_OWNER = "pause_owner"
    STOP_OWNER = "stop_owner"
    KILL_ETCD_MEMBER = "kill_etcd_member"
    KILL_ETCD_LEADER = "kill_etcd_leader"
    STORE_LATENCY = "store_latency"
    STORE_ERRORS = "store_errors"


OWNER_FAULTS = frozenset({FaultKind.KILL_OWNER, FaultKind.PAUSE_OWNER, FaultKind.STOP_OWNER})


class FaultTarget(Protocol):
    """What the rotator needs of a cluster."""

    def owner(self, cell: str | None = None) -> str | None:
        """The agent that owns the cell (``cell``, else the home cell) now, None if none
        does (or nobody answers)."""

    def kill_agent(self, agent: str) -> None: ...

    def stop_agent(self, agent: str) -> None: ...

    def start_agent(self, agent: str, *, empty: bool) -> None: ...

    def pause_agent(self, agent: str) -> None: ...

    def resume_agent(self, agent: str) -> None: ...

    def etcd_members(self) -> list[str]: ...

    def etcd_leader(self) -> str: ...

    def kill_etcd(self, member: str) -> None: ...

    def start_etcd(self, member: str) -> None: ...

    def set_store_faults(self, faults: StoreFaults) -> None: ...


@dataclasses.dataclass
class FaultSettings:
    """How long faults are held and how strong they are (seconds)."""

    lease_ttl_seconds: float = 3.0
    # A zombie is paused past its lease: 2 x TTL plus up to one more TTL.
    pause_ttl_multiples: tuple[float, float] = (2.0, 3.0)
    etcd_down_seconds: tuple[float, float] = (2.0, 5.0)
    store_fault_seconds: tuple[float, float] = (2.0, 5.0)
    store_latency_seconds: tuple[float, float] = (0.05, 0.3)
    store_error_probability: tuple[float, float] = (0.1, 0.4)
    empty_restart_probability: float = 0.3
    kill_hold_seconds: float = 0.0  # a killed owner stays down until the cluster serves again


@dataclasses.dataclass
class Fault:
    kind: FaultKind
    target: str | None  # the agent or etcd member, None for the store
    injected_at: float  # time.monotonic()
    hold_seconds: float  # keep it at least this long before healing
    heal_after_recovery: bool  # heal only once the cluster serves again
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    healed_at: float | None = None

    def describe(self) -> str:
        extra = " ".join(f"{name}={value}" for name, value in self.details.items())
        return f"{self.kind.value}{' ' + self.target if self.target else ''}{' ' + extra if extra else ''}"


class FaultRotator:
    """Injects faults of ``kinds`` chosen at random (or in the order of ``schedule``,
    then at random), and heals them."""

    def __init__(
        self,
        target: FaultTarget,
        *,
        seed: int = 0,
        kinds: Sequence[FaultKind] = tuple(FaultKind),
        schedule: Sequence[FaultKind] = (),
        settings: FaultSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        cells: Sequence[str] = (),
    ) -> None:
        if not kinds:
            raise InvalidRequest("the fault rotator needs at least one kind of fault")
        self.target = target
        self.random = random.Random(seed)
        self.kinds = tuple(FaultKind(kind) for kind in kinds)
        self.schedule = [FaultKind(kind) for kind in schedule]
        self.settings = settings or FaultSettings()
        self.clock = clock
        self.cells = tuple(cells)  # several: an owner fault hits a cell drawn at random
        self.injected: list[Fault] = []

    def next_kind(self) -> FaultKind:
        if self.schedule:
            return self.schedule.pop(0)
        return self.random.choice(self.kinds)

    def inject(self, kind: FaultKind | None = None) -> Fault:
        """Inject one fault (of ``kind``, else the next one drawn). An owner fault when no
        agent owns the cell raises InvalidRequest: wait for the cluster to serve first."""
        kind = self.next_kind() if kind is None else FaultKind(kind)
        fault = _INJECT[kind](self)
        self.injected.append(fault)
        return fault

    def heal(self, fault: Fault) -> None:
        """Undo ``fault`` (once; a second call does nothing)."""
        if fault.healed_at is not None:
            return
        _HEAL[fault.kind](self, fault)
        fault.healed_at = self.clock()

    # -- injections -----------------------------------------------------------------

    def _owner(self) -> tuple[str, dict[str, Any]]:
        """The agent an owner fault hits, and the details naming the cell it was drawn
        for (none in a cluster of one cell)."""
        if len(self.cells) > 1:
            cell = self.random.choice(self.cells)
            owner = self.target.owner(cell)
            if owner is None:
                raise InvalidRequest(f"no agent owns the cell {cell} now: an owner fault needs one")
            return owner, {"cell": cell}
        owner = self.target.owner()
        if owner is None:
            raise InvalidRequest("no agent owns the cell now: an owner fault needs one")
        return owner, {}

    def _uniform(self, bounds: tuple[float, float]) -> float:
        return round(self.random.uniform(*bounds), 3)

    def _kill_owner(self) -> Fault:
        owner, cell = self._owner()
        empty = self.random.random() < self.settings.empty_restart_probability
        self.target.kill_agent(owner)
        return Fault(
            FaultKind.KILL_OWNER,
            owner,
            self.clock(),
            self.settings.kill_hold_seconds,
            True,
            cell | {"empty": empty},
        )

    def _stop_owner(self) -> Fault:
        owner, cell = self._owner()
        at = self.clock()
        self.target.stop_agent(owner)
        return Fault(FaultKind.STOP_OWNER, owner, at, 0.0, True, cell | {"empty": False})

    def _pause_owner(self) -> Fault:
        owner, cell = self._owner()
        seconds = self._uniform(self.settings.pause_ttl_multiples) * self.settings.lease_ttl_seconds
        self.target.pause_agent(owner)
        return Fault(
            FaultKind.PAUSE_OWNER, owner, self.clock(), seconds, False, cell | {"seconds": round(seconds, 3)}
        )

    def _kill_etcd(self, kind: FaultKind) -> Fault:
        if kind is FaultKind.KILL_ETCD_LEADER:
            member = self.target.etcd_leader()
        else:
            leader = self.target.etcd_leader()
            member = self.random.choice([name for name in self.target.etcd_members() if name != leader])
        seconds = self._uniform(self.settings.etcd_down_seconds)
        self.target.kill_etcd(member)
        return Fault(kind, member, self.clock(), seconds, False, {"seconds": seconds})

    def _store(self, kind: FaultKind) -> Fault:
        seconds = self._uniform(self.settings.store_fault_seconds)
        if kind is FaultKind.STORE_LATENCY:
            low = self._uniform(self.settings.store_latency_seconds)
            high = max(low, self._uniform(self.settings.store_latency_seconds))
            faults = StoreFaults(latency_seconds=(low, high))
            details: dict[str, Any] = {"latency": [low, high]}
        else:
            probability = self._uniform(self.settings.store_error_probability)
            faults = StoreFaults(error_probability=probability)
            details = {"probability": probability}
        self.target.set_store_faults(faults)
        details["seconds"] = seconds
        return Fault(kind, None, self.clock(), seconds, False, details)

    # -- healing --------------------------------------------------------------------

    def _restart(self, fault: Fault) -> None:
        self.target.start_agent(_named(fault), empty=bool(fault.details.get("empty")))

    def _resume(self, fault: Fault) -> None:
        self.target.resume_agent(_named(fault))

    def _restart_etcd(self, fault: Fault) -> None:
        self.target.start_etcd(_named(fault))

    def _clear_store(self, fault: Fault) -> None:
        self.target.set_store_faults(StoreFaults())


def _named(fault: Fault) -> str:
    if fault.target is None:
        raise InvalidRequest(f"a {fault.kind.value} fault without the agent or member it hit")
    return fault.target


_INJECT: dict[FaultKind, Callable[[FaultRotator], Fault]] = {
    FaultKind.KILL_OWNER: FaultRotator._kill_owner,
    FaultKind.PAUSE_OWNER: FaultRotator._pause_owner,
    FaultKind.STOP_OWNER: FaultRotator._stop_owner,
    FaultKind.KILL_ETCD_MEMBER: lambda rotator: rotator._kill_etcd(FaultKind.KILL_ETCD_MEMBER),
    FaultKind.KILL_ETCD_LEADER: lambda rotator: rotator._kill_etcd(FaultKind.KILL_ETCD_LEADER),
    FaultKind.STORE_LATENCY: lambda rotator: rotator._store(FaultKind.STORE_LATENCY),
    FaultKind.STORE_ERRORS: lambda rotator: rotator._store(FaultKind.STORE_ERRORS),
}
_HEAL: dict[FaultKind, Callable[[FaultRotator, Fault], None]] = {
    FaultKind.KILL_OWNER: FaultRotator._restart,
    FaultKind.PAUSE_OWNER: FaultRotator._resume,
    FaultKind.STOP_OWNER: FaultRotator._restart,
    FaultKind.KILL_ETCD_MEMBER: FaultRotator._restart_etcd,
    FaultKind.KILL_ETCD_LEADER: FaultRotator._restart_etcd,
    FaultKind.STORE_LATENCY: FaultRotator._clear_store,
    FaultKind.STORE_ERRORS: FaultRotator._clear_store,
}
