"""The chaos checker finds every kind of anomaly, and none in a correct run.

Goal: a history and logs that a correct single owner produces pass without any anomaly,
whatever the interleaving and the outcomes clients saw; each kind of fault, injected
into such a run, is reported as exactly its kind (not missed, not blamed on another).
Method: ``simulation.py`` applies hypothesis-drawn client operations as one owner would
(dense offsets, per-key versions, expectations, idempotent retries; operations
overlapping in time; answers lost at random) and ends with a fixed suffix of operations
that the injections aim at; the history goes through the History API; each injection
changes the history or a log the way a broken cluster would, and the report is
compared with the one kind expected. The same holds of a topic written through the
Kafka door, where the history knows what a Kafka client knows (an offset, sometimes
none, never a version): a Kafka record duplicated, lost, visible though the client
refused it or never produced is reported as its kind, and nothing is reported for what
Kafka does not tell. Unit tests cover the rest (bounds, reads, bad input, the report's
forms, operations and anomalies per door).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from simulation import KAFKA_TOPIC, Simulation, simulate, steps

from odradek.chaos.checker import ANOMALIES, Report, check
from odradek.chaos.history import SCHEMA, Door, History
from odradek.errors import InvalidRequest

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(simulation: Simulation, **options: Any) -> Report:
    return check(simulation.history(), simulation.log_tables(), **options)


# -- a correct run ---------------------------------------------------------------------


@PROPERTY
@given(steps)
def test_a_correct_single_owner_run_has_no_anomaly(drawn: list[tuple[Any, ...]]) -> None:
    simulation = simulate(drawn)
    report = _check(simulation)
    assert report.valid, report.to_text()
    assert sum(sum(outcomes.values()) for outcomes in report.operations.values()) == len(simulation.rows)
    assert report.topics["a"]["records"] == len(simulation.logs["a"])
    assert report.topics[KAFKA_TOPIC]["records"] == len(simulation.logs[KAFKA_TOPIC])


def test_a_correct_run_checked_with_its_bounds_has_no_anomaly() -> None:
    simulation = simulate([])
    records = len(simulation.logs["a"])
    report = _check(simulation, bounds={"a": (0, records), "b": (0, 0)})
    assert report.valid, report.to_text()


# -- each injected fault is reported as its kind ---------------------------------------


def _drop_acknowledged(simulation: Simulation) -> None:
    simulation.logs["a"].remove(simulation.record("fin", 1))  # the last record


def _duplicate(simulation: Simulation) -> None:
    record = simulation.record("fin", 1)
    simulation.append_record("a", record["key"], record["value"])


def _reorder_versions(simulation: Simulation) -> None:
    first, second = simulation.record("tail", 0), simulation.record("tail", 1)
    first["version"], second["version"] = second["version"], first["version"]


def _gap_in_offsets(simulation: Simulation) -> None:
    simulation.logs["a"].remove(simulation.record("tail", 1))


def _double_expect_success(simulation: Simulation) -> None:
    simulation.rows[simulation.marks["fin"][1]]["expect"] = 0  # both succeeded expecting 0


def _visible_failed(simulation: Simulation) -> None:
    simulation.rows[simulation.marks["tail"][0]].update(outcome="fail", error="conflict: injected")


def _phantom(simulation: Simulation) -> None:
    simulation.append_record("a", "nobody", "never-appended")


def _duplicated_retry(simulation: Simulation) -> None:
    record = simulation.record("idem")
    simulation.append_record("a", record["key"], record["value"])


INJECTIONS: dict[str, Callable[[Simulation], None]] = {
    "lost": _drop_acknowledged,
    "duplicate": _duplicate,
    "version_order": _reorder_versions,
    "offset_gap": _gap_in_offsets,
    "expect_duplicate": _double_expect_success,
    "visible_failed": _visible_failed,
    "phantom": _phantom,
    "duplicate_retry": _duplicated_retry,
}


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
@PROPERTY
@given(drawn=steps)
def test_an_injected_fault_is_reported_as_exactly_its_kind(kind: str, drawn: list[tuple[Any, ...]]) -> None:
    simulation = simulate(drawn)
    INJECTIONS[kind](simulation)
    report = _check(simulation)
    assert report.kinds() == {kind}, report.to_text()
    assert report.anomalies[kind] == 1
    assert report.examples[kind], "an anomaly comes with an example"


# -- the Kafka door: each injected fault is reported as its kind ----------------------


def _kafka_duplicated(simulation: Simulation) -> None:
    """The client's internal retry of an acknowledged produce written again."""
    record = simulation.record("kafka", 1)
    simulation.append_record(KAFKA_TOPIC, record["key"], record["value"])


def _kafka_lost(simulation: Simulation) -> None:
    simulation.logs[KAFKA_TOPIC].remove(simulation.record("kafka", 1))  # the last record


