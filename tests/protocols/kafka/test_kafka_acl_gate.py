"""The Kafka door's authorization gate, API by API, without sockets.

Goal: for each API the gate hands the handler only what the principal may do and
answers the rest with the API's own error (TOPIC_, GROUP_, TRANSACTIONAL_ID_,
CLUSTER_AUTHORIZATION_FAILED) in a response that encodes at every version the codec
serves; an admin and an allowed request pass untouched; the ACL APIs map Kafka's
resource, pattern, operation and permission codes onto the bindings and back.
Method: acl_api.gate and acl_api.serve called directly with an authorizer over a
temporary store; every answer encoded with the codec.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odradek.protocols.kafka import acl_api
from odradek.protocols.kafka.codec import messages_acls as a
from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request, encode_response
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.security.acl import binding
from odradek.security.acl_store import AclStore
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal

ALICE = Principal("alice")
TOPIC_FAILED = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_FAILED = ErrorCode.GROUP_AUTHORIZATION_FAILED


@pytest.fixture
def authorizer(tmp_path: Path) -> Iterator[Authorizer]:
    store = AclStore.open(str(tmp_path), sync=False)
    store.add(
        [
            binding("User:alice", "topic", "prefixed", "ok.", "all", "allow"),
            binding("User:alice", "group", "literal", "good", "all", "allow"),
        ]
    )
    yield Authorizer(store)


def _gate(authorizer: Authorizer, key: ApiKey, version: int, body: Any, who: Principal = ALICE) -> Any:
    request = Request(api_key=key, api_version=version, correlation_id=7, client_id="c", body=body)
    return asyncio.run(acl_api.gate(None, authorizer, who, request))  # type: ignore[arg-type]


def _encodes(key: ApiKey, answer: Any) -> None:
    api = APIS[key]
    for version in range(api.min_version, api.max_version + 1):
        assert encode_response(key, version, 7, answer)


def test_an_admin_and_an_allowed_request_pass_untouched(authorizer: Authorizer) -> None:
    body = d.ListOffsetsRequest(topics=(d.ListOffsetsTopic(name="ok.a"),))
    for who in (ALICE, Principal("root", admin=True)):
        request, finish = _gate(authorizer, ApiKey.LIST_OFFSETS, 7, body, who)
        assert request.body is body and finish("answer") == "answer"


def test_list_offsets_and_delete_topics_split_per_topic(authorizer: Authorizer) -> None:
    partitions = (d.ListOffsetsPartition(partition_index=0),)
    body = d.ListOffsetsRequest(
        topics=(
            d.ListOffsetsTopic(name="ok.a", partitions=partitions),
            d.ListOffsetsTopic(name="no", partitions=partitions),
        )
    )
    request, finish = _gate(authorizer, ApiKey.LIST_OFFSETS, 7, body)
    assert [topic.name for topic in request.body.topics] == ["ok.a"]
    answer = finish(d.ListOffsetsResponse(topics=()))
    assert [(t.name, t.partitions[0].error_code) for t in answer.topics] == [("no", TOPIC_FAILED)]
    _encodes(ApiKey.LIST_OFFSETS, answer)
    old = admin.DeleteTopicsRequest(topic_names=("ok.a", "no"))
    request, finish = _gate(authorizer, ApiKey.DELETE_TOPICS, 5, old)
    assert request.body.topic_names == ("ok.a",)
    answer = finish(admin.DeleteTopicsResponse(responses=()))
    assert [(r.name, r.error_code) for r in answer.responses] == [("no", TOPIC_FAILED)]
    _encodes(ApiKey.DELETE_TOPICS, answer)
    new = admin.DeleteTopicsRequest(topics=(admin.DeleteTopicState(name="no", topic_id=uuid.UUID(int=0)),))
    request, finish = _gate(authorizer, ApiKey.DELETE_TOPICS, 6, new)
    assert request is None
    _encodes(ApiKey.DELETE_TOPICS, finish(None))


def test_group_apis(authorizer: Authorizer) -> None:
    join = g.JoinGroupRequest(group_id="bad")
    request, finish = _gate(authorizer, ApiKey.JOIN_GROUP, 5, join)
    assert request is None and finish(None).error_code == GROUP_FAILED
    _encodes(ApiKey.JOIN_GROUP, finish(None))
    commit = g.OffsetCommitRequest(
        group_id="good",
        topics=(
            g.OffsetCommitRequestTopic(
                name="ok.a", partitions=(g.OffsetCommitRequestPartition(partition_index=0),)
            ),
            g.OffsetCommitRequestTopic(
                name="no", partitions=(g.OffsetCommitRequestPartition(partition_index=1),)
            ),
        ),
    )
    request, finish = _gate(authorizer, ApiKey.OFFSET_COMMIT, 8, commit)
    assert [t.name for t in request.body.topics] == ["ok.a"]
    answer = finish(g.OffsetCommitResponse(topics=()))
    assert [(t.name, t.partitions[0].error_code) for t in answer.topics] == [("no", TOPIC_FAILED)]
    _encodes(ApiKey.OFFSET_COMMIT, answer)
    request, finish = _gate(
        authorizer, ApiKey.OFFSET_COMMIT, 8, g.OffsetCommitRequest(group_id="bad", topics=commit.topics)
    )
    assert request is None and {t.partitions[0].error_code for t in finish(None).topics} == {GROUP_FAILED}
    request, finish = _gate(authorizer, ApiKey.OFFSET_FETCH, 7, g.OffsetFetchRequest(group_id="bad"))
    assert request is None and finish(None).error_code == GROUP_FAILED
    groups = (g.OffsetFetchRequestGroup(group_id="good"), g.OffsetFetchRequestGroup(group_id="bad"))
    request, finish = _gate(authorizer, ApiKey.OFFSET_FETCH, 8, g.OffsetFetchRequest(groups=groups))
    assert [group.group_id for group in request.body.groups] == ["good"]
    answer = finish(g.OffsetFetchResponse(groups=()))
    assert [(group.group_id, group.error_code) for group in answer.groups] == [("bad", GROUP_FAILED)]
    _encodes(ApiKey.OFFSET_FETCH, answer)
    request, finish = _gate(authorizer, ApiKey.FIND_COORDINATOR, 3, g.FindCoordinatorRequest(key="bad"))
    assert request is None and finish(None).error_code == GROUP_FAILED
    keys = g.FindCoordinatorRequest(coordinator_keys=("good", "bad"))
    request, finish = _gate(authorizer, ApiKey.FIND_COORDINATOR, 4, keys)
    assert request.body.coordinator_keys == ("good",)
    answer = finish(g.FindCoordinatorResponse(coordinators=()))
    assert [(c.key, c.error_code) for c in answer.coordinators] == [("bad", GROUP_FAILED)]
    _encodes(ApiKey.FIND_COORDINATOR, answer)
    for key, body in (
        (ApiKey.DESCRIBE_GROUPS, g.DescribeGroupsRequest(groups=("good", "bad"))),
        (ApiKey.DELETE_GROUPS, g.DeleteGroupsRequest(groups_names=("good", "bad"))),
    ):
        request, finish = _gate(authorizer, key, 2, body)
        assert request is not None
        answer = finish(APIS[key].response())
        _encodes(key, answer)
    listed = g.ListGroupsResponse(groups=(g.ListedGroup(group_id="good"), g.ListedGroup(group_id="bad")))
    request, finish = _gate(authorizer, ApiKey.LIST_GROUPS, 3, g.ListGroupsRequest())
    assert [group.group_id for group in finish(listed).groups] == ["good"]


def test_other_apis_need_the_cluster(authorizer: Authorizer) -> None:
    request, finish = _gate(authorizer, ApiKey.DESCRIBE_CONFIGS, 4, admin.DescribeConfigsRequest())
    assert request is None
    _encodes(ApiKey.DESCRIBE_CONFIGS, finish(None))
    request, finish = _gate(authorizer, ApiKey.CREATE_ACLS, 2, a.CreateAclsRequest())
    assert request is None
    authorizer.store.add([binding("User:alice", "cluster", "literal", "kafka-cluster", "alter", "allow")])
    request, _ = _gate(authorizer, ApiKey.CREATE_ACLS, 2, a.CreateAclsRequest())
    assert request is not None
    request, finish = _gate(
        authorizer, ApiKey.INIT_PRODUCER_ID, 4, d.InitProducerIdRequest(transactional_id="t")
    )
    assert request is None and finish(None).error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def _serve(authorizer: Authorizer | None, key: ApiKey, body: Any) -> Any:
    request = Request(api_key=key, api_version=3, correlation_id=7, client_id="c", body=body)
    answer = acl_api.serve(authorizer, request)
    _encodes(key, answer)
    return answer


def test_the_acl_apis_map_kafka_codes(authorizer: Authorizer) -> None:
    creation = a.AclCreation(
        resource_type=2, resource_name="orders.*", resource_pattern_type=3, principal="User:bob", host="*",
        operation=3, permission_type=3,
    )  # fmt: skip
    bad_host = a.AclCreation(
        resource_type=3, resource_name="g", resource_pattern_type=4, principal="User:bob", host="10.0.0.1",
        operation=3, permission_type=3,
    )  # fmt: skip
    answer = _serve(authorizer, ApiKey.CREATE_ACLS, a.CreateAclsRequest(creations=(creation, bad_host)))
    assert [result.error_code for result in answer.results] == [0, ErrorCode.INVALID_REQUEST]
    assert ("match", "orders.*") in [(b.pattern_type, b.pattern) for b in authorizer.store.bindings()]
    matching = a.DescribeAclsRequest(
        resource_type_filter=2,
        resource_name_filter="orders.eu",
        pattern_type_filter=2,
        operation=1,
        permission_type=1,
    )
    described = _serve(authorizer, ApiKey.DESCRIBE_ACLS, matching)
    assert [(r.resource_name, r.acls[0].principal) for r in described.resources] == [("orders.*", "User:bob")]
    unknown = a.DescribeAclsRequest(resource_type_filter=9, operation=1, permission_type=1)
    assert _serve(authorizer, ApiKey.DESCRIBE_ACLS, unknown).error_code == ErrorCode.INVALID_REQUEST
    deleting = a.DeleteAclsFilter(
        resource_type_filter=1,
        principal_filter="User:bob",
        operation=1,
        permission_type=1,
        pattern_type_filter=1,
    )
    deleted = _serve(authorizer, ApiKey.DELETE_ACLS, a.DeleteAclsRequest(filters=(deleting,)))
    assert [m.resource_name for m in deleted.filter_results[0].matching_acls] == ["orders.*"]
    disabled = _serve(None, ApiKey.DESCRIBE_ACLS, matching)
    assert disabled.error_code == ErrorCode.SECURITY_DISABLED


def test_metadata_by_topic_id_hides_what_the_principal_may_not_describe(authorizer: Authorizer) -> None:
    secret, open_ = uuid.uuid4(), uuid.uuid4()
    body = d.MetadataRequest(
        topics=(d.MetadataRequestTopic(topic_id=secret), d.MetadataRequestTopic(topic_id=open_))
    )
    _, finish = _gate(authorizer, ApiKey.METADATA, 12, body)
    answer = finish(
        d.MetadataResponse(
            topics=(
                d.MetadataResponseTopic(name="hr.salaries", topic_id=secret, partitions=()),
                d.MetadataResponseTopic(name="ok.a", topic_id=open_, partitions=()),
            )
        )
    )
    assert [(t.name, t.topic_id, t.error_code) for t in answer.topics] == [
        (None, secret, TOPIC_FAILED),
        ("ok.a", open_, 0),
    ]
    _encodes(ApiKey.METADATA, dataclasses.replace(answer, topics=answer.topics[1:]))
    assert encode_response(ApiKey.METADATA, 12, 7, answer)


class _TopicsById:
    """The one broker call the gate makes for share requests: a topic's name by its id."""

    def __init__(self, names: dict[uuid.UUID, str]) -> None:
        self.names = names

    async def topic_by_id(self, topic_id: uuid.UUID) -> Any:
        name = self.names.get(topic_id)
        return None if name is None else type("View", (), {"name": name})()


