"""The fault rotator injects and heals each kind of fault on the right target.

Goal: every kind acts on what it names (the owner agent, an etcd follower, the etcd
leader, the store) and is undone by its own heal; draws are random but the same for the
same seed; a schedule comes first; an owner fault without an owner is refused, not
guessed. Method: a fake cluster that records the calls it gets.
"""

from __future__ import annotations

from collections import Counter

import pytest

from odradek.chaos.faults import OWNER_FAULTS, FaultKind, FaultRotator, FaultSettings
from odradek.chaos.stores import StoreFaults
from odradek.errors import InvalidRequest


class FakeCluster:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.current_owner: str | None = "a2"
        self.leader = "m1"
        self.store = StoreFaults()

    def owner(self) -> str | None:
        return self.current_owner

    def kill_agent(self, agent: str) -> None:
        self.calls.append(("kill_agent", agent))

    def stop_agent(self, agent: str) -> None:
        self.calls.append(("stop_agent", agent))

    def start_agent(self, agent: str, *, empty: bool) -> None:
        self.calls.append(("start_agent", agent, empty))

    def pause_agent(self, agent: str) -> None:
        self.calls.append(("pause_agent", agent))

    def resume_agent(self, agent: str) -> None:
        self.calls.append(("resume_agent", agent))

    def etcd_members(self) -> list[str]:
        return ["m0", "m1", "m2"]

    def etcd_leader(self) -> str:
        return self.leader

    def kill_etcd(self, member: str) -> None:
        self.calls.append(("kill_etcd", member))

    def start_etcd(self, member: str) -> None:
        self.calls.append(("start_etcd", member))

    def set_store_faults(self, faults: StoreFaults) -> None:
        self.store = faults
        self.calls.append(("store", faults))


def _rotator(cluster: FakeCluster, seed: int = 3, **options: object) -> FaultRotator:
    return FaultRotator(cluster, seed=seed, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "injected", "healed"),
    [
        (FaultKind.KILL_OWNER, ("kill_agent", "a2"), "start_agent"),
        (FaultKind.STOP_OWNER, ("stop_agent", "a2"), "start_agent"),
        (FaultKind.PAUSE_OWNER, ("pause_agent", "a2"), ("resume_agent", "a2")),
        (FaultKind.KILL_ETCD_LEADER, ("kill_etcd", "m1"), ("start_etcd", "m1")),
    ],
)
def test_a_fault_hits_its_target_and_its_heal_undoes_it(
    kind: FaultKind, injected: tuple[str, str], healed: object
) -> None:
    cluster = FakeCluster()
    rotator = _rotator(cluster)
    fault = rotator.inject(kind)
    assert cluster.calls == [injected]
    assert fault.target == injected[1] and fault.kind is kind
    assert fault.heal_after_recovery is (kind in (FaultKind.KILL_OWNER, FaultKind.STOP_OWNER))
    rotator.heal(fault)
    rotator.heal(fault)  # healed once only
    assert len(cluster.calls) == 2
    if isinstance(healed, tuple):
        assert cluster.calls[1] == healed
    else:
        name, agent, empty = cluster.calls[1]
        assert (name, agent) == (healed, "a2") and empty == fault.details["empty"]
    assert fault.healed_at is not None and fault.healed_at >= fault.injected_at


def test_a_paused_owner_is_held_past_its_lease() -> None:
    cluster = FakeCluster()
    rotator = _rotator(cluster, settings=FaultSettings(lease_ttl_seconds=3.0))
    holds = [rotator.inject(FaultKind.PAUSE_OWNER).hold_seconds for _ in range(50)]
    assert min(holds) >= 6.0 and max(holds) <= 9.0


def test_an_etcd_member_fault_spares_the_leader() -> None:
    cluster = FakeCluster()
    rotator = _rotator(cluster)
    for _ in range(30):
        fault = rotator.inject(FaultKind.KILL_ETCD_MEMBER)
        assert fault.target in ("m0", "m2")
        rotator.heal(fault)
    assert ("kill_etcd", "m1") not in cluster.calls


