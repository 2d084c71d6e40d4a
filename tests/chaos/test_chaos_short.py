"""The chaos test, short: a real cluster through five faults loses nothing acknowledged.

Goal: cluster mode keeps its promises under the faults it is built for: a 3-member etcd,
moto's S3 server behind the fault proxy and 3 agents (``odradek serve --etcd``), four
workers appending through ``odradek.connect`` (keyed appends, ``expect=`` races,
idempotent retries) and one producing through the Kafka door (an idempotent librdkafka
producer bootstrapped with every agent, keyed records over 2 virtual partitions), a
member of a consumer group reading the keyed topic (subscribing again after each
failure: it must get every record), and one fault of each main kind in turn: the owner killed (kill
-9), the owner paused past its lease (SIGSTOP, then SIGCONT: a zombie), the etcd leader
killed, the store refusing requests (503s), the owner stopped (a handover). After each
the cluster serves again and becomes whole; at the end the whole history, checked
against every topic read back, has no anomaly, through either door: every acknowledged
Kafka record is in the log once, at the offset its delivery report gave. Method: ``odradek.chaos.cluster.run``
with a fixed seed and schedule, a 2 s lease so that the run fits in about a minute;
every wait is a condition with a generous deadline (nothing asserts a duration: the
failover times are reported, not judged). ``scripts/chaos.py`` runs the long version.

Skipped only when ``odradek serve`` has no ``--etcd`` (a build without cluster mode);
a missing etcd binary fails, as the other cluster tests do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from short_runs import run_clean, skip_without_cluster_mode

from odradek.chaos.cluster import ChaosSettings
from odradek.chaos.faults import FaultKind
from odradek.chaos.group_workload import GroupSettings
from odradek.chaos.kafka_workload import KafkaSettings
from odradek.chaos.workload import WorkloadSettings

SCHEDULE = (
    FaultKind.KILL_OWNER,
    FaultKind.PAUSE_OWNER,
    FaultKind.KILL_ETCD_LEADER,
    FaultKind.STORE_ERRORS,
    FaultKind.STOP_OWNER,
)


@pytest.mark.timeout(600)
def test_five_faults_lose_nothing_acknowledged(tmp_path: Path) -> None:
    skip_without_cluster_mode()
    settings = ChaosSettings(
        cycles=len(SCHEDULE),
        seed=14,
        lease_ttl_seconds=2.0,
        workload=WorkloadSettings(workers=4, keys=200, hot_keys=2),
        kafka=KafkaSettings(workers=1, keys=200, partitions=2),
        schedule=SCHEDULE,
        steady_seconds=(0.3, 0.8),
        group=GroupSettings(members=1),
    )
    report, text = run_clean(settings, tmp_path / "chaos")
    group = report["harness"]["group"]  # a consumer of chaos.keys through every fault
    assert group["records"] > 0 and group["delivered"] == group["records"], group
    kafka, native = report["doors"]["kafka"], report["doors"]["native"]
    assert kafka["operations"]["append"].get("ok", 0) > 0 and kafka["anomalies"] == {}, text
    assert native["operations"]["append"].get("ok", 0) > 0 and native["anomalies"] == {}, text
    assert kafka["topics"] == ["chaos.kafka"] and "chaos.kafka" in report["topics"]
    assert report["harness"]["kafka_workers"]["k0"]["producers"] >= 1
