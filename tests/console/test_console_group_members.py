"""Lag per member of a Kafka consumer group, as the console, the HTTP API and the CLI
give it.

Goal: for a group of two confluent-kafka members sharing a four-partition topic of a
real `odradek serve`, with records read and committed and then more produced, the
group's document (``GET /v1/groups/{group}``, what the console's groups page reads)
gives each member the partitions it holds (as its client says) and a lag that is the
lag of those partitions (high watermark minus committed offset, as its client tells
them through ListOffsets and OffsetFetch); the members' lags add up to the group's;
``odradek group describe`` prints the same in JSON and in its members table; the
OpenAPI document describes the member fields. Both group protocols: classic (the
members' assignment decoded from their SyncGroup bytes) and KIP-848's consumer
protocol (the partitions the coordinator gave each member). Method: one server per
module (conftest), confluent-kafka 2.x clients, the CLI as its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from console_server import Served
from kafka_members import DEADLINE_SECONDS, TwoMembers, two_members


def _wait_for_members(served: Served, group: TwoMembers) -> dict[str, Any]:
    """The group's document once the node sees both members with the partitions their
    clients hold (the last SyncGroup or heartbeat may still be on its way)."""
    wanted = {member.client_id: member.partitions for member in group.members}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        document: dict[str, Any] = served.ok("GET", f"/v1/groups/{group.group}")
        held = {
            member.get("client_id"): [
                p for topic in member.get("assignment", []) for p in topic["partitions"]
            ]
            for member in document["members"]
        }
        if held == wanted:
            return document
        assert time.monotonic() < deadline, (held, wanted)
        time.sleep(0.2)


def _cli(served: Served, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "odradek.cli.main", *args, "--server", served.url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_each_members_lag_is_the_lag_of_its_partitions(served: Served, protocol: str) -> None:
    with two_members(served.kafka, f"members.{protocol}", f"members-{protocol}", protocol) as group:
        document = _wait_for_members(served, group)
        (topic,) = document["topics"]
        assert {p["partition"]: p["lag"] for p in topic["partitions"]} == group.partition_lag
        by_client = {member["client_id"]: member for member in document["members"]}
        for member in group.members:
            shown = by_client[member.client_id]
            assert shown["assignment"] == [
                {"topic": group.topic, "partitions": member.partitions, "lag": member.lag, "uncommitted": []}
            ]
            assert shown["lag"] == member.lag > 0
        assert sum(member["lag"] for member in document["members"]) == topic["lag"] == group.lag

        described = json.loads(_cli(served, "group", "describe", group.group, "--format", "json"))
        assert {m["client_id"]: m["lag"] for m in described["members"]} == {
            m.client_id: m.lag for m in group.members
        }
        text = _cli(served, "group", "describe", group.group, "--format", "text").splitlines()
        header = next(line for line in text if line.startswith("MEMBER"))
        assert header.split() == ["MEMBER", "CLIENT", "PARTITIONS", "LAG", "IN-FLIGHT", "IDLE", "ACTIVE"]
        for member in group.members:
            (row,) = [line for line in text if f" {member.client_id} " in line]
            cells = row.split()
            partitions = f"{group.topic}:" + ",".join(str(p) for p in member.partitions)
            assert partitions in cells, row
            assert cells[cells.index(partitions) + 1] == f"{member.lag:,}", row


def test_the_openapi_document_describes_a_members_lag(served: Served) -> None:
    schemas = served.ok("GET", "/openapi.json")["components"]["schemas"]
    members = schemas["GroupInfo"]["properties"]["members"]
    assert members["items"] == {"$ref": "#/components/schemas/GroupMember"}
    fields = schemas["GroupMember"]["properties"]
    assert {"member", "client_id", "client_host", "lag", "assignment", "in_flight"} <= set(fields)
    assigned = fields["assignment"]["items"]["properties"]
    assert set(assigned) == {"topic", "partitions", "lag", "uncommitted"}