def _kafka_refused_but_visible(simulation: Simulation) -> None:
    """A produce the client refused before queueing it (so never sent) shows in the log."""
    refused = simulation.rows[simulation.marks["kafka_refused"][0]]
    simulation.append_record(KAFKA_TOPIC, refused["key"], refused["value"])


def _kafka_never_produced(simulation: Simulation) -> None:
    simulation.append_record(KAFKA_TOPIC, "kafka", "k9-never-produced")


def _kafka_acknowledged_elsewhere(simulation: Simulation) -> None:
    """The delivery report named another offset than the record's in the log."""
    simulation.rows[simulation.marks["kafka"][0]]["offset"] += 1


KAFKA_INJECTIONS: dict[str, tuple[str, Callable[[Simulation], None]]] = {
    "duplicated": ("duplicate_retry", _kafka_duplicated),
    "lost": ("lost", _kafka_lost),
    "refused_but_visible": ("visible_failed", _kafka_refused_but_visible),
    "never_produced": ("phantom", _kafka_never_produced),
    "acknowledged_elsewhere": ("wrong_offset", _kafka_acknowledged_elsewhere),
}


@pytest.mark.parametrize("injection", sorted(KAFKA_INJECTIONS))
@PROPERTY
@given(drawn=steps)
def test_an_injected_kafka_fault_is_reported_as_exactly_its_kind(
    injection: str, drawn: list[tuple[Any, ...]]
) -> None:
    kind, inject = KAFKA_INJECTIONS[injection]
    simulation = simulate(drawn)
    inject(simulation)
    report = _check(simulation)
    assert report.kinds() == {kind}, report.to_text()
    assert report.anomalies[kind] == 1
    assert report.examples[kind] and report.examples[kind][0]["topic"] == KAFKA_TOPIC
    assert report.doors["kafka"]["anomalies"] == {kind: 1}
    assert report.doors["native"]["anomalies"] == {}


def test_what_kafka_does_not_tell_is_not_checked_and_the_rest_is() -> None:
    """A Kafka acknowledgement carries no version (none is compared, not even a wrong
    one), and one without an offset is checked for presence only; the log's versions of
    a Kafka-written key are checked all the same."""
    simulation = simulate([])
    last = simulation.rows[simulation.marks["kafka"][1]]
    assert last["version"] is None and last["door"] == "kafka"
    last["offset"] = None
    report = _check(simulation)
    assert report.valid, report.to_text()
    first, second = simulation.record("kafka", 0), simulation.record("kafka", 1)
    first["version"], second["version"] = second["version"], first["version"]
    assert _check(simulation).kinds() == {"version_order"}


def test_a_visible_kafka_produce_whose_report_was_an_error_is_no_anomaly() -> None:
    simulation = simulate([])
    info = simulation.rows[simulation.marks["kafka_info"][0]]
    assert info["outcome"] == "info" and simulation.record("kafka_info")["value"] == info["value"]
    assert _check(simulation).valid


def _transactions(outcomes: list[str], logs: dict[str, list[bytes]]) -> Report:
    """Two transactions of two records in two topics each (``x0``, ``x1``), with these
    outcomes, checked against logs holding these values."""
    history = History()
    for number, outcome in enumerate(outcomes):
        for topic in ("tx.0", "tx.1"):
            operation = history.invoke_append(
                "t0", topic, "k", f"x{number}-{topic}", door=Door.KAFKA, transaction=f"x{number}"
            )
            getattr(history, outcome)(operation, **({} if outcome == "ok" else {"error": "e"}))
    tables = {
        topic: pa.table(
            {
                "offset": pa.array(range(len(values)), pa.int64()),
                "key": pa.array([b"k"] * len(values)),
                "value": pa.array(values, pa.binary()),
                "version": pa.array(range(1, len(values) + 1), pa.int64()),
            }
        )
        for topic, values in logs.items()
    }
    return check(history.table(), tables)


def test_a_transaction_is_in_the_logs_all_or_none() -> None:
    whole = {"tx.0": [b"x0-tx.0", b"x1-tx.0"], "tx.1": [b"x0-tx.1", b"x1-tx.1"]}
    assert _transactions(["ok", "info"], whole).valid
    none_of_the_unknown = {"tx.0": [b"x0-tx.0"], "tx.1": [b"x0-tx.1"]}
    assert _transactions(["ok", "info"], none_of_the_unknown).valid
    torn = {"tx.0": [b"x0-tx.0", b"x1-tx.0"], "tx.1": [b"x0-tx.1"]}  # x1 in one topic only
    report = _transactions(["ok", "info"], torn)
    assert report.kinds() == {"torn_transaction"} and report.anomalies["torn_transaction"] == 1
    example = report.examples["torn_transaction"][0]
    assert (example["transaction"], example["records"], example["in_logs"]) == ("x1", 2, 1)
    # An acknowledged transaction missing a record is lost and torn; an aborted one that
    # shows is visible_failed (and torn if it shows in part).
    assert _transactions(["ok", "fail"], {"tx.0": [b"x0-tx.0"], "tx.1": []}).kinds() == {
        "lost",
        "torn_transaction",
    }
    assert _transactions(["fail", "fail"], {"tx.0": [b"x0-tx.0"], "tx.1": [b"x0-tx.1"]}).kinds() == {
        "visible_failed"
    }


