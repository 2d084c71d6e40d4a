"""The checker of a chaos run: what must hold of a history (``chaos/history.py``) and the
topics read back in full after the run, and the report that says what did not.

Rules, per topic (each broken rule is an anomaly *kind*; see ANOMALIES):

* every acknowledged (``ok``) append is in the log exactly once, at the offset and
  version it was acknowledged with (``lost``, ``wrong_offset``, ``wrong_version``);
  no value is in the log twice (``duplicate``; ``duplicate_retry`` when the value is an
  idempotent producer's, sent again by its retries);
* offsets are dense: the topic's first offset (0, or where retention begins), then +1
  each, in the order read (``offset_gap``, ``offset_duplicate``, ``offset_order``);
* each key's versions are contiguous (1, 2, ... from the first offset 0) and grow
  in offset order (``version_gap``, ``version_repeat``, ``version_order``); keyed
  records have a version and keyless ones none (``version_invalid``);
* no two successful appends of different records expected the same version of a key
  (``expect_duplicate``); a successful append with ``expect=e`` got version e + 1
  (``expect_version``; not reported again for the appends of an ``expect_duplicate``);
* every record in the log was appended by somebody (``phantom``) and not by an append
  that certainly failed (``visible_failed``): what is visible and not ``ok`` is ``info``;
* a read (``key_version``) that succeeded saw at least every version acknowledged
  before it was sent (``read_stale``) and no version the log does not hold in the end
  (``read_unseen``).

Appends through the Kafka door (``door`` = ``kafka``, ``chaos/kafka_workload.py``)
follow the same rules, with what Kafka tells a producer and nothing more:

* a Kafka offset *is* the topic's log offset (the door's virtual partitions share the
  log's offsets, ``protocols/kafka/partitions.py``), and the offset a delivery report
  gives is the batch's base offset plus the record's place in it; so an acknowledged
  produce's offset is checked exactly against the log (``wrong_offset``). A delivery
  report without an offset (Kafka's answer to a retry the broker found duplicate; the
  door never gives it) leaves only presence to check;
* Kafka does not tell the key's version: an acknowledged produce's version is not
  checked (``wrong_version`` concerns native appends only), but the log's versions of
  every key are, whatever door wrote them;
* every produce is an idempotent producer's with a value of its own (the client's
  internal retries resend it, the worker never does): a value in the log twice is
  ``duplicate_retry``, a retry the door wrote again;
* a produce refused by the client before it was queued is ``fail`` (``visible_failed``
  if it shows); a delivery error is ``info`` (the client cannot tell whether a retry
  reached the broker before the error), as is a produce never reported.

Appends made inside a Kafka transaction (``transaction`` set) follow the same rules
(their outcome is the transaction's), and one more across topics: a transaction's
appends are in the logs all or none (``torn_transaction``; counted once per
transaction, against the topic of its first append).

The report gives operations and anomalies per door as well: a door's anomalies are
those found in the topics it appended to (a topic both doors wrote counts for both).

Everything is computed a column at a time (Arrow compute, NumPy): a history of a
million operations is checked in seconds. Only the examples (at most ``examples_max`` per
kind) are made into Python objects. An anomaly is counted once per record, value or
group it concerns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from odradek.chaos.history import Door, Kind, Outcome, check_table
from odradek.errors import InvalidRequest

# Examples kept per anomaly kind: enough to start debugging, a report stays readable.
EXAMPLES_MAX = 5
# Key codes and microsecond times share one int64 in the read check: times below 2^40 µs
# (12.7 days of a run), so key codes below 2^23 (8.4 million keys per topic).
_TIME_BITS = 40
_KEY_CODES_MAX = 1 << (63 - _TIME_BITS)

ANOMALIES: dict[str, str] = {
    "lost": "an acknowledged append is not in the log",
    "wrong_offset": "an acknowledged append is in the log at another offset than acknowledged",
    "wrong_version": "an acknowledged append is in the log with another version than acknowledged",
    "duplicate": "an append is in the log more than once",
    "duplicate_retry": "an idempotent append is in the log more than once (its retries were written)",
    "offset_gap": "an offset is missing",
    "offset_duplicate": "two records have the same offset",
    "offset_order": "offsets go back in the order read",
    "version_gap": "a key's versions skip one (or do not begin at 1)",
    "version_repeat": "two records of a key have the same version",
    "version_order": "a key's versions go back in offset order",
    "version_invalid": "a keyed record without a version, or a keyless one with one",
    "expect_duplicate": "two different appends succeeded expecting the same version of a key",
    "expect_version": "an append succeeded with expect=e but its key's version is not e + 1",
    "phantom": "a record in the log that nobody appended",
    "visible_failed": "a record in the log whose append certainly failed",
    "read_stale": "a read returned a version older than one acknowledged before it began",
    "read_unseen": "a read returned a version the log does not hold",
    "torn_transaction": "some of a transaction's records are in the logs, not all",
}

_RANK = {Outcome.FAIL.value: 0, Outcome.INFO.value: 1, Outcome.OK.value: 2}
_LOG_COLUMNS = ("offset", "key", "value", "version")


@dataclasses.dataclass
class Report:
    """What a check found: operations by kind and outcome, the topics as read back,
    anomalies by kind with a few examples each. ``to_json()`` is JSON-serializable;
    ``str(report)`` reads as text."""

    operations: dict[str, dict[str, int]]
    topics: dict[str, dict[str, int]]
    anomalies: dict[str, int]
    examples: dict[str, list[dict[str, Any]]]
    # door -> {"operations": {kind: {outcome: n}}, "topics": [...], "anomalies": {kind: n}}
    doors: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not any(self.anomalies.values())

    @property
    def anomaly_count(self) -> int:
        return sum(self.anomalies.values())

    def kinds(self) -> set[str]:
        """The anomaly kinds found."""
        return {kind for kind, count in self.anomalies.items() if count}

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "operations": self.operations,
            "topics": self.topics,
            "anomalies": {kind: count for kind, count in self.anomalies.items() if count},
            "examples": {kind: rows for kind, rows in self.examples.items() if rows},
            "doors": self.doors,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Report:
        return cls(
            operations={str(k): dict(v) for k, v in document.get("operations", {}).items()},
            topics={str(k): dict(v) for k, v in document.get("topics", {}).items()},
            anomalies={str(k): int(v) for k, v in document.get("anomalies", {}).items()},
            examples={str(k): list(v) for k, v in document.get("examples", {}).items()},
            doors={str(k): dict(v) for k, v in document.get("doors", {}).items()},
        )

    def to_text(self) -> str:
        lines = []
        for kind, outcomes in sorted(self.operations.items()):
            total = sum(outcomes.values())
            parts = ", ".join(f"{outcome} {outcomes.get(outcome, 0)}" for outcome in ("ok", "fail", "info"))
            lines.append(f"operations {kind}: {total} ({parts})")
        lines.extend(door_lines(self.doors))
        for topic, summary in sorted(self.topics.items()):
            lines.append(
                f"topic {topic}: {summary['records']} records, offsets {summary['first_offset']}"
                f"..{summary['next_offset'] - 1}, {summary['keys']} keys"
            )
        if self.valid:
            lines.append("anomalies: none")
        else:
            lines.append(f"anomalies: {self.anomaly_count}")
            for kind, count in sorted(self.anomalies.items()):
                if not count:
                    continue
                lines.append(f"  {kind} ({count}): {ANOMALIES.get(kind, kind)}")
                lines.extend(f"    {json.dumps(row, sort_keys=True)}" for row in self.examples.get(kind, []))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def door_lines(doors: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per door: its operations by kind and outcome, its topics' anomalies."""
    lines = []
    for door, summary in sorted(doors.items()):
        parts = []
        for kind, outcomes in sorted(summary.get("operations", {}).items()):
            counts = ", ".join(f"{outcome} {outcomes.get(outcome, 0)}" for outcome in ("ok", "fail", "info"))
            parts.append(f"{kind} {sum(outcomes.values())} ({counts})")
        anomalies = summary.get("anomalies", {})
        found = ", ".join(f"{kind} {count}" for kind, count in sorted(anomalies.items()))
        lines.append(
            f"door {door}: {'; '.join(parts) or 'no operations'}; "
            f"anomalies {sum(anomalies.values())}{f' ({found})' if found else ''}"
        )
    return lines


