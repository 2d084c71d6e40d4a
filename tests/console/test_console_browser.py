"""The web console end to end: each page shows real data in a real browser.

Goal: a person opening /ui on a running `odradek serve` sees the topics with their sizes
and rates, a live tail that shows a record appended after the page opened and whose
filter filters, a key's versions with values decoded through the topic's schema,
consumer groups with their lag per topic and their members (a Kafka group's per
partition, committed through the Kafka door by kafka-python, and per member: the
partitions each of two confluent-kafka members holds and their lag), schemas and their versions,
and no cluster page on a single node. Method: one real server and one headless Chromium
(Playwright) per module; each test makes its data through the HTTP API, opens a page and
waits (generous deadlines, never a timing asserted) for what it must show; a screenshot
of each page is kept under pytest's tmp path and its path printed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_server import Served

# What a page must show within: the console refreshes every 2 s; a loaded machine is slow.
SHOWN_MS = 30_000


@pytest.fixture
def page(browser: Any, served: Served, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(SHOWN_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    shot = tmp_path / f"{request.node.name}.png"
    opened.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    context.close()
    assert not errors, errors


def open_page(page: Any, served: Served, route: str) -> None:
    page.goto(f"{served.base}/ui/#/{route}")


def test_topics_show_their_sizes_and_rates(page: Any, served: Served) -> None:
    served.ok("POST", "/v1/topics", {"name": "sizes.small"})
    served.produce("sizes.small", [{"key": f"k{i}", "value": "v" * 100} for i in range(3)])
    open_page(page, served, "topics")
    row = page.locator("tr[data-topic='sizes.small']")
    row.locator("td.records", has_text="3").wait_for()
    assert "B" in row.locator("td.bytes").inner_text()
    # Records appended while the page watches give a rate above zero at a later refresh.
    served.produce("sizes.small", [{"key": f"k{i}", "value": "v"} for i in range(200)])
    row.locator("td.records", has_text="203").wait_for()
    page.wait_for_function(
        """() => {
            const cell = document.querySelector("tr[data-topic='sizes.small'] td.rate");
            return cell !== null && parseFloat(cell.textContent) > 0;
        }""",
        timeout=SHOWN_MS,
    )


def test_the_live_tail_shows_new_records_and_filters_them(page: Any, served: Served) -> None:
    served.ok("POST", "/v1/topics", {"name": "tail.eu.orders"})
    served.produce("tail.eu.orders", [{"key": "before", "value": "written before the page opened"}])
    open_page(page, served, "tail?pattern=tail.>")
    page.locator("[data-testid=tail-state]", has_text="live").wait_for()
    # After the page opened: a record of a topic it follows, and of a topic created now.
    served.produce("tail.eu.orders", [{"key": "o-1", "value": "apple pie"}, {"key": "o-2", "value": "pear"}])
    served.ok("POST", "/v1/topics", {"name": "tail.us.orders"})
    served.produce("tail.us.orders", [{"key": "o-3", "value": "apple tart"}])
    rows = page.locator("[data-testid=tail] tbody tr")
    page.locator("[data-testid=tail] td", has_text="apple tart").wait_for()
    page.locator("[data-testid=tail] td", has_text="pear").wait_for()
    assert rows.count() == 3  # the tail starts at the end: "before" is not shown
    assert not page.locator("[data-testid=tail] td", has_text="written before").count()
    page.fill("input[name=filter]", "APPLE")
    page.locator("[data-testid=shown]", has_text="2").wait_for()
    shown = rows.all_inner_texts()
    assert len(shown) == 2 and all("apple" in text for text in shown), shown
    page.fill("input[name=filter]", "")
    page.locator("[data-testid=shown]", has_text="3").wait_for()


def test_the_key_explorer_shows_a_keys_versions_decoded(page: Any, served: Served) -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "integer"}, "currency": {"type": "string"}},
        "required": ["amount"],
    }
    served.ok("POST", "/v1/topics", {"name": "keys.payments", "schema": schema})
    for amount in (10, 20, 30):
        served.produce(
            "keys.payments", [{"key": "account-7", "value": {"amount": amount, "currency": "EUR"}}]
        )
    served.produce("keys.payments", [{"key": "account-8", "value": {"amount": 1}}])
    open_page(page, served, "keys?topic=keys.payments&key=account-7")
    page.locator("[data-testid=key-summary]", has_text="version 3").wait_for()
    versions = page.locator("[data-testid=versions] tbody tr")
    assert versions.count() == 3
    assert [versions.nth(i).get_attribute("data-version") for i in range(3)] == ["3", "2", "1"]
    newest = versions.nth(0).locator("td.value").inner_text()
    assert '"amount": 30' in newest and '"currency": "EUR"' in newest  # decoded as JSON


def test_groups_show_lag_per_topic_and_members(page: Any, served: Served) -> None:
    served.ok("POST", "/v1/topics", {"name": "groups.work"})
    served.produce("groups.work", [{"key": f"k{i}", "value": "job"} for i in range(10)])
    joined = served.ok("POST", "/v1/groups/billing/members", {"pattern": "groups.work", "start": "earliest"})
    member = joined["member"]
    polled = served.ok("POST", f"/v1/groups/billing/members/{member}/poll", {"max_records": 4, "timeout": 10})
    deliveries = polled["deliveries"]
    assert deliveries
    served.ok(
        "POST",
        f"/v1/groups/billing/members/{member}/ack",
        {"deliveries": [{key: d[key] for key in ("topic", "offset", "lease")} for d in deliveries]},
    )
    expected_lag = str(10 - len(deliveries))
    open_page(page, served, "groups")
    group = page.locator("article[data-group=billing]")
    group.locator("tr[data-topic='groups.work'] td.lag", has_text=expected_lag).wait_for()
    group.locator(f"tr[data-member='{member}']").wait_for()


def test_a_kafka_groups_lag_per_partition_and_member(page: Any, served: Served, tmp_path: Path) -> None:
    kafka = pytest.importorskip("kafka")
    from kafka.structs import OffsetAndMetadata, TopicPartition

    served.ok("POST", "/v1/topics", {"name": "groups.kafka"})
    served.produce("groups.kafka", [{"key": f"k{i}", "value": "job"} for i in range(10)])
    consumer = kafka.KafkaConsumer(bootstrap_servers=served.kafka, group_id="kafka-billing")
    try:
        consumer.commit({TopicPartition("groups.kafka", 0): OffsetAndMetadata(7, None, -1)})
    finally:
        consumer.close()
    open_page(page, served, "groups")
    group = page.locator("article[data-group=kafka-billing]")
    row = group.locator("tr[data-topic='groups.kafka']")
    row.locator("td.lag [data-partition='0']", has_text="partition 0: 3 (at 7)").wait_for()
    assert "kafka" in group.locator("h2").inner_text()

    # Two confluent-kafka members sharing four partitions: each member's row has the
    # partitions its client holds and their lag, as its client tells it.
    from kafka_members import two_members

    with two_members(served.kafka, "groups.shared", "kafka-shared") as shared:
        members = page.locator("article[data-group=kafka-shared] [data-testid=group-members]")
        for member in shared.members:
            member_row = members.locator("tbody tr", has_text=member.client_id)
            assigned = f"groups.shared: {', '.join(str(p) for p in member.partitions)}"
            member_row.locator("td.partitions [data-assigned='groups.shared']", has_text=assigned).wait_for()
            member_row.locator("td.lag", has_text=re.compile(f"^{member.lag}$")).wait_for()
        assert members.locator("tbody tr").count() == 2
        shot = tmp_path / "kafka-shared-members.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")


def test_schemas_show_subjects_and_versions(page: Any, served: Served) -> None:
    first = {"type": "record", "name": "Reading", "fields": [{"name": "celsius", "type": "double"}]}
    second = {
        "type": "record",
        "name": "Reading",
        "fields": [
            {"name": "celsius", "type": "double"},
            {"name": "station", "type": "string", "default": "unknown"},
        ],
    }
    served.ok("POST", "/v1/topics", {"name": "schemas.readings", "schema": first})
    status, _ = served.call("POST", "/subjects/schemas.readings-value/versions", {"schema": _json(second)})
    assert status == 200
    open_page(page, served, "schemas")
    page.locator("[data-testid=subjects] a", has_text="schemas.readings-value").click()
    page.locator("article[data-version='2']", has_text="station").wait_for()
    page.locator("article[data-version='1']", has_text="celsius").wait_for()


def test_no_cluster_page_on_a_single_node(page: Any, served: Served) -> None:
    open_page(page, served, "topics")
    page.locator("header[data-clustered=false]").wait_for(state="attached")
    assert page.locator("nav a[data-page=cluster]").count() == 0


def _json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document)