def test_operations_and_anomalies_per_door() -> None:
    simulation = simulate([])
    _kafka_lost(simulation)
    _drop_acknowledged(simulation)
    report = _check(simulation)
    kafka, native = report.doors["kafka"], report.doors["native"]
    assert kafka["topics"] == [KAFKA_TOPIC] and native["topics"] == ["a"]
    assert kafka["operations"] == {"append": {"ok": 2, "fail": 1, "info": 1}}
    assert set(native["operations"]) == {"append"}
    assert kafka["anomalies"] == {"lost": 1} and native["anomalies"] == {"lost": 1}
    assert report.anomalies["lost"] == 2
    text = report.to_text()
    assert "door kafka: append 4 (ok 2, fail 1, info 1); anomalies 1 (lost 1)" in text
    assert Report.from_json(json.loads(json.dumps(report.to_json()))).doors == report.doors


# -- the other kinds, one by one -------------------------------------------------------


def test_an_acknowledged_append_at_another_offset() -> None:
    simulation = simulate([])
    simulation.rows[simulation.marks["fin"][1]]["offset"] += 1
    report = _check(simulation)
    assert report.kinds() == {"wrong_offset"}
    assert report.examples["wrong_offset"][0]["in_log"] == simulation.record("fin", 1)["offset"]


def test_an_acknowledged_append_with_another_version() -> None:
    simulation = simulate([])
    simulation.rows[simulation.marks["idem"][1]]["version"] = 7
    assert _check(simulation).kinds() == {"wrong_version"}


def test_offsets_that_go_back_in_the_order_read() -> None:
    simulation = simulate([])
    log = simulation.logs["a"]
    log[0], log[1] = log[1], log[0]
    assert _check(simulation).kinds() == {"offset_order"}


def test_two_records_at_one_offset() -> None:
    simulation = simulate([])
    ghost = simulation.rows[simulation.marks["ghost"][0]]  # in flight: it may be visible
    last = simulation.logs["a"][-1]
    simulation.logs["a"].append(
        {"offset": last["offset"], "key": "ghost", "value": ghost["value"], "version": 1}
    )
    assert _check(simulation).kinds() == {"offset_duplicate"}


def test_a_visible_in_flight_append_is_no_anomaly() -> None:
    simulation = simulate([])
    ghost = simulation.rows[simulation.marks["ghost"][0]]
    simulation.append_record("a", "ghost", ghost["value"])
    assert _check(simulation).valid


def test_a_log_that_starts_or_ends_away_from_the_bounds() -> None:
    simulation = simulate([])
    records = len(simulation.logs["a"])
    report = _check(simulation, bounds={"a": (0, records + 2)})
    assert report.kinds() == {"offset_gap"}
    assert report.examples["offset_gap"][0] == {"topic": "a", "next_offset": records, "expected": records + 2}
    simulation.logs["a"].pop(0)  # the first record ("tail" 1): retention took it
    simulation.rows[simulation.marks["tail"][0]]["outcome"] = "info"
    report = _check(simulation, bounds={"a": (1, records)})
    assert report.valid, report.to_text()  # versions may begin above 1 past retention
    assert _check(simulation, bounds={"a": (0, records)}).kinds() == {"offset_gap", "version_gap"}


@pytest.mark.parametrize(
    ("versions", "kind"),
    [
        ((1, 1), "version_repeat"),
        ((1, 3), "version_gap"),
        ((2, 3), "version_gap"),
        ((1, None), "version_invalid"),
    ],
)
def test_broken_versions_of_a_key(versions: tuple[int, int | None], kind: str) -> None:
    simulation = simulate([])
    simulation.record("tail", 0)["version"], simulation.record("tail", 1)["version"] = versions
    assert _check(simulation).kinds() == {kind}


def test_a_keyless_record_with_a_version() -> None:
    simulation = simulate([])
    simulation.append_record("a", None, simulation.rows[simulation.marks["ghost"][0]]["value"])["version"] = 4
    assert _check(simulation).kinds() == {"version_invalid"}


def test_an_expectation_acknowledged_but_not_honoured() -> None:
    simulation = simulate([])
    simulation.rows[simulation.marks["fin"][0]]["expect"] = 3  # got version 1
    assert _check(simulation).kinds() == {"expect_version"}


