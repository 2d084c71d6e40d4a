"""The chaos harness's settings and report.

Goal: impossible settings are refused before anything starts; the report counts faults
by kind, summarizes failover times over the owner faults only, carries the checker's
anomalies and is valid only when there are none, no cycle failed and no worker was
stuck; its text says all of that, operations, anomalies and acknowledgement times per
door and what the Kafka workers' clients went through included; the runner script
refuses unknown faults and impossible Kafka settings; a repair after a failed cycle
undoes every fault and restarts exactly the agents that are lost.
Method: cycles and checker results made by hand; the script's ``main`` called
in-process; a cluster of fakes for the repair.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from simulation import Clock

from odradek.chaos.checker import Report
from odradek.chaos.cluster import (
    ChaosCluster,
    ChaosSettings,
    Cycle,
    _acknowledged_after,
    _report,
    report_text,
)
from odradek.chaos.faults import Fault, FaultKind
from odradek.chaos.history import Door, History
from odradek.chaos.kafka_workload import KafkaSettings
from odradek.errors import InvalidRequest

SCRIPT = Path(__file__).parents[2] / "scripts" / "chaos.py"


def _cycle(number: int, kind: FaultKind, serving: float | None, error: str | None = None) -> Cycle:
    fault = Fault(kind, "a1", 0.0, 0.0, kind is FaultKind.KILL_OWNER)
    return Cycle(number, fault, serving, None if serving is None else serving + 1, error)


def _checked(anomalies: dict[str, int] | None = None) -> dict[str, Any]:
    report = Report({"append": {"ok": 10, "fail": 2, "info": 1}}, {}, anomalies or {}, {})
    document = report.to_json()
    if anomalies:
        document["examples"] = {kind: [{"topic": "t", "value": "w0-1"}] for kind in anomalies}
    return document


def test_the_report_summarizes_faults_failovers_and_anomalies() -> None:
    cycles = [
        _cycle(1, FaultKind.KILL_OWNER, 4.0),
        _cycle(2, FaultKind.STORE_ERRORS, 0.1),
        _cycle(3, FaultKind.PAUSE_OWNER, 6.0),
        _cycle(4, FaultKind.KILL_OWNER, 5.0),
    ]
    harness = {"workers_stuck": 0, "worker_errors": []}
    report = _report(ChaosSettings(cycles=4), cycles, _checked(), harness, 42.0)
    assert json.loads(json.dumps(report)) == report
    assert report["faults"] == {"kill_owner": 2, "store_errors": 1, "pause_owner": 1}
    assert report["failover_seconds"]["count"] == 3 and report["failover_seconds"]["max"] == 6.0
    assert report["failover_seconds"]["p50"] == 5.0
    assert report["serving_again_seconds"]["store_errors"]["count"] == 1
    assert report["valid"] and report["anomaly_count"] == 0
    text = report_text(report)
    assert "anomalies: 0" in text and "result: PASS" in text and "n=3 p50 5.00 s" in text


def test_the_report_gives_operations_and_anomalies_per_door() -> None:
    checked = _checked({"lost": 1})
    checked["doors"] = {
        "kafka": {
            "operations": {"append": {"ok": 90, "info": 3}},
            "topics": ["chaos.kafka"],
            "anomalies": {"lost": 1},
        },
        "native": {
            "operations": {"append": {"ok": 10, "fail": 2, "info": 1}, "read": {"ok": 4}},
            "topics": ["chaos.keys"],
            "anomalies": {},
        },
    }
    kafka_workers = {
        "k0": {
            "producers": 2,
            "fatal_errors": ["kafka _FATAL: x"],
            "client_errors": 40,
            "acks_without_offset": 0,
        }
    }
    harness = {
        "workers_stuck": 0,
        "worker_errors": [],
        "kafka_workers": kafka_workers,
        "acknowledged_after_seconds": {"kafka": {"count": 90, "p50": 0.05, "p99": 6.2, "max": 7.5}},
    }
    report = _report(ChaosSettings(cycles=1), [_cycle(1, FaultKind.KILL_OWNER, 3.0)], checked, harness, 9.0)
    assert json.loads(json.dumps(report)) == report and report["doors"] == checked["doors"]
    text = report_text(report)
    assert "door kafka: append 93 (ok 90, fail 0, info 3); anomalies 1 (lost 1)" in text
    assert (
        "door native: append 13 (ok 10, fail 2, info 1); read 4 (ok 4, fail 0, info 0); anomalies 0" in text
    )
    assert "kafka worker k0: 2 producers, 1 fatal errors, 40 client errors, 0 acks without an offset" in text
    assert "kafka appends acknowledged after p50 0.050 s, p99 6.200 s, max 7.500 s" in text
    assert "result: FAIL" in text


def test_acknowledgement_times_are_summarized_per_door() -> None:
    clock = Clock()
    history = History(clock)
    for number in range(100):
        clock.now = float(number)
        native = history.invoke_append("w0", "t", "k", f"w0-{number}")
        kafka = history.invoke_append(
            "k0", "t.k", "k", f"k0-{number}", producer="p", sequence=number, door=Door.KAFKA
        )
        clock.now = number + 0.5
        history.ok(native, offset=number, version=number + 1)
        clock.now = number + (9.0 if number == 99 else 1.0)
        history.ok(kafka, offset=number)
    history.invoke_append("w0", "t", "k", "w0-lost")  # pending: not acknowledged
    times = _acknowledged_after(history.table())
    assert times["native"] == {"count": 100, "p50": 0.5, "p99": 0.5, "max": 0.5}
    assert times["kafka"]["count"] == 100 and times["kafka"]["p50"] == 1.0 and times["kafka"]["max"] == 9.0


@pytest.mark.parametrize(
    ("anomalies", "cycle_error", "stuck"),
    [({"lost": 2}, None, 0), ({}, "no append succeeded within 120 s of the fault", 0), ({}, None, 1)],
)
def test_a_report_is_invalid_with_an_anomaly_a_failed_cycle_or_a_stuck_worker(
    anomalies: dict[str, int], cycle_error: str | None, stuck: int
) -> None:
    cycles = [_cycle(1, FaultKind.KILL_OWNER, None if cycle_error else 3.0, cycle_error)]
    report = _report(
        ChaosSettings(cycles=1),
        cycles,
        _checked(anomalies),
        {"workers_stuck": stuck, "worker_errors": []},
        1.0,
    )
    assert not report["valid"]
    text = report_text(report)
    assert "result: FAIL" in text
    if anomalies:
        assert "ANOMALIES: 2" in text and "lost: 2" in text and "w0-1" in text
    if cycle_error:
        assert f"CYCLE ERROR: cycle 1 kill_owner: {cycle_error}" in text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"agents": 1}, "at least 2 agents"),
        ({"cycles": -1}, "cycles >= 0"),
        ({"etcd_members": 1, "kinds": (FaultKind.KILL_ETCD_LEADER,)}, "at least 3 members"),
        ({"cells": 0}, "1..64 cells"),
        ({"cells": 65}, "1..64 cells"),
    ],
)
def test_impossible_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ChaosSettings(**settings)


def test_several_cells_give_the_workload_a_lane_per_cell() -> None:
    assert ChaosSettings().workload.lanes == 1
    assert ChaosSettings(cells=3).workload.lanes == 3
    assert ChaosSettings(cells=3).kafka.workers == 1  # each cell has a Kafka door


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_refuses_unknown_faults_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script()
    assert script.main(["--faults", "kill_owner,flood", "--workdir", str(tmp_path / "never")]) == 2
    assert "'flood' is not a valid FaultKind" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    arguments = script.parse(["--cycles", "7", "--agents", "3", "--etcd-members", "3", "--seed", "5"])
    assert (arguments.cycles, arguments.agents, arguments.etcd_members, arguments.seed) == (7, 3, 3, 5)
    assert (arguments.kafka_workers, arguments.kafka_partitions, arguments.kafka_rate) == (1, 2, 200.0)
    arguments = script.parse(["--kafka-workers", "0", "--kafka-partitions", "4", "--kafka-rate", "50"])
    assert (arguments.kafka_workers, arguments.kafka_partitions, arguments.kafka_rate) == (0, 4, 50.0)


def test_the_script_runs_several_cells_with_kafka_workers(tmp_path: Path) -> None:
    script = _script()
    assert script.parse([]).cells == 1
    arguments = script.parse(["--cells", "3"])
    assert (arguments.cells, arguments.kafka_workers) == (3, 1)


def test_the_script_refuses_impossible_kafka_settings_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script()
    assert script.main(["--kafka-partitions", "0", "--workdir", str(tmp_path / "never")]) == 2
    assert "1 to 1024 partitions" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


class FakeAgent:
    def __init__(self, status: dict[str, Any] | None, paused: bool = False) -> None:
        self.answer = status
        self.paused = paused
        self.calls: list[str] = []

    def status(self) -> dict[str, Any] | None:
        return None if self.paused else self.answer

    def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False

    def kill(self) -> None:
        self.calls.append("kill")

    def start(self) -> None:
        self.calls.append("start")


class FakeMember:
    def __init__(self, name: str, alive: bool) -> None:
        self.name = name
        self.running = alive

    def alive(self) -> bool:
        return self.running

    def start(self) -> None:
        self.running = True


class FakeEtcd:
    def __init__(self, members: list[FakeMember]) -> None:
        self.members = members

    def healthy(self) -> bool:
        return all(member.alive() for member in self.members)


class FakeProxy:
    def __init__(self) -> None:
        self.cleared = False

    def clear(self) -> None:
        self.cleared = True


def test_a_repair_undoes_every_fault_and_restarts_what_the_owner_lost(tmp_path: Path) -> None:
    """After a failed cycle: the store cleared, a dead etcd member started, a paused agent
    resumed, and the agent the owner does not know (up, but not registered) restarted."""
    known = [{"agent": "a1"}, {"agent": "a3"}]
    cluster = ChaosCluster(tmp_path, ChaosSettings())
    agents = {
        "a1": FakeAgent({"role": "owner", "owner": "a1", "agents": known}),
        "a2": FakeAgent({"role": "standby", "owner": "a1", "agents": known}),
        "a3": FakeAgent({"role": "standby", "owner": "a1", "agents": known}, paused=True),
    }
    cluster.agents = agents  # type: ignore[assignment]
    etcd = FakeEtcd([FakeMember("m0", True), FakeMember("m1", False)])
    proxy = FakeProxy()
    cluster._etcd = etcd  # type: ignore[assignment]
    cluster._store = type("Store", (), {"proxy": proxy})()  # type: ignore[assignment]
    assert cluster.repair() == ["m1", "a2"]
    assert proxy.cleared and etcd.healthy()
    assert agents["a2"].calls == ["kill", "start"]
    assert agents["a3"].calls == ["resume"] and agents["a1"].calls == []


def _cells_status(agent: str, serving: dict[str, str], named: dict[str, str] | None = None) -> dict[str, Any]:
    """``agent``'s cluster_status in a cluster of the cells of ``serving`` (cell -> the
    agent serving it), naming ``named``'s owners instead where given."""
    owners = serving | (named or {})
    return {
        "role": "owner" if serving["_cell"] == agent else "standby",
        "owner": owners["_cell"],
        "agents": [{"agent": name} for name in ("a1", "a2", "a3")],
        "cells": [
            {"cell": cell, "owner": owner, "serving": serving[cell] == agent}
            for cell, owner in owners.items()
        ],
    }


