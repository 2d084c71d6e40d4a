"""Quota settings, their resolution, the sampled rates and the bounds on memory.

Goal: an entity's quotas are resolved with Kafka's precedence (user+client-id, the
user's default client, the user, the default user's..., client-id alone), per quota key;
bad entities and values are refused with InvalidRequest and change nothing; the
settings persist across a reopen, in a data directory and in an object store; the
sampled rate throttles as Kafka's QuotaUtils computes (the time for the rate to fall
back to the quota); sensors and metering labels stay within their limits.
Method: settings in temporary data directories and an in-memory object store; the
quota manager on a hand-moved clock, so that no assertion depends on time.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.security.quotas import (
    DOCUMENT,
    FETCH,
    OTHER,
    PRODUCE,
    REQUEST,
    Alteration,
    Metering,
    QuotaEntity,
    QuotaManager,
    QuotaSettings,
)
from odradek.storage.objects import open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _entity(text: str) -> QuotaEntity:
    return QuotaEntity.parse(text)


def test_precedence_is_kafkas_per_key(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    levels = [
        "client-id=<default>",
        "client-id=app",
        "user=<default>",
        "user=<default>,client-id=<default>",
        "user=<default>,client-id=app",
        "user=alice",
        "user=alice,client-id=<default>",
        "user=alice,client-id=app",
    ]
    for number, text in enumerate(levels):  # least specific first, each with its own value
        settings.set(_entity(text), {PRODUCE: float(number + 1)})
    for number in reversed(range(len(levels))):
        found = settings.resolve("alice", "app", PRODUCE)
        assert found is not None and (str(found[0]), found[1]) == (levels[number], float(number + 1))
        settings.set(_entity(levels[number]), {PRODUCE: None})  # the next level takes over
    assert settings.resolve("alice", "app", PRODUCE) is None
    assert settings.entities() == {}


def test_each_key_resolves_on_its_own(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("user=alice"), {PRODUCE: 100.0})
    settings.set(_entity("user=<default>"), {FETCH: 200.0, PRODUCE: 50.0})
    assert settings.resolve("alice", None, PRODUCE) == (_entity("user=alice"), 100.0)
    assert settings.resolve("alice", None, FETCH) == (_entity("user=<default>"), 200.0)
    assert settings.resolve("bob", "x", PRODUCE) == (_entity("user=<default>"), 50.0)
    assert settings.resolve("bob", "x", REQUEST) is None


def test_bad_entities_and_values_are_refused_and_change_nothing(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("user=alice"), {PRODUCE: 100.0})
    for text in ("", "user", "group=g", "user=a,user=b", "user=bad name", "tenant=a.b", "tenant=shop,user=a"):
        with pytest.raises(InvalidRequest):
            QuotaEntity.parse(text)
    for key, value in (
        (PRODUCE, 0),
        (PRODUCE, -1.0),
        (PRODUCE, math.inf),
        (PRODUCE, math.nan),
        (PRODUCE, True),
        ("request_percentage", 50.0),
        ("nonsense", 1.0),
    ):
        with pytest.raises(InvalidRequest):
            settings.set(_entity("user=alice"), {FETCH: 10.0, key: value})
    errors = settings.alter(
        [Alteration(_entity("user=bob"), {PRODUCE: 5.0}), Alteration(_entity("user=carol"), {PRODUCE: -5.0})]
    )
    assert errors[0] is None and errors[1] is not None and "positive" in errors[1]
    assert QuotaSettings.open(str(tmp_path)).entities() == {
        _entity("user=alice"): {PRODUCE: 100.0},
        _entity("user=bob"): {PRODUCE: 5.0},
    }
    assert settings.alter([Alteration(_entity("user=dave"), {PRODUCE: 5.0})], validate_only=True) == [None]
    assert _entity("user=dave") not in settings.entities()


def test_settings_persist_and_damage_is_refused(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("user=alice,client-id=<default>"), {PRODUCE: 1024.0, REQUEST: 10.0})
    again = QuotaSettings.open(str(tmp_path))
    assert again.describe() == [
        {"entity": "user=alice,client-id=<default>", "quotas": {PRODUCE: 1024.0, REQUEST: 10.0}}
    ]
    for name in (DOCUMENT, DOCUMENT + ".copy"):
        (tmp_path / name).write_bytes(b'{"entities": 3}\n')
    with pytest.raises(StorageError):
        QuotaSettings.open(str(tmp_path))


def test_agents_sharing_an_object_store_see_each_others_changes() -> None:
    store = open_store("memory://")
    one = QuotaSettings.in_object_store(store)
    two = QuotaSettings.in_object_store(store)
    one.set(_entity("user=alice"), {PRODUCE: 10.0})
    assert two.refresh() and two.resolve("alice", None, PRODUCE) is not None
    two.set(_entity("user=bob"), {FETCH: 20.0})  # reads the latest before it changes
    assert one.refresh()
    assert set(one.entities()) == {_entity("user=alice"), _entity("user=bob")}


def test_throttle_is_the_time_to_fall_back_to_the_quota(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("user=alice"), {PRODUCE: 1000.0})
    clock = Clock()
    manager = QuotaManager(settings, clock)
    span = (limits.quota_window_count - 1) * limits.quota_window_seconds
    # Within the quota: 1,000 B/s over the first span is 10,000 bytes.
    assert manager.record("alice", "x", PRODUCE, 10_000) == 0.0
    # 20,000 bytes over a 10 s span is 2,000 B/s: (2000 - 1000) / 1000 * 10 s.
    assert manager.record("alice", "x", PRODUCE, 10_000) == pytest.approx(span)
    # Another client of alice shares her rate (the entity names no client id).
    assert manager.record("alice", "y", PRODUCE, 1) > 0
    # A huge request is throttled at most for the bound.
    assert manager.record("alice", "x", PRODUCE, 10**12) == limits.quota_throttle_seconds_max
    # Once every sample is obsolete the rate starts again from nothing.
    clock.now += limits.quota_window_count * limits.quota_window_seconds
    assert manager.record("alice", "x", PRODUCE, 100) == 0.0
    # Nobody else is bounded, and no sensor is kept for them.
    before = len(manager)
    assert manager.throttle("bob", "x", produced=10**9, fetched=10**9) == 0.0
    assert len(manager) == before


def test_default_entities_give_each_user_a_rate_of_its_own(tmp_path: Path) -> None:
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("user=<default>"), {REQUEST: 1.0})
    manager = QuotaManager(settings, Clock())
    for _ in range(limits.quota_window_count - 1):
        assert manager.record("alice", None, REQUEST, 1) == 0.0
    assert manager.record("alice", None, REQUEST, 1) > 0  # alice is over
    assert manager.record("bob", None, REQUEST, 1) == 0.0  # bob is not


def test_sensors_are_bounded_per_user_and_in_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "quota_sensors_max", 8)
    monkeypatch.setattr(limits, "quota_sensors_per_user_max", 3)
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("client-id=<default>"), {PRODUCE: 10.0})  # a sensor per client id
    clock = Clock()
    manager = QuotaManager(settings, clock)
    for _ in range(limits.quota_window_count):  # the quiet user's client goes over its quota
        manager.record("quiet", "one", PRODUCE, 10)
    assert manager.record("quiet", "one", PRODUCE, 10) > 0
    for number in range(100):  # one user cycling client ids evicts only its own sensors
        manager.record("noisy", f"c{number}", PRODUCE, 1)
    assert len(manager) == 4
    # The quiet client's sensor was kept: it is still over its quota.
    assert manager.record("quiet", "one", PRODUCE, 1) > 0 and len(manager) == 4
    for number in range(100):  # many users: the total bound holds
        manager.record(f"user{number}", f"u{number}", PRODUCE, 1)
    assert len(manager) == 8
    clock.now += limits.quota_sensor_idle_seconds
    manager.record("late", "c", PRODUCE, 1)  # idle sensors are dropped
    assert len(manager) == 1


def test_metering_folds_principals_past_the_bound_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "metering_principals_max", 2)
    metering = Metering()
    metering.add("alice", bytes_in=10, records_in=1)
    metering.add("bob", bytes_out=20, records_out=2)
    metering.add("carol", bytes_in=5, throttle_seconds=0.5)
    metering.add("dave", bytes_in=7)
    metering.add("alice", bytes_in=1)
    snapshot = metering.snapshot()
    assert set(snapshot) == {"alice", "bob", OTHER}
    assert snapshot["alice"]["bytes_in"] == 11 and snapshot["alice"]["records_in"] == 1
    assert snapshot[OTHER]["bytes_in"] == 12 and snapshot[OTHER]["throttle_seconds"] == 0.5


def test_a_tenants_quota_bounds_its_principals_together(tmp_path: Path) -> None:
    """``tenant=T`` (decision 0028) is recorded for every principal of T beside their own
    quotas; the longer throttle applies; ``tenant=<default>`` gives each tenant its own."""
    settings = QuotaSettings.open(str(tmp_path))
    settings.set(_entity("tenant=acme"), {PRODUCE: 1000.0})
    settings.set(_entity("tenant=<default>"), {FETCH: 1000.0})
    now = [0.0]
    manager = QuotaManager(settings, clock=lambda: now[0])
    assert manager.throttle("alice", None, produced=50_000, tenant="acme") > 0
    # bob shares acme's rate: already over it; carol (another tenant) has no produce quota
    assert manager.throttle("bob", None, produced=1, tenant="acme") > 0
    assert manager.throttle("carol", None, produced=50_000, tenant="globex") == 0.0
    assert manager.throttle("carol", None, fetched=50_000, tenant="globex") > 0
    assert manager.throttle("dave", None, fetched=50_000, tenant=None) == 0.0  # untenanted
    assert str(_entity("tenant=<default>")) == "tenant=<default>"