class _Findings:
    def __init__(self, examples_max: int) -> None:
        self.examples_max = examples_max
        self.counts: dict[str, int] = dict.fromkeys(ANOMALIES, 0)
        self.examples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ANOMALIES}
        self.topic = ""  # the topic being checked: what add() counts against
        self.by_topic: dict[str, dict[str, int]] = {}

    def add(self, kind: str, count: int, examples: list[dict[str, Any]]) -> None:
        if count <= 0:
            return
        self.counts[kind] += count
        per_topic = self.by_topic.setdefault(self.topic, {})
        per_topic[kind] = per_topic.get(kind, 0) + count
        room = self.examples_max - len(self.examples[kind])
        self.examples[kind].extend(_plain(row) for row in examples[: max(room, 0)])

    def room(self, kind: str) -> int:
        return max(self.examples_max - len(self.examples[kind]), 0)


def check(
    history: pa.Table,
    logs: Mapping[str, pa.Table],
    *,
    bounds: Mapping[str, tuple[int, int]] | None = None,
    examples_max: int = EXAMPLES_MAX,
) -> Report:
    """Check ``history`` (history.SCHEMA) against ``logs``: each topic's records as read
    back in full (columns ``offset``, ``key``, ``value``, ``version``; keys and values
    bytes or text). ``bounds`` gives a topic's ``(first_offset, next_offset)`` as the
    server describes it (default: first offset 0, next offset unchecked). Every topic of
    the history must have a log (an empty one for a topic that is gone).

    Raises InvalidRequest for a malformed history or log, or a history whose values are
    not unique per append (a harness error, not the system's)."""
    history = check_table(history)
    missing = sorted(set(history.column("topic").unique().to_pylist()) - set(logs))
    if missing:
        raise InvalidRequest(f"no log given for the topics {missing}")
    findings = _Findings(examples_max)
    topics: dict[str, dict[str, int]] = {}
    for topic in sorted(logs):
        operations = history.filter(pc.equal(history.column("topic"), topic))
        first, next_offset = (bounds or {}).get(topic, (0, -1))
        findings.topic = topic
        topics[topic] = _check_topic(
            topic, operations, _log_table(topic, logs[topic]), first, next_offset, findings
        )
    _check_transactions(history, logs, findings)
    return Report(
        operations=_operation_counts(history),
        topics=topics,
        anomalies=findings.counts,
        examples=findings.examples,
        doors=_doors(history, findings.by_topic),
    )


