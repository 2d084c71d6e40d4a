"""The chaos test, short, over a cluster whose topics are spread over three cells.

Goal: with ``--cells 3`` (decision 0032) each cell keeps the promises of the one cell
under the faults cluster mode is built for: a 3-member etcd, moto's S3 server behind
the fault proxy and 3 agents (``odradek serve --etcd --cells 3``, a Kafka door per
cell: decision 0033), four workers appending through ``odradek.connect`` to topics in
every cell (keyed appends, ``expect=`` races, idempotent retries; a client per topic),
one producing through the Kafka doors (an idempotent librdkafka producer) and one
running Kafka transactions that write a topic in each cell (decision 0037), two
members of a consumer group subscribing to the keyed topics of every cell by pattern
(decision 0038: each subscribing again after a failure), a reader fetching the keyed
topics through agents drawn at random (decision 0042: an agent not serving a topic's
cell answers from the sealed segments in the store; the topics' segments are small so
that they roll), and one
fault of each main kind in turn: the agent serving a cell drawn at random killed (kill
-9, restarted on an empty data directory), paused past its lease (SIGSTOP, then
SIGCONT: a zombie) and stopped (SIGTERM: a handover); the etcd leader killed; the store
refusing requests (503s). After each the faulted cell's topics take appends again and
the cluster becomes whole (every cell served by one agent every agent names, the cells
spread evenly again); at the end the whole history, checked against every topic read
back, has no anomaly (a transaction's records are all there or none; the group got
every keyed record, none that is not the log's, none again after its ack; every record
the reader fetched is the log's at its offset). Method:
``odradek.chaos.cluster.run`` with ``cells=3``, a fixed seed and schedule, a 2 s
lease; every wait is a condition with a generous deadline (the recovery times are
reported, not judged). ``scripts/chaos.py --cells 3`` runs the long version.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from short_runs import run_clean, skip_without_cluster_mode

from odradek.chaos.cluster import ChaosSettings
from odradek.chaos.faults import OWNER_FAULTS, FaultKind
from odradek.chaos.group_workload import GroupSettings
from odradek.chaos.kafka_workload import KafkaSettings
from odradek.chaos.store_reads import StoreReadSettings
from odradek.chaos.workload import WorkloadSettings

CELLS = ("_cell", "_cell.1", "_cell.2")
SCHEDULE = (
    FaultKind.KILL_OWNER,
    FaultKind.PAUSE_OWNER,
    FaultKind.KILL_ETCD_LEADER,
    FaultKind.STORE_ERRORS,
    FaultKind.STOP_OWNER,
)


@pytest.mark.timeout(600)
def test_five_faults_over_three_cells_lose_nothing_acknowledged(tmp_path: Path) -> None:
    skip_without_cluster_mode()
    settings = ChaosSettings(
        cycles=len(SCHEDULE),
        seed=32,
        lease_ttl_seconds=2.0,
        workload=WorkloadSettings(workers=4, keys=200, hot_keys=2),
        kafka=KafkaSettings(workers=1, keys=200, partitions=2, transactional=1),
        schedule=SCHEDULE,
        steady_seconds=(0.3, 0.8),
        cells=len(CELLS),
        empty_restart_probability=1.0,
        group=GroupSettings(members=2),
        store_reads=StoreReadSettings(readers=1),
        segment_bytes="64KiB",  # segments roll: other agents read the sealed ones from the store
    )
    report, text = run_clean(settings, tmp_path / "chaos")
    assert report["cells"] == len(CELLS) and set(report["doors"]) == {"native", "kafka"}, text
    kafka = report["doors"]["kafka"]
    assert kafka["operations"]["append"].get("ok", 0) > 0 and kafka["anomalies"] == {}, text
    # Every cell holds workload topics that took acknowledged records, and a probe topic.
    placements = report["harness"]["placements"]
    records = {topic: summary["records"] for topic, summary in report["topics"].items()}
    # (The Kafka workers' topic is created through a Kafka door after the harness
    # recorded where the workload's topics are.)
    transactional = report["harness"]["transaction_topics"]
    assert set(placements) == set(records) - {"chaos.kafka"} - set(transactional), text
    # The transactions wrote a topic in each cell, and committed some.
    assert sorted(transactional.values()) == sorted(CELLS), transactional
    (figures,) = report["harness"]["kafka_transactional_workers"].values()
    assert figures["committed"] > 0 and all(records[topic] for topic in transactional), (figures, records)
    worked = Counter(cell for topic, cell in placements.items() if records[topic] and "probe" not in topic)
    probed = Counter(cell for topic, cell in placements.items() if records[topic] and "probe" in topic)
    assert set(worked) == set(CELLS) and set(probed) == set(CELLS), placements
    # The consumer group (by pattern, a member in every cell) got every keyed record.
    group = report["harness"]["group"]
    assert group["records"] > 0 and group["delivered"] == group["records"], group
    assert all(member["subscriptions"] >= 1 for member in group["members"].values()), group
    # Each owner fault hit the agent serving the cell it was drawn for.
    for cycle in report["cycles_detail"]:
        if FaultKind(cycle["fault"]) in OWNER_FAULTS:
            assert cycle["details"]["cell"] in CELLS and cycle["target"] in ("a1", "a2", "a3"), cycle
        else:
            assert "cell" not in cycle["details"], cycle
    # A reader fetched and read by pattern the keyed topics through agents drawn at
    # random (decision 0042): every record it got is the log's at its offset, and each
    # read's records of a topic follow each other (no misread nor torn read).
    reads = report["harness"]["store_reads"]
    assert reads["records_checked"] > 0 and report["anomalies"].get("misread", 0) == 0, reads
    assert report["anomalies"].get("torn_read", 0) == 0, reads
    assert sum(reader["wildcard_reads"] for reader in reads["readers"].values()) > 0, reads
    killed = report["cycles_detail"][0]
    assert killed["fault"] == "kill_owner" and killed["details"]["empty"] is True