@pytest.mark.parametrize("kind", [FaultKind.STORE_LATENCY, FaultKind.STORE_ERRORS])
def test_store_faults_are_set_then_cleared(kind: FaultKind) -> None:
    cluster = FakeCluster()
    rotator = _rotator(cluster)
    fault = rotator.inject(kind)
    assert not cluster.store.none and fault.target is None
    if kind is FaultKind.STORE_LATENCY:
        low, high = cluster.store.latency_seconds
        assert 0.05 <= low <= high <= 0.3 and cluster.store.error_probability == 0
    else:
        assert 0.1 <= cluster.store.error_probability <= 0.4 and cluster.store.latency_seconds == (0, 0)
    rotator.heal(fault)
    assert cluster.store.none


def test_an_owner_fault_without_an_owner_is_refused() -> None:
    cluster = FakeCluster()
    cluster.current_owner = None
    for kind in OWNER_FAULTS:
        with pytest.raises(InvalidRequest, match="no agent owns the cell"):
            _rotator(cluster).inject(kind)
    assert cluster.calls == []


def test_draws_follow_the_seed_and_the_schedule_comes_first() -> None:
    def kinds(seed: int) -> list[FaultKind]:
        rotator = _rotator(FakeCluster(), seed=seed, schedule=[FaultKind.STORE_ERRORS, FaultKind.KILL_OWNER])
        return [rotator.inject().kind for _ in range(40)]

    first = kinds(11)
    assert first[:2] == [FaultKind.STORE_ERRORS, FaultKind.KILL_OWNER]
    assert first == kinds(11)
    assert first != kinds(12)
    assert set(Counter(first[2:])) == set(FaultKind), "40 draws reach every kind"


def test_draws_stay_within_the_kinds_given() -> None:
    rotator = _rotator(FakeCluster(), kinds=[FaultKind.KILL_OWNER, FaultKind.PAUSE_OWNER])
    assert {rotator.inject().kind for _ in range(20)} == {FaultKind.KILL_OWNER, FaultKind.PAUSE_OWNER}
    with pytest.raises(InvalidRequest, match="at least one kind"):
        _rotator(FakeCluster(), kinds=[])


def test_a_killed_owner_sometimes_comes_back_empty() -> None:
    rotator = _rotator(FakeCluster(), settings=FaultSettings(empty_restart_probability=0.5))
    empties = {rotator.inject(FaultKind.KILL_OWNER).details["empty"] for _ in range(30)}
    assert empties == {True, False}


class FakeCells(FakeCluster):
    """Three cells, each served by an agent of its own (or by none)."""

    def __init__(self) -> None:
        super().__init__()
        self.serving: dict[str, str | None] = {"_cell": "a2", "_cell.1": "a3", "_cell.2": "a1"}

    def owner(self, cell: str | None = None) -> str | None:
        return self.serving["_cell" if cell is None else cell]


def test_with_cells_an_owner_fault_hits_the_agent_serving_a_cell_drawn_at_random() -> None:
    cluster = FakeCells()
    rotator = _rotator(cluster, cells=tuple(cluster.serving))
    drawn = []
    for kind in [*OWNER_FAULTS] * 10:
        fault = rotator.inject(kind)
        drawn.append(fault.details["cell"])
        assert fault.target == cluster.serving[fault.details["cell"]]
        rotator.heal(fault)
    assert set(drawn) == set(cluster.serving), "30 draws reach every cell"
    assert "cell" not in rotator.inject(FaultKind.KILL_ETCD_LEADER).details
    cluster.serving["_cell.1"] = None
    with pytest.raises(InvalidRequest, match=r"no agent owns the cell _cell\.1"):
        for _ in range(30):
            rotator.inject(FaultKind.KILL_OWNER)
