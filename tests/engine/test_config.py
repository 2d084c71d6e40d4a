"""Per-topic configuration: retention by time and bytes, segment size, human units.

Goal: every documented spelling of a duration or a size parses to the right number,
"no limit" spellings give None, and every bad value is refused with an InvalidRequest
(never a bare ValueError or a silently absurd setting); create_topic applies the
parsed config, reports it in describe_topic, keeps it across a reopen, and creates
nothing when the config is refused.

Method: table-driven calls of ``parse_duration``/``parse_size``/``TopicConfig.build``,
then the same values through ``create_topic`` on an embedded client.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

import odradek
from odradek import limits
from odradek.config import TopicConfig, parse_duration, parse_size
from odradek.errors import InvalidRequest


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400.0),
        ("12h", 12 * 3600.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("500ms", 0.5),
        ("2w", 14 * 86400.0),
        ("1.5h", 5400.0),
        (" 7d ", 7 * 86400.0),
        ("7 d", 7 * 86400.0),
        ("90", 90.0),
        (3600, 3600.0),
        (0.25, 0.25),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "forever", "infinite", "none", -1])
def test_no_time_limit_spellings(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    "text", ["7x", "d", "", "seven days", "-5s", "7d7h", "1e3s", 0, "0s", -2, -0.5, True, False, [], {}]
)
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(InvalidRequest, match="retention"):
        parse_duration(text, "retention")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64k", 64 * 1024),
        ("64KiB", 64 * 1024),
        ("1kb", 1000),
        ("512MB", 512 * 1000**2),
        ("512mib", 512 * 1024**2),
        ("10GiB", 10 * 1024**3),
        ("2g", 2 * 1024**3),
        ("1TiB", 1024**4),
        ("1.5k", 1536),
        ("100", 100),
        ("100b", 100),
        (4096, 4096),
    ],
)
def test_sizes_parse(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [None, "none", "infinite", -1])
def test_no_size_limit_spellings(text: object) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize("text", ["1XB", "", "k", "-1k", "1 k b", 0, "0", -5, 0.4, True, [], "1e6"])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(InvalidRequest, match="retention_bytes"):
        parse_size(text, "retention_bytes")


@pytest.mark.parametrize("parse", [parse_duration, parse_size])
def test_nan_is_refused(parse: Callable[[object, str], object]) -> None:
    with pytest.raises(InvalidRequest):
        parse(math.nan, "retention")


def test_config_defaults() -> None:
    config = TopicConfig.build()
    assert config.retention_seconds == 7 * 86400.0
    assert config.retention_bytes is None
    assert config.segment_bytes == limits.segment_bytes_default
    assert config.segment_seconds == 7 * 86400.0


@pytest.mark.parametrize("segment_bytes", ["1k", limits.segment_bytes_min - 1, "5TiB"])
def test_segment_size_out_of_bounds_is_refused(segment_bytes: object) -> None:
    with pytest.raises(InvalidRequest, match="segment_bytes must be between"):
        TopicConfig.build(segment_bytes=segment_bytes)


def test_segment_size_bounds_are_inclusive() -> None:
    assert TopicConfig.build(segment_bytes=limits.segment_bytes_min).segment_bytes == limits.segment_bytes_min
    assert TopicConfig.build(segment_bytes=limits.segment_bytes_max).segment_bytes == limits.segment_bytes_max


def test_config_json_round_trip_ignores_unknown_fields() -> None:
    config = TopicConfig.build("1h", "10MiB", "64KiB", "10m")
    data = config.to_json() | {"added_by_a_later_version": 1}
    assert TopicConfig.from_json(data) == config


def test_create_topic_applies_and_reports_the_config(client: odradek.EmbeddedClient) -> None:
    info = client.create_topic(
        "t", retention="12h", retention_bytes="1GiB", segment_bytes="64KiB", segment_age="30m"
    )
    expected = {
        "retention_seconds": 12 * 3600.0,
        "retention_bytes": 1024**3,
        "segment_bytes": 64 * 1024,
        "segment_seconds": 1800.0,
        "cleanup": "delete",
        "delete_retention_seconds": 86400.0,
        "min_compaction_lag_seconds": 0.0,
        "min_cleanable_dirty_ratio": 0.5,
    }
    assert info.config == expected
    assert client.describe_topic("t").config == expected


def test_retention_forever(client: odradek.EmbeddedClient) -> None:
    info = client.create_topic("t", retention="forever", retention_bytes=None)
    assert info.config["retention_seconds"] is None
    assert info.config["retention_bytes"] is None


def test_config_survives_reopen(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    before = client.create_topic("t", retention="3d", retention_bytes="5MB", segment_bytes="1MiB").config
    client = reopen(client)
    assert client.describe_topic("t").config == before


@pytest.mark.parametrize(
    "options",
    [
        {"retention": "7 days"},
        {"retention": 0},
        {"retention_bytes": "lots"},
        {"retention_bytes": 0},
        {"segment_bytes": "1k"},
        {"segment_bytes": "huge"},
        {"segment_age": "-1h"},
    ],
)
def test_bad_config_creates_nothing(client: odradek.EmbeddedClient, options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        client.create_topic("t", **options)  # type: ignore[arg-type]
    assert client.list_topics() == []
    # The name is still free and the engine still works.
    assert client.create_topic("t").next_offset == 0