def test_share_group_apis_need_the_group_and_its_topics(authorizer: Authorizer) -> None:
    # They were checked as cluster APIs: alice, who may read group "good" and the "ok."
    # topics, was refused CLUSTER_AUTHORIZATION_FAILED.
    allowed_id, secret_id = uuid.uuid4(), uuid.uuid4()
    broker = _TopicsById({allowed_id: "ok.a", secret_id: "hr.salaries"})

    def gate(key: ApiKey, body: Any) -> Any:
        request = Request(api_key=key, api_version=1, correlation_id=7, client_id="c", body=body)
        return asyncio.run(acl_api.gate(broker, authorizer, ALICE, request))  # type: ignore[arg-type]

    beat = s.ShareGroupHeartbeatRequest(group_id="good", member_id="m", member_epoch=0)
    request, _ = gate(
        ApiKey.SHARE_GROUP_HEARTBEAT, dataclasses.replace(beat, subscribed_topic_names=("ok.a",))
    )
    assert request is not None
    request, finish = gate(
        ApiKey.SHARE_GROUP_HEARTBEAT, dataclasses.replace(beat, subscribed_topic_names=("hr.salaries",))
    )
    assert request is None and finish(None).error_code == TOPIC_FAILED
    request, finish = gate(ApiKey.SHARE_GROUP_HEARTBEAT, dataclasses.replace(beat, group_id="bad"))
    assert request is None and finish(None).error_code == GROUP_FAILED
    _encodes(ApiKey.SHARE_GROUP_HEARTBEAT, finish(None))
    for key, request_type, topic_type in (
        (ApiKey.SHARE_FETCH, s.ShareFetchRequest, s.ShareFetchTopic),
        (ApiKey.SHARE_ACKNOWLEDGE, s.ShareAcknowledgeRequest, s.ShareAcknowledgeTopic),
    ):
        epoch = {"share_session_epoch": 0}
        if key == ApiKey.SHARE_FETCH:
            epoch.update(max_wait_ms=0, min_bytes=1)
        allowed_topic = topic_type(topic_id=allowed_id, partitions=())
        request, _ = gate(key, request_type(group_id="good", member_id="m", topics=(allowed_topic,), **epoch))
        assert request is not None
        secret_topic = topic_type(topic_id=secret_id, partitions=())
        topics = (allowed_topic, secret_topic)
        request, finish = gate(key, request_type(group_id="good", member_id="m", topics=topics, **epoch))
        assert request is None and finish(None).error_code == TOPIC_FAILED
        _encodes(key, finish(None))
        request, finish = gate(
            key, request_type(group_id="bad", member_id="m", topics=(allowed_topic,), **epoch)
        )
        assert request is None and finish(None).error_code == GROUP_FAILED
    describe = s.ShareGroupDescribeRequest(group_ids=("good", "bad"))
    request, finish = gate(ApiKey.SHARE_GROUP_DESCRIBE, describe)
    assert request.body.group_ids == ("good",)
    answer = finish(s.ShareGroupDescribeResponse(throttle_time_ms=0, groups=()))
    assert [(group.group_id, group.error_code) for group in answer.groups] == [("bad", GROUP_FAILED)]
    _encodes(ApiKey.SHARE_GROUP_DESCRIBE, answer)
    request, finish = gate(ApiKey.SHARE_GROUP_DESCRIBE, s.ShareGroupDescribeRequest(group_ids=("bad",)))
    assert request is None and [group.error_code for group in finish(None).groups] == [GROUP_FAILED]
