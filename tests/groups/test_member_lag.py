"""What describe_group says about each member of an ``odradek`` group.

Goal: a member's figures are true for a model that assigns nothing. With
``ordering="key"`` (and ``"none"``) no record is a member's before it is delivered, so a
member has no lag of its own (absent from the JSON) and what it holds is the records it
has in flight; with ``ordering="topic"`` the active member is served everything, so its
lag is the group's and a standby member's is 0; once the active member leaves, the next
one takes its lag over. Method: real engines in a temporary directory, real consumers
of the embedded client, figures compared with what the consumers polled and acked.
"""

from __future__ import annotations

from typing import Any

from odradek.groups.info import GroupInfo

TOPIC = "orders.eu.created"


def members(info: GroupInfo) -> dict[str, dict[str, Any]]:
    return {member["member"]: member for member in info.to_json()["members"]}


def test_key_ordered_members_hold_their_deliveries_and_no_lag(client: Any, append_keyed: Any) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"k%d" % i for i in range(12)])
    first = client.subscribe(TOPIC, group="billing", start="earliest")
    second = client.subscribe(TOPIC, group="billing", start="earliest")
    got_first = first.poll(5, timeout=0)
    got_second = second.poll(4, timeout=0)
    first.ack(got_first[:2])
    info = client.describe_group("billing")
    shown = members(info)
    assert shown[first.member_id]["in_flight"] == len(got_first) - 2
    assert shown[second.member_id]["in_flight"] == len(got_second)
    assert all("lag" not in member and "assignment" not in member for member in shown.values())
    assert all(member.lag is None for member in info.members)
    assert info.lag == 12 - 2  # the group's lag stays the group's
    first.close()
    second.close()


def test_the_active_member_of_a_topic_ordered_group_has_the_groups_lag(
    client: Any, append_keyed: Any
) -> None:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"k%d" % i for i in range(10)])
    active = client.subscribe(TOPIC, group="ledger", start="earliest", ordering="topic")
    standby = client.subscribe(TOPIC, group="ledger", start="earliest", ordering="topic")
    delivered = active.poll(4, timeout=0)
    active.ack(delivered)
    assert standby.poll(4, timeout=0) == []  # only the active member is served
    info = client.describe_group("ledger")
    shown = members(info)
    assert info.lag == 10 - len(delivered) > 0
    assert shown[active.member_id]["lag"] == info.lag
    assert shown[standby.member_id]["lag"] == 0
    assert (shown[active.member_id]["active"], shown[standby.member_id]["active"]) == (
        True,
        False,
    )
    active.close()
    after = client.describe_group("ledger")
    (left,) = after.members
    assert (left.member, left.active, left.lag) == (standby.member_id, True, after.lag)
    standby.close()