def _read(simulation: Simulation, key: str, version: int, at: float) -> None:
    simulation.rows.append(
        {
            "worker": "r",
            "kind": "read",
            "topic": "a",
            "key": key,
            "value": None,
            "expect": None,
            "producer": None,
            "sequence": None,
            "invoked": at,
            "completed": at + 1,
            "outcome": "ok",
            "offset": None,
            "version": version,
            "error": None,
            "door": "native",
        }
    )


def test_reads_stale_or_of_versions_the_log_lost() -> None:
    simulation = simulate([])
    after = simulation.rows[simulation.marks["fin"][1]]["completed"] + 1
    _read(simulation, "fin", 2, after)
    _read(simulation, "fin", 1, simulation.rows[simulation.marks["fin"][1]]["invoked"])  # concurrent: fine
    assert _check(simulation).valid
    _read(simulation, "fin", 1, after)
    _read(simulation, "tail", 3, after)
    report = _check(simulation)
    assert report.anomalies["read_stale"] == 1 and report.anomalies["read_unseen"] == 1
    assert report.kinds() == {"read_stale", "read_unseen"}
    assert report.examples["read_stale"][0]["acknowledged_before"] == 2
    assert report.examples["read_unseen"][0]["last_in_log"] == 2


# -- scale, bad input, the report ------------------------------------------------------


def test_a_large_history_is_checked_as_columns() -> None:
    """200,000 appends over 1,000 keys, all ok, and their log: valid; then a duplicate."""
    count, keys = 200_000, 1_000
    rng = np.random.default_rng(7)
    key_codes = rng.integers(0, keys, count)
    order = np.argsort(key_codes, kind="stable")
    versions = np.empty(count, dtype=np.int64)
    starts = np.searchsorted(key_codes[order], np.arange(keys))
    versions[order] = np.arange(count) - starts[key_codes[order]] + 1
    key_text = pa.array([f"k{code}" for code in key_codes.tolist()])
    value_text = pa.array([f"v{index}" for index in range(count)])
    times = np.arange(count, dtype=np.float64)
    history = pa.Table.from_arrays(
        [
            pa.array(np.arange(count)),
            pa.array(["w"] * count),
            pa.array(["append"] * count),
            pa.array(["t"] * count),
            key_text,
            value_text,
            pa.nulls(count, pa.int64()),
            pa.nulls(count, pa.string()),
            pa.nulls(count, pa.int64()),
            pa.array(times),
            pa.array(times + 0.5),
            pa.array(["ok"] * count),
            pa.array(np.arange(count)),
            pa.array(versions),
            pa.nulls(count, pa.string()),
            pa.repeat(pa.scalar("native"), count),
            pa.nulls(count, pa.string()),
        ],
        schema=SCHEMA,
    )
    log = pa.table({"offset": np.arange(count), "key": key_text, "value": value_text, "version": versions})
    assert check(history, {"t": log}).valid
    doubled = pa.concat_tables(
        [
            log,
            pa.table(
                {
                    "offset": [count],
                    "key": ["k0"],
                    "value": ["v0"],
                    "version": [int(versions[key_codes == 0].max()) + 1],
                }
            ),
        ]
    )
    assert check(history, {"t": doubled}).kinds() == {"duplicate"}


def test_a_value_sent_by_two_different_appends_is_refused() -> None:
    simulation = simulate([])
    first, second = (simulation.rows[index] for index in simulation.marks["fin"])
    second["value"] = first["value"]
    with pytest.raises(InvalidRequest, match="unique per append"):
        _check(simulation)


def test_every_topic_of_the_history_needs_a_log() -> None:
    simulation = simulate([])
    logs = simulation.log_tables()
    del logs["a"]
    with pytest.raises(InvalidRequest, match=r"no log given for the topics \['a'\]"):
        check(simulation.history(), logs)


def test_a_log_without_its_columns_is_refused() -> None:
    simulation = simulate([])
    logs = simulation.log_tables()
    logs["a"] = logs["a"].drop_columns(["version"])
    with pytest.raises(InvalidRequest, match="lacks the columns"):
        check(simulation.history(), logs)


def test_examples_are_capped_and_the_report_is_json_and_text() -> None:
    simulation = simulate([])
    for index in range(10):
        simulation.append_record("b", None, f"phantom-{index}")
    report = _check(simulation, examples_max=3)
    assert report.anomalies["phantom"] == 10 and len(report.examples["phantom"]) == 3
    document = json.loads(json.dumps(report.to_json()))
    assert document["valid"] is False and document["anomalies"] == {"phantom": 10}
    assert Report.from_json(document).anomalies["phantom"] == 10
    text = report.to_text()
    assert "phantom (10): " + ANOMALIES["phantom"] in text and "phantom-0" in text
