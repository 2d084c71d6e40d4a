"""A consumer group's options, validated once at join.

Options belong to the group, not to a member: records are dispatched by one policy.
The first member to join an empty group sets them (and the subscription pattern);
a member joining a group that has members must ask for the same ones, else its join is
refused with the difference named. ``start`` is the exception: it only says where a
*new* group begins, so later joins may pass anything.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

from odradek import defaults, limits
from odradek.errors import InvalidRequest
from odradek.groups.subscription import compile_subscription
from odradek.names import NAME_RULES, dead_letter_topic, validate_topic_name

ORDERINGS = ("key", "topic", "none")

# In-flight records per ordering unit when ``max_in_flight_per_key`` is None and the
# unit is a whole topic: the one active member may pipeline up to a window.
_TOPIC_IN_FLIGHT = limits.group_window_records_max


@dataclasses.dataclass(frozen=True)
class GroupOptions:
    """How a group dispatches.

    * ``ordering``: ``"key"`` (records of one key in version order, keys in parallel
      over all members; keyless records spread freely), ``"topic"`` (one active member
      gets each topic in offset order; the next member takes over when it leaves or
      expires) or ``"none"`` (every record independent, like a work queue).
    * ``max_in_flight_per_key``: records of one ordering unit (a key, or a topic with
      ``ordering="topic"``) delivered and not yet settled at once; they always go to the
      same member, in order. None means 1 for ``"key"`` and a whole window for
      ``"topic"``.
    * ``ack_timeout``: seconds a delivery may stay unsettled before it is redelivered;
      also how long a member may stay silent (no poll, ack or nack) before it is
      removed and its deliveries go back to the group.
    * ``max_deliveries``: deliveries of one record before it goes to the dead-letter
      topic (``dead_letter_topic``, by default ``dlq.<group>``).
    * ``start``: where a new group begins in topics that existed when it was created:
      ``"earliest"``, ``"latest"``, an offset, a datetime or an ISO-8601 string. Topics
      created later are read from their first record.
    """

    ordering: str = defaults.ordering
    max_in_flight_per_key: int | None = None
    ack_timeout: float = defaults.ack_timeout_seconds
    max_deliveries: int = defaults.max_deliveries
    dead_letter_topic: str | None = None
    start: Any = defaults.start

    @classmethod
    def build(cls, group: str, pattern: str, **raw: Any) -> GroupOptions:
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InvalidRequest(f"unknown group option(s) {sorted(unknown)}")
        options = cls(**raw)
        options.validate(group, pattern)
        if options.dead_letter_topic is None:
            options = dataclasses.replace(options, dead_letter_topic=dead_letter_topic(group))
        return options

    def validate(self, group: str, pattern: str) -> None:
        validate_group_name(group)
        compile_subscription(pattern)
        if self.ordering not in ORDERINGS:
            raise InvalidRequest(f"ordering must be one of {ORDERINGS}, got {self.ordering!r}")
        if self.max_in_flight_per_key is not None:
            _check_int(
                "max_in_flight_per_key", self.max_in_flight_per_key, 1, limits.group_in_flight_per_key_max
            )
        _check_seconds("ack_timeout", self.ack_timeout, limits.group_ack_timeout_seconds_max, positive=True)
        _check_int("max_deliveries", self.max_deliveries, 1, limits.group_max_deliveries_max)
        if self.dead_letter_topic is not None:
            validate_topic_name(self.dead_letter_topic)
        _check_start(self.start)

    @property
    def in_flight_limit(self) -> int:
        if self.max_in_flight_per_key is not None:
            return self.max_in_flight_per_key
        return _TOPIC_IN_FLIGHT if self.ordering == "topic" else 1

    @property
    def dead_letters(self) -> str:
        if self.dead_letter_topic is None:
            raise InvalidRequest("the options were not built for a group")
        return self.dead_letter_topic

    def policy(self) -> dict[str, Any]:
        """The options every member must agree on (all but ``start``)."""
        return {
            "ordering": self.ordering,
            "max_in_flight_per_key": self.max_in_flight_per_key,
            "ack_timeout": float(self.ack_timeout),
            "max_deliveries": self.max_deliveries,
            "dead_letter_topic": self.dead_letter_topic,
        }

    def to_json(self) -> dict[str, Any]:
        start = self.start
        if isinstance(start, datetime.datetime):
            start = start.isoformat()
        return {**self.policy(), "start": start}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupOptions:
        return cls(**data)


def validate_group_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidRequest(f"a group name must be a string, got {type(name).__name__}")
    if len(name) > limits.group_name_length_max:
        raise InvalidRequest(
            f"group name is {len(name)} characters long; at most {limits.group_name_length_max} "
            "(its dead-letter topic 'dlq.<group>' must be a topic name)"
        )
    try:
        validate_topic_name(name)
    except InvalidRequest:
        raise InvalidRequest(
            f"invalid group name {name!r}: it follows the topic name rules: {NAME_RULES}"
        ) from None
    return name


def validate_member_id(member: object) -> str:
    if not isinstance(member, str) or not member or len(member) > 64:
        raise InvalidRequest(f"a member id is the string join returned, got {member!r}")
    return member


def check_poll(max_records: object, timeout: object) -> tuple[int, float]:
    records = _check_int("max_records", max_records, 1, limits.group_poll_records_max)
    return records, _check_seconds("timeout", timeout, limits.wait_seconds_max, positive=False)


def check_delay(delay: object) -> float:
    return _check_seconds("delay", delay, limits.group_nack_delay_seconds_max, positive=False)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an int from {low} to {high}, got {value!r}")
    return value


def _check_seconds(name: str, value: object, high: float, *, positive: bool) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
        or value > high
    ):
        low = "> 0" if positive else ">= 0"
        raise InvalidRequest(f"{name} must be a number of seconds {low} and <= {high}, got {value!r}")
    return float(value)


def _check_start(start: object) -> None:
    if start in ("earliest", "latest") or isinstance(start, datetime.datetime):
        return
    if isinstance(start, int) and not isinstance(start, bool) and start >= 0:
        return
    if isinstance(start, str):
        try:
            datetime.datetime.fromisoformat(start)
            return
        except ValueError:
            pass
    raise InvalidRequest(
        "start must be 'earliest', 'latest', an offset (int >= 0), a datetime or an "
        f"ISO-8601 timestamp, got {start!r}"
    )