def _check_transactions(history: pa.Table, logs: Mapping[str, pa.Table], findings: _Findings) -> None:
    """Each transaction's appends are in the logs all or none."""
    appends = history.filter(
        pc.and_(
            pc.equal(history.column("kind"), Kind.APPEND.value),
            pc.is_valid(history.column("transaction")),
        )
    )
    if not appends.num_rows:
        return
    topics = sorted(set(appends.column("topic").to_pylist()))
    visible = pa.chunked_array(
        [logs[topic].column("value").cast(pa.binary()) for topic in topics if topic in logs],
        type=pa.binary(),
    )
    present = pc.is_in(appends.column("value").cast(pa.binary()), value_set=visible.combine_chunks())
    counted = (
        appends.append_column("present", pc.cast(present, pa.int64()))
        .group_by("transaction")
        .aggregate([("present", "sum"), ("present", "count"), ("id", "min")])
    )
    sums = counted.column("present_sum").to_numpy()
    torn = (sums > 0) & (sums < counted.column("present_count").to_numpy())
    if not torn.any():
        return
    examples = []
    for row in np.flatnonzero(torn)[: findings.room("torn_transaction")]:
        first = int(counted.column("id_min")[int(row)].as_py())
        operation = appends.filter(pc.equal(appends.column("id"), first))
        findings.topic = str(operation.column("topic")[0].as_py())
        examples.append(
            {
                "transaction": counted.column("transaction")[int(row)].as_py(),
                "records": int(counted.column("present_count")[int(row)].as_py()),
                "in_logs": int(sums[int(row)]),
                "first": _operation(operation, 0),
            }
        )
    findings.topic = str(appends.column("topic")[0].as_py()) if not examples else findings.topic
    findings.add("torn_transaction", int(torn.sum()), examples)


