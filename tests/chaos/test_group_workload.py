"""The chaos run's consumer-group checks (odradek/chaos/group_workload.py).

Goal: the checker finds each kind of anomaly it names, and only those: a record of
the log no member got (``undelivered``), a delivery that is not the log's record
(``phantom_delivery``), a delivery from a poll that started after an ack settling it
returned (``redelivered_after_ack``); a redelivery of a record whose ack was rejected,
or one returned by a poll that started before the ack, is at-least-once delivery and
no anomaly. Method: a ledger fed by hand.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from odradek.chaos.group_workload import GroupLedger, check_group, group_pattern, group_topics, wanted_records


@dataclasses.dataclass(frozen=True)
class Got:
    topic: str
    offset: int
    value: bytes
    attempt: int = 1


LOG = {("t", 0): b"a", ("t", 1): b"b", ("u", 0): b"c"}


def _delivered(ledger: GroupLedger, *got: Got) -> int:
    started = ledger.now()
    ledger.delivered("g0", list(got), started)
    return started


def test_a_history_delivering_everything_once_has_no_anomaly() -> None:
    ledger = GroupLedger()
    got = [Got("t", 0, b"a"), Got("t", 1, b"b"), Got("u", 0, b"c")]
    _delivered(ledger, *got)
    ledger.acked("g0", got, rejected=set())
    anomalies, examples, figures = check_group(ledger, LOG)
    assert anomalies == {} and examples == {}
    assert figures == {"records": 3, "delivered": 3, "deliveries": 3, "redeliveries": 0, "acknowledged": 3}


def test_each_anomaly_is_found() -> None:
    ledger = GroupLedger()
    first = [Got("t", 0, b"a"), Got("u", 0, b"not c")]
    _delivered(ledger, *first)
    ledger.acked("g0", first, rejected=set())
    _delivered(ledger, Got("t", 0, b"a", attempt=2))  # after its ack returned
    anomalies, examples, _ = check_group(ledger, LOG)
    assert anomalies == {"undelivered": 1, "phantom_delivery": 1, "redelivered_after_ack": 1}
    assert examples["undelivered"] == [{"topic": "t", "offset": 1}]
    assert examples["phantom_delivery"][0]["topic"] == "u"
    assert examples["redelivered_after_ack"][0]["offset"] == 0


def test_redeliveries_that_at_least_once_allows_are_not_anomalies() -> None:
    ledger = GroupLedger()
    got = [Got("t", 0, b"a"), Got("t", 1, b"b"), Got("u", 0, b"c")]
    _delivered(ledger, *got)
    ledger.acked("g0", got[:2], rejected={("t", 1)})  # stale: its lease ran out
    _delivered(ledger, Got("t", 1, b"b", attempt=2))
    # A poll that started before an ack returned may still hand out what it settles.
    early = ledger.now()
    ledger.acked("g0", [Got("u", 0, b"c")], rejected=set())
    ledger.delivered("g1", [Got("u", 0, b"c", attempt=2)], early)
    anomalies, _, figures = check_group(ledger, LOG)
    assert anomalies == {} and figures["deliveries"] == 5 and figures["redeliveries"] == 2


def test_the_pattern_and_the_records_wanted() -> None:
    assert group_pattern(1) == "chaos.keys" and group_topics(1) == ["chaos.keys"]
    assert group_pattern(3) == "chaos.keys.*" and group_topics(3) == [f"chaos.keys.{n}" for n in range(3)]
    table = pa.table({"offset": [0, 1], "value": [b"a", b"b"]})
    assert wanted_records({"t": table}, ["t", "missing"]) == {("t", 0): b"a", ("t", 1): b"b"}
