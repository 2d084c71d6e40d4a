"""Consumer groups over the HTTP API: join, poll, ack, nack, leave, describe with lag.

Goal: an HTTP member is a member of a native group like any other: records of one key
come one at a time in order, an ack settles them (the group's lag falls to 0), a nack
redelivers with the next attempt, a member silent for its ack_timeout (its lease) is
dropped and then answered 404 unknown_member, a left member's deliveries go back to the
group. Method: the real listener in-process; records produced over HTTP; the group's
clock is the node's, and a lease's expiry is waited for on the group's own answer.
"""

from __future__ import annotations

import time
from typing import Any

from http_api_client import Api


def _setup(api: Api, records: list[dict[str, Any]]) -> str:
    api.ok("POST", "/v1/topics", {"name": "orders"})
    api.ok("POST", "/v1/topics/orders/records", {"records": records})
    joined = api.ok("POST", "/v1/groups/billing/members", {"pattern": "orders", "start": "earliest"})
    assert joined["group"] == "billing" and joined["options"]["start"] == "earliest"
    return str(joined["member"])


def _refs(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"topic": d["topic"], "offset": d["offset"], "lease": d["lease"]} for d in deliveries]


def test_poll_then_ack_settles_and_the_lag_falls(api: Api) -> None:
    member = _setup(
        api, [{"key": "a", "value": "a1"}, {"key": "a", "value": "a2"}, {"key": "b", "value": "b1"}]
    )
    base = f"/v1/groups/billing/members/{member}"
    polled = api.ok("POST", f"{base}/poll", {"max_records": 10, "timeout": 5})
    # One record of a key at a time: a2 waits for a1's ack.
    assert sorted(d["value"] for d in polled["deliveries"]) == ["a1", "b1"]
    assert all(d["attempt"] == 1 and d["topic"] == "orders" for d in polled["deliveries"])
    assert api.ok("GET", "/v1/groups/billing")["topics"][0]["lag"] == 3
    settled = api.ok("POST", f"{base}/ack", {"deliveries": _refs(polled["deliveries"])})
    assert settled == {"settled": 2, "rejected": []}
    again = api.ok("POST", f"{base}/poll", {"timeout": 5})
    assert [d["value"] for d in again["deliveries"]] == ["a2"]
    api.ok("POST", f"{base}/ack", {"deliveries": _refs(again["deliveries"])})
    described = api.ok("GET", "/v1/groups/billing")
    assert described["kind"] == "odradek" and described["topics"][0]["lag"] == 0
    assert [entry["group"] for entry in api.ok("GET", "/v1/groups")["groups"]] == ["billing"]
    # An ack of what is settled already is rejected with why, not an error.
    stale = api.ok("POST", f"{base}/ack", {"deliveries": _refs(again["deliveries"])})
    assert stale["settled"] == 0 and stale["rejected"][0]["status"] == "done"


def test_a_nack_redelivers_with_the_next_attempt(api: Api) -> None:
    member = _setup(api, [{"key": "a", "value": "a1"}])
    base = f"/v1/groups/billing/members/{member}"
    first = api.ok("POST", f"{base}/poll", {"timeout": 5})["deliveries"]
    assert api.ok("POST", f"{base}/nack", {"deliveries": _refs(first), "delay": 0})["settled"] == 1
    second = api.ok("POST", f"{base}/poll", {"timeout": 5})["deliveries"]
    assert [(d["value"], d["attempt"]) for d in second] == [("a1", 2)]


def test_leaving_gives_deliveries_back_and_the_group_can_be_deleted(api: Api) -> None:
    member = _setup(api, [{"key": "a", "value": "a1"}])
    api.ok("POST", f"/v1/groups/billing/members/{member}/poll", {"timeout": 5})
    status, _, error = api.call("DELETE", "/v1/groups/billing")
    assert status == 400 and error["code"] == "invalid_request"  # it has a member
    assert api.ok("DELETE", f"/v1/groups/billing/members/{member}") == {"left": member}
    other = api.ok("POST", "/v1/groups/billing/members", {"pattern": "orders"})["member"]
    redelivered = api.ok("POST", f"/v1/groups/billing/members/{other}/poll", {"timeout": 5})["deliveries"]
    assert [(d["value"], d["attempt"]) for d in redelivered] == [("a1", 1)]  # a clean leave: uncounted
    api.ok("DELETE", f"/v1/groups/billing/members/{other}")
    assert api.ok("DELETE", "/v1/groups/billing") == {"deleted": "billing"}


def test_a_silent_member_loses_its_lease(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "orders"})
    member = api.ok("POST", "/v1/groups/g/members", {"pattern": "orders", "ack_timeout": 0.2})["member"]
    deadline = time.monotonic() + 60
    while True:  # the group drops it once it was silent for its ack_timeout
        # a describe is no call of the member's, so it does not renew the lease
        if not api.ok("GET", "/v1/groups/g")["members"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    status, _, error = api.call("POST", f"/v1/groups/g/members/{member}/poll", {"timeout": 0})
    assert status == 404 and error["code"] == "unknown_member"
    assert error["details"]["member"] == member


def test_bad_group_requests_are_refused(api: Api) -> None:
    member = _setup(api, [{"value": "v"}])
    base = f"/v1/groups/billing/members/{member}"
    for path, body in [
        (f"{base}/poll", {"timeout": 31}),
        (f"{base}/poll", {"max_records": 0}),
        (f"{base}/ack", {"deliveries": [{"topic": "orders"}]}),
        (f"{base}/ack", {}),
        ("/v1/groups/billing/members", {"pattern": "orders", "ack_timeout": "soon"}),
        ("/v1/groups/billing/members", {"pattern": "orders", "colour": "red"}),
    ]:
        status, _, error = api.call("POST", path, body)
        assert (status, error["code"]) == (400, "invalid_request"), (path, body, error)


def test_a_group_that_does_not_exist_is_404_and_a_malformed_member_400(api: Api) -> None:
    for method, path, body in [
        ("GET", "/v1/groups/nobody", None),
        ("DELETE", "/v1/groups/nobody", None),
        ("POST", "/v1/groups/nobody/members/m-1/poll", {"timeout": 0}),
        ("POST", "/v1/groups/nobody/members/m-1/ack", {"deliveries": []}),
        ("DELETE", "/v1/groups/nobody/members/m-1", None),
    ]:
        status, _, error = api.call(method, path, body)
        assert (status, error["code"]) == (404, "invalid_request"), (method, path, error)
        assert "does not exist" in error["message"]
    _setup(api, [{"value": "v"}])
    status, _, error = api.call("POST", f"/v1/groups/billing/members/{'m' * 65}/ack", {"deliveries": []})
    assert (status, error["code"]) == (400, "invalid_request")