def _doors(history: pa.Table, by_topic: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
    """Per door: its operations, the topics it appended to and their anomalies."""
    doors: dict[str, dict[str, Any]] = {}
    for door in sorted(history.column("door").unique().to_pylist()):
        operations = history.filter(pc.equal(history.column("door"), door))
        appends = operations.filter(pc.equal(operations.column("kind"), Kind.APPEND.value))
        topics = sorted(appends.column("topic").unique().to_pylist())
        anomalies: dict[str, int] = {}
        for topic in topics:
            for kind, count in by_topic.get(topic, {}).items():
                anomalies[kind] = anomalies.get(kind, 0) + count
        doors[door] = {
            "operations": _operation_counts(operations),
            "topics": topics,
            "anomalies": anomalies,
        }
    return doors


def _operation_counts(history: pa.Table) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    grouped = history.group_by(["kind", "outcome"]).aggregate([("id", "count")])
    for kind, outcome, count in zip(
        grouped.column("kind").to_pylist(),
        grouped.column("outcome").to_pylist(),
        grouped.column("id_count").to_pylist(),
        strict=True,
    ):
        counts.setdefault(kind, {})[outcome] = count
    return counts


def _log_table(topic: str, log: pa.Table) -> pa.Table:
    missing = [name for name in _LOG_COLUMNS if name not in log.column_names]
    if missing:
        raise InvalidRequest(f"the log of {topic} lacks the columns {missing}")
    try:
        table = pa.table(
            {
                "offset": log.column("offset").cast(pa.int64()),
                "key": log.column("key").cast(pa.binary()),
                "value": log.column("value").cast(pa.binary()),
                "version": log.column("version").cast(pa.int64()),
            }
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequest(f"the log of {topic} has columns of the wrong types: {exc}") from None
    if table.column("offset").null_count or table.column("value").null_count:
        raise InvalidRequest(f"the log of {topic} has records without an offset or a value")
    return table.combine_chunks()


def _check_topic(
    topic: str, operations: pa.Table, log: pa.Table, first: int, next_offset: int, findings: _Findings
) -> dict[str, int]:
    log = _check_offsets(topic, log, first, next_offset, findings)
    appends = operations.filter(pc.equal(operations.column("kind"), Kind.APPEND.value))
    appends = appends.set_column(
        appends.schema.get_field_index("value"), "value", appends.column("value").cast(pa.binary())
    ).set_column(appends.schema.get_field_index("key"), "key", appends.column("key").cast(pa.binary()))
    values = _values(topic, appends)
    copies = _check_visible(topic, log, values, findings)
    _check_acknowledged(topic, appends, log, copies, findings)
    _check_versions(topic, log, first, findings)
    _check_expectations(topic, appends, findings)
    reads = operations.filter(
        pc.and_(
            pc.equal(operations.column("kind"), Kind.READ.value),
            pc.equal(operations.column("outcome"), Outcome.OK.value),
        )
    )
    if reads.num_rows:
        _check_reads(topic, reads, appends, log, findings)
    offsets = log.column("offset")
    return {
        "records": log.num_rows,
        "first_offset": int(pc.min(offsets).as_py()) if log.num_rows else first,
        "next_offset": int(pc.max(offsets).as_py()) + 1 if log.num_rows else first,
        "keys": int(pc.count_distinct(log.column("key"), mode="only_valid").as_py()),
    }


def _check_offsets(topic: str, log: pa.Table, first: int, next_offset: int, findings: _Findings) -> pa.Table:
    """Dense offsets from ``first`` (to ``next_offset`` when known), ascending as read;
    returns the log sorted by offset."""
    offsets = log.column("offset").to_numpy()
    if len(offsets) == 0:
        if next_offset > first:
            findings.add(
                "offset_gap", next_offset - first, [{"topic": topic, "missing": [first, next_offset - 1]}]
            )
        return log
    backwards = np.flatnonzero(np.diff(offsets) < 0)
    findings.add(
        "offset_order",
        len(backwards),
        [
            {"topic": topic, "offset": int(offsets[i]), "then": int(offsets[i + 1])}
            for i in backwards[: findings.room("offset_order")]
        ],
    )
    order = np.argsort(offsets, kind="stable")
    ordered = offsets[order]
    steps = np.diff(ordered)
    repeated = np.flatnonzero(steps == 0)
    findings.add(
        "offset_duplicate",
        len(repeated),
        [{"topic": topic, "offset": int(ordered[i])} for i in repeated[: findings.room("offset_duplicate")]],
    )
    gaps = np.flatnonzero(steps > 1)
    findings.add(
        "offset_gap",
        len(gaps),
        [
            {"topic": topic, "missing": [int(ordered[i]) + 1, int(ordered[i + 1]) - 1]}
            for i in gaps[: findings.room("offset_gap")]
        ],
    )
    if ordered[0] != first:
        findings.add("offset_gap", 1, [{"topic": topic, "first_offset": int(ordered[0]), "expected": first}])
    if next_offset >= 0 and ordered[-1] + 1 != next_offset:
        findings.add(
            "offset_gap", 1, [{"topic": topic, "next_offset": int(ordered[-1]) + 1, "expected": next_offset}]
        )
    return log.take(pa.array(order))


@dataclasses.dataclass
class _Values:
    """The topic's appended values, one row per distinct value: the best outcome of the
    appends that sent it (ok > info > fail) and whether an idempotent producer sent it."""

    value: pa.Array
    best: npt.NDArray[np.int64]
    idempotent: npt.NDArray[np.bool_]


def _values(topic: str, appends: pa.Table) -> _Values:
    rank = pc.if_else(
        pc.equal(appends.column("outcome"), Outcome.OK.value),
        _RANK[Outcome.OK.value],
        pc.if_else(pc.equal(appends.column("outcome"), Outcome.INFO.value), _RANK[Outcome.INFO.value], 0),
    )
    table = pa.table(
        {
            "value": appends.column("value"),
            "rank": rank,
            "idempotent": pc.is_valid(appends.column("producer")),
            "key": appends.column("key"),
            "producer": appends.column("producer"),
            "sequence": appends.column("sequence"),
        }
    )
    grouped = table.group_by("value").aggregate(
        [
            ("rank", "max"),
            ("idempotent", "min"),
            ("rank", "count"),
            ("key", "count_distinct", pc.CountOptions(mode="all")),
            ("producer", "count_distinct", pc.CountOptions(mode="all")),
            ("sequence", "count_distinct", pc.CountOptions(mode="all")),
        ]
    )
    sent = grouped.column("rank_count").to_numpy()
    idempotent = grouped.column("idempotent_min").to_numpy(zero_copy_only=False).astype(bool)
    same = np.ones(len(sent), dtype=bool)
    for name in ("key_count_distinct", "producer_count_distinct", "sequence_count_distinct"):
        same &= grouped.column(name).to_numpy() == 1
    bad = np.flatnonzero(((sent > 1) & ~idempotent) | ~same)
    if len(bad):
        value = grouped.column("value")[int(bad[0])].as_py()
        raise InvalidRequest(
            f"the history of {topic} sends the value {value!r} in different appends: values must be unique "
            "per append (only an idempotent append's retries send theirs again, with the same key, "
            "producer and sequence)"
        )
    return _Values(
        value=grouped.column("value").combine_chunks(),
        best=grouped.column("rank_max").to_numpy().astype(np.int64),
        idempotent=idempotent,
    )


def _check_visible(topic: str, log: pa.Table, values: _Values, findings: _Findings) -> npt.NDArray[np.int64]:
    """Every record was appended, not by a failed append, once. Returns each log row's
    number of copies of its value in the log."""
    n = log.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    logged = log.column("value")
    where = pc.index_in(logged, value_set=values.value)
    known = pc.is_valid(where).to_numpy(zero_copy_only=False)
    index = pc.fill_null(where, 0).to_numpy()
    offsets = log.column("offset").to_numpy()
    phantom = np.flatnonzero(~known)
    findings.add(
        "phantom", len(phantom), [_record(topic, log, int(i)) for i in phantom[: findings.room("phantom")]]
    )
    best = np.where(known, values.best[index] if len(values.best) else 0, -1)
    failed = np.flatnonzero(best == _RANK[Outcome.FAIL.value])
    findings.add(
        "visible_failed",
        len(failed),
        [_record(topic, log, int(i)) for i in failed[: findings.room("visible_failed")]],
    )
    distinct = pc.unique(logged)
    slot: npt.NDArray[np.int64] = pc.index_in(logged, value_set=distinct).to_numpy().astype(np.int64)
    per_value = np.bincount(slot, minlength=len(distinct))
    copies: npt.NDArray[np.int64] = per_value[slot].astype(np.int64)
    idempotent = np.where(known, values.idempotent[index] if len(values.idempotent) else False, False)
    for kind, mask in (("duplicate", known & ~idempotent), ("duplicate_retry", known & idempotent)):
        # One anomaly per duplicated value, named at its first copy.
        firsts = np.flatnonzero(mask & (copies > 1) & _first_occurrence(slot))
        examples = []
        for i in firsts[: findings.room(kind)]:
            example = _record(topic, log, int(i))
            example["offsets"] = offsets[slot == slot[i]].tolist()
            examples.append(example)
        findings.add(kind, len(firsts), examples)
    return copies


def _first_occurrence(slot: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    first = np.zeros(len(slot), dtype=bool)
    _, positions = np.unique(slot, return_index=True)
    first[positions] = True
    return first


def _check_acknowledged(
    topic: str, appends: pa.Table, log: pa.Table, copies: npt.NDArray[np.int64], findings: _Findings
) -> None:
    """Each ok append at its acknowledged offset and version (values in the log twice are
    reported as duplicates instead). A Kafka produce's version is unknown, and so is its
    offset if its delivery report gave none: those are not compared."""
    acked = appends.filter(pc.equal(appends.column("outcome"), Outcome.OK.value))
    if acked.num_rows == 0:
        return
    where = pc.index_in(acked.column("value"), value_set=log.column("value"))
    present = pc.is_valid(where).to_numpy(zero_copy_only=False)
    index = pc.fill_null(where, 0).to_numpy()
    lost = np.flatnonzero(~present)
    findings.add("lost", len(lost), [_operation(acked, int(i)) for i in lost[: findings.room("lost")]])
    if log.num_rows == 0:
        return
    single = present & (copies[index] == 1)
    offsets = log.column("offset").to_numpy()[index]
    acked_offsets = pc.fill_null(acked.column("offset"), -1).to_numpy()
    versions = pc.fill_null(log.column("version"), -1).to_numpy()[index]
    acked_versions = pc.fill_null(acked.column("version"), -1).to_numpy()
    kafka = pc.equal(acked.column("door"), Door.KAFKA.value).to_numpy(zero_copy_only=False)
    offset_known = ~(kafka & pc.is_null(acked.column("offset")).to_numpy(zero_copy_only=False))
    for kind, found, wanted, known in (
        ("wrong_offset", offsets, acked_offsets, offset_known),
        ("wrong_version", versions, acked_versions, ~kafka),
    ):
        wrong = np.flatnonzero(single & known & (found != wanted))
        examples = []
        for i in wrong[: findings.room(kind)]:
            example = _operation(acked, int(i))
            example["in_log"] = int(found[i])
            examples.append(example)
        findings.add(kind, len(wrong), examples)


def _check_versions(topic: str, log: pa.Table, first: int, findings: _Findings) -> None:
    """Per key, versions 1..k (from the first offset 0) growing in offset order; the log
    is sorted by offset."""
    keyed = pc.is_valid(log.column("key"))
    versioned = pc.is_valid(log.column("version"))
    invalid = np.flatnonzero(pc.not_equal(keyed, versioned).to_numpy(zero_copy_only=False))
    findings.add(
        "version_invalid",
        len(invalid),
        [_record(topic, log, int(i)) for i in invalid[: findings.room("version_invalid")]],
    )
    rows = np.flatnonzero(pc.and_(keyed, versioned).to_numpy(zero_copy_only=False))
    if len(rows) == 0:
        return
    codes = pc.dictionary_encode(log.column("key").take(pa.array(rows))).combine_chunks().indices.to_numpy()
    versions = log.column("version").to_numpy(zero_copy_only=False)[rows].astype(np.int64)
    # Contiguity: sorted by (key, version), each step +1, each key from 1.
    by_version = np.lexsort((versions, codes))
    key_sorted, version_sorted = codes[by_version], versions[by_version]
    same_key = key_sorted[1:] == key_sorted[:-1]
    step = version_sorted[1:] - version_sorted[:-1]
    starts = np.concatenate(([True], ~same_key))
    repeat = np.flatnonzero(same_key & (step == 0))
    gap = np.flatnonzero(same_key & (step > 1))
    bad_start = np.flatnonzero(starts & (version_sorted < 1 if first > 0 else version_sorted != 1))
    findings.add(
        "version_repeat",
        len(repeat),
        [
            _key_example(topic, log, rows, by_version, codes, int(i))
            for i in repeat[: findings.room("version_repeat")]
        ],
    )
    gaps = np.concatenate((gap + 1, bad_start)) if len(gap) or len(bad_start) else np.zeros(0, dtype=np.int64)
    findings.add(
        "version_gap",
        len(gaps),
        [
            _key_example(topic, log, rows, by_version, codes, int(i))
            for i in gaps[: findings.room("version_gap")]
        ],
    )
    # Order: within each key in offset order (a stable sort keeps it), versions grow.
    by_offset = np.argsort(codes, kind="stable")
    key_sorted, version_sorted = codes[by_offset], versions[by_offset]
    back = np.flatnonzero((key_sorted[1:] == key_sorted[:-1]) & (version_sorted[1:] < version_sorted[:-1]))
    findings.add(
        "version_order",
        len(back),
        [
            _key_example(topic, log, rows, by_offset, codes, int(i) + 1)
            for i in back[: findings.room("version_order")]
        ],
    )


def _check_expectations(topic: str, appends: pa.Table, findings: _Findings) -> None:
    """No two different ok appends expected the same version of a key; an ok append with
    ``expect=e`` was given version e + 1."""
    acked = appends.filter(
        pc.and_(pc.equal(appends.column("outcome"), Outcome.OK.value), pc.is_valid(appends.column("expect")))
    )
    if acked.num_rows == 0:
        return
    table = pa.table(
        {"key": acked.column("key"), "expect": acked.column("expect"), "value": acked.column("value")}
    )
    groups = table.group_by(["key", "expect"]).aggregate([("value", "count_distinct"), ("value", "distinct")])
    doubled = np.flatnonzero(groups.column("value_count_distinct").to_numpy() > 1)
    examples = [
        {
            "topic": topic,
            "key": _text(groups.column("key")[int(i)].as_py()),
            "expect": groups.column("expect")[int(i)].as_py(),
            "values": [_text(value) for value in groups.column("value_distinct")[int(i)].as_py()],
        }
        for i in doubled[: findings.room("expect_duplicate")]
    ]
    findings.add("expect_duplicate", len(doubled), examples)
    # The appends of a doubled group are reported there, not again here.
    keys = pa.chunked_array([acked.column("key"), groups.column("key")]).combine_chunks()
    codes = pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    expects = np.concatenate((acked.column("expect").to_numpy(), groups.column("expect").to_numpy())).astype(
        np.int64
    )
    composite = codes * (1 << 32) + expects
    in_doubled = np.isin(composite[: acked.num_rows], composite[acked.num_rows :][doubled])
    versions = pc.fill_null(acked.column("version"), -1).to_numpy()
    wrong = np.flatnonzero(~in_doubled & (versions != acked.column("expect").to_numpy() + 1))
    findings.add(
        "expect_version",
        len(wrong),
        [_operation(acked, int(i)) for i in wrong[: findings.room("expect_version")]],
    )


def _check_reads(topic: str, reads: pa.Table, appends: pa.Table, log: pa.Table, findings: _Findings) -> None:
    """A read saw every version acknowledged before it was sent, and nothing the log
    does not hold."""
    acked = appends.filter(
        pc.and_(
            pc.equal(appends.column("outcome"), Outcome.OK.value),
            pc.and_(pc.is_valid(appends.column("key")), pc.is_valid(appends.column("version"))),
        )
    )
    keyed_log = log.filter(pc.and_(pc.is_valid(log.column("key")), pc.is_valid(log.column("version"))))
    read_keys = reads.column("key").cast(pa.binary())
    keys = pa.chunked_array([read_keys, acked.column("key"), keyed_log.column("key")], type=pa.binary())
    codes = (
        pc.dictionary_encode(keys.combine_chunks()).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    )
    if len(codes) and codes.max() >= _KEY_CODES_MAX:
        raise InvalidRequest(f"{topic} has over {_KEY_CODES_MAX} keys: too many for the read check")
    n_reads, n_acked = reads.num_rows, acked.num_rows
    read_codes = codes[:n_reads]
    acked_codes = codes[n_reads : n_reads + n_acked]
    log_codes = codes[n_reads + n_acked :]
    read_versions = pc.fill_null(reads.column("version"), 0).to_numpy()
    # Unseen: above the key's last version in the log.
    last = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=np.int64)
    np.maximum.at(last, log_codes, keyed_log.column("version").to_numpy())
    unseen = np.flatnonzero(read_versions > last[read_codes])
    examples = []
    for i in unseen[: findings.room("read_unseen")]:
        example = _operation(reads, int(i))
        example["last_in_log"] = int(last[read_codes[i]])
        examples.append(example)
    findings.add("read_unseen", len(unseen), examples)
    if n_acked == 0:
        return
    # Stale: below the highest version acknowledged (completed) before the read began.
    # Acknowledgements sorted by (key, completion time); a running maximum of
    # (key << 40 | version) is, within each key, the highest version so far.
    completed = _microseconds(acked.column("completed").to_numpy(zero_copy_only=False))
    order = np.lexsort((completed, acked_codes))
    stamps = (acked_codes[order] << _TIME_BITS) | completed[order]
    highest = np.maximum.accumulate(
        (acked_codes[order] << _TIME_BITS) | acked.column("version").to_numpy()[order]
    )
    invoked = _microseconds(reads.column("invoked").to_numpy())
    before = np.searchsorted(stamps, (read_codes << _TIME_BITS) | invoked, side="left") - 1
    valid = before >= 0
    position = np.where(valid, before, 0)
    same_key = valid & (acked_codes[order][position] == read_codes)
    floor = np.where(same_key, highest[position] & ((1 << _TIME_BITS) - 1), 0)
    stale = np.flatnonzero(read_versions < floor)
    examples = []
    for i in stale[: findings.room("read_stale")]:
        example = _operation(reads, int(i))
        example["acknowledged_before"] = int(floor[i])
        examples.append(example)
    findings.add("read_stale", len(stale), examples)


def _microseconds(seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    times = np.nan_to_num(seconds, nan=float(1 << _TIME_BITS) / 1e6)
    return np.clip(np.floor(times * 1e6), 0, (1 << _TIME_BITS) - 1).astype(np.int64)


# -- examples ---------------------------------------------------------------------------


def _record(topic: str, log: pa.Table, row: int) -> dict[str, Any]:
    return {
        "topic": topic,
        "offset": log.column("offset")[row].as_py(),
        "key": _text(log.column("key")[row].as_py()),
        "value": _text(log.column("value")[row].as_py()),
        "version": log.column("version")[row].as_py(),
    }


def _key_example(
    topic: str, log: pa.Table, rows: npt.NDArray[np.int64], order: npt.NDArray[np.int64], codes: Any, at: int
) -> dict[str, Any]:
    """The record at ``at`` in ``order`` and its key's versions in offset order."""
    row = int(rows[order[at]])
    example = _record(topic, log, row)
    same = rows[codes == codes[order[at]]]
    example["versions_in_offset_order"] = log.column("version").take(pa.array(same[:20])).to_pylist()
    return example


def _operation(table: pa.Table, row: int) -> dict[str, Any]:
    names = (
        "id",
        "worker",
        "topic",
        "key",
        "value",
        "expect",
        "producer",
        "sequence",
        "outcome",
        "offset",
        "version",
        "door",
    )
    return {name: _text(table.column(name)[row].as_py()) for name in names}


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe: NumPy scalars to Python, bytes to text."""
    plain: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        plain[name] = _text(value)
    return plain
