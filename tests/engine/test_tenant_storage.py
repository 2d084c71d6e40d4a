"""The engine's bound on a tenant's stored bytes (engine/tenant_storage.py).

Goal: with a storage quota for tenant acme, the engine refuses an append to acme's
topics once they store the quota or more (QuotaExceeded naming the tenant, its usage and
its quota; nothing written), counts every append's frame as it is written (the usage is
the segments' size, never an estimate), leaves other tenants and the default namespace
alone, lets a committed append through unchecked (bounded=False) but counts it, and
sees space freed by deleted records, a deleted topic and retention at the next append.
Method: an embedded Engine on a temporary directory; sizes read from describe_topic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek.engine.engine import Engine
from odradek.errors import QuotaExceeded

QUOTA = 200_000
SEGMENT = 64 * 1024


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    opened = Engine(tmp_path / "data", fsync=False)
    opened.tenant_storage.quota = lambda tenant: float(QUOTA) if tenant == "acme" else None
    yield opened
    opened.close()


def _fill(engine: Engine, topic: str) -> QuotaExceeded:
    for _ in range(20):
        before = engine.describe_topic(topic)
        try:
            engine.append(topic, [{"value": b"a" * 30_000}])
        except QuotaExceeded as refused:
            after = engine.describe_topic(topic)
            assert (after.next_offset, after.bytes) == (before.next_offset, before.bytes)
            return refused
    raise AssertionError("no refusal")


def test_appends_stop_at_the_quota_and_the_usage_is_the_segments_size(engine: Engine) -> None:
    engine.create_topic("_t.acme.orders", segment_bytes=SEGMENT)
    engine.create_topic("_t.acme.payments")
    engine.append("_t.acme.payments", [{"value": b"p" * 1000}])
    refused = _fill(engine, "_t.acme.orders")
    stored = engine.describe_topic("_t.acme.orders").bytes + engine.describe_topic("_t.acme.payments").bytes
    assert (refused.tenant, refused.used, refused.quota) == ("acme", stored, QUOTA)
    assert stored >= QUOTA and engine.tenant_storage.usage("acme") == stored
    assert "tenant acme stores" in refused.message and str(QUOTA) in refused.message
    with pytest.raises(QuotaExceeded):  # every topic of the tenant
        engine.append("_t.acme.payments", [{"value": b"p"}])
    # other tenants and the default namespace are not bounded
    for topic in ("_t.globex.orders", "orders"):
        engine.create_topic(topic)
        engine.append_many(topic, [[{"value": b"g" * 30_000}]] * 10)
    # a decided append (a committed Kafka transaction's) is written, and counted
    pending = engine.submit_append("_t.acme.payments", [{"value": b"c" * 500}], bounded=False)
    pending.wait()
    now = engine.describe_topic("_t.acme.orders").bytes + engine.describe_topic("_t.acme.payments").bytes
    assert now > stored and engine.tenant_storage.usage("acme") == now


def test_deleting_records_or_the_topic_brings_the_tenant_back_under(engine: Engine) -> None:
    engine.create_topic("_t.acme.orders", segment_bytes=SEGMENT)
    _fill(engine, "_t.acme.orders")
    end = engine.describe_topic("_t.acme.orders").next_offset
    engine.delete_records("_t.acme.orders", end - 1)  # whole segments below it go
    assert engine.describe_topic("_t.acme.orders").bytes < QUOTA
    engine.append("_t.acme.orders", [{"value": b"again"}])
    _fill(engine, "_t.acme.orders")
    engine.delete_topic("_t.acme.orders")
    engine.create_topic("_t.acme.orders")
    engine.append("_t.acme.orders", [{"value": b"fresh"}])
    assert engine.tenant_storage.usage("acme") == engine.describe_topic("_t.acme.orders").bytes


def test_retention_frees_space_for_the_next_append(engine: Engine) -> None:
    engine.create_topic("_t.acme.orders", segment_bytes=SEGMENT, retention_bytes=SEGMENT)
    _fill(engine, "_t.acme.orders")
    assert engine.enforce_retention() > 0
    engine.append("_t.acme.orders", [{"value": b"after retention"}])
    assert engine.tenant_storage.usage("acme") == engine.describe_topic("_t.acme.orders").bytes


def test_a_producer_retry_writes_nothing_and_counts_nothing(engine: Engine) -> None:
    engine.create_topic("_t.acme.orders")
    engine.append("_t.acme.orders", [{"value": b"x" * 1000}], producer=("p", 0))
    stored = engine.describe_topic("_t.acme.orders").bytes
    assert engine.tenant_storage.usage("acme") == stored
    retried = engine.append("_t.acme.orders", [{"value": b"x" * 1000}], producer=("p", 0))
    assert retried.duplicate
    assert engine.describe_topic("_t.acme.orders").bytes == stored
    assert engine.tenant_storage.usage("acme") == stored  # within the refresh: counted, not summed