@pytest.mark.parametrize(
    ("serving", "named", "whole"),
    [
        ({"_cell": "a1", "_cell.1": "a2", "_cell.2": "a3"}, None, True),
        ({"_cell": "a1", "_cell.1": "a2", "_cell.2": "a2"}, None, False),  # 2 against 0: not yet
        ({"_cell": "a1", "_cell.1": "a1", "_cell.2": "a1"}, None, False),  # 3 against 0
        ({"_cell": "a1", "_cell.1": "a2", "_cell.2": "a3"}, {"_cell.2": "a2"}, False),  # a3 named wrong
    ],
)
def test_a_cluster_of_cells_is_whole_when_each_is_served_once_named_alike_and_spread(
    tmp_path: Path, serving: dict[str, str], named: dict[str, str] | None, whole: bool
) -> None:
    cluster = ChaosCluster(tmp_path, ChaosSettings(cells=3, kafka=KafkaSettings(workers=0)))
    agents = {
        agent: FakeAgent(_cells_status(agent, serving, named if agent == "a1" else None))
        for agent in ("a1", "a2", "a3")
    }
    cluster.agents = agents  # type: ignore[assignment]
    cluster._etcd = FakeEtcd([FakeMember("m0", True)])  # type: ignore[assignment]
    assert cluster.whole() is whole
    assert [cluster.owner(cell) for cell in cluster.cells] == [serving[cell] for cell in cluster.cells]
    assert cluster.owner() == serving["_cell"]
