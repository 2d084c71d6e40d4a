"""Topic names and subscription patterns (DESIGN §3).

Goal: valid names are accepted and everything else is refused with an InvalidRequest
that says what a name may be; patterns match exactly the names a NATS-style matcher
would (``*`` one segment, ``>`` one or more trailing segments) and malformed patterns
are refused.

Method: table-driven examples for the documented cases, then hypothesis properties that
compare ``validate_topic_name`` and ``compile_pattern`` with small reference
implementations written segment by segment, without regular expressions.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.names import compile_pattern, is_pattern, validate_topic_name

SEGMENT_CHARS = set(string.ascii_letters + string.digits + "_-")

# -- reference implementations ---------------------------------------------------------


def reference_is_valid_name(name: str) -> bool:
    if not name or len(name) > limits.topic_name_length_max:
        return False
    segments = name.split(".")
    if not all(segment and set(segment) <= SEGMENT_CHARS for segment in segments):
        return False
    if name.startswith("_"):  # reserved, but for a tenant's topics: _t.<tenant>.<name>
        return (
            len(segments) >= 3
            and segments[0] == "_t"
            and segments[1][0] in string.ascii_letters + string.digits
            and len(segments[1]) <= limits.tenant_name_length_max
            and not segments[2].startswith("_")
        )
    return True


def reference_is_valid_pattern(pattern: str) -> bool:
    if not pattern or len(pattern) > limits.topic_name_length_max:
        return False
    segments = pattern.split(".")
    for position, segment in enumerate(segments):
        if segment == "*":
            continue
        if segment == ">":
            if position != len(segments) - 1:
                return False
            continue
        if not segment or not set(segment) <= SEGMENT_CHARS:
            return False
    return True


def reference_matches(pattern: str, name: str) -> bool:
    wanted = pattern.split(".")
    actual = name.split(".")
    for position, segment in enumerate(wanted):
        # a wildcard first segment never matches a reserved one (the tenants' space)
        if position == 0 and segment in ("*", ">") and actual[0].startswith("_"):
            return False
        if segment == ">":
            return len(actual) > position
        if position >= len(actual):
            return False
        if segment != "*" and segment != actual[position]:
            return False
    return len(actual) == len(wanted)


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "orders",
        "orders.eu.created",
        "Orders-2024.eu_west.v1",
        "a._b",  # only a leading underscore is reserved
        "-",
        "0.1.2",
        "x" * limits.topic_name_length_max,
        ".".join(["ab"] * 83),  # 248 characters, many segments
    ],
)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a b",
        "a/b",
        "a\\b",
        "orders:eu",
        "caf\u00e9",
        "a*",
        "a.*",
        "a.>",
        "a\n",
        "x" * (limits.topic_name_length_max + 1),
    ],
)
def test_invalid_names_are_refused_with_the_rules(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_topic_name(name)
    message = str(caught.value)
    assert "letters, digits" in message
    assert str(limits.topic_name_length_max) in message


@pytest.mark.parametrize("name", [None, 7, b"orders", ["orders"]])
def test_a_name_must_be_a_string(name: object) -> None:
    with pytest.raises(InvalidRequest, match="string"):
        validate_topic_name(name)


@pytest.mark.parametrize(
    "name", ["_internal", "_", "__consumer_offsets", "_a.b", "_t.acme", "_t.acme._x", "_t._a.b"]
)
def test_names_starting_with_underscore_are_reserved(name: str) -> None:
    with pytest.raises(InvalidRequest, match="reserved"):
        validate_topic_name(name)
    assert validate_topic_name(name, allow_reserved=True) == name


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="ab_-.*>Z9 \u00e9/", max_size=12))
def test_validate_topic_name_agrees_with_the_reference(name: str) -> None:
    try:
        validate_topic_name(name)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert accepted == reference_is_valid_name(name)


@settings(max_examples=30, deadline=None, database=None)
@given(st.integers(min_value=1, max_value=limits.topic_name_length_max + 20))
def test_the_length_limit_is_exactly_249(length: int) -> None:
    name = "n" * length
    if length <= limits.topic_name_length_max:
        assert validate_topic_name(name) == name
    else:
        with pytest.raises(InvalidRequest, match="characters long"):
            validate_topic_name(name)


# -- patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("orders", False),
        ("orders.eu", False),
        ("orders.*", True),
        ("orders.>", True),
        (">", True),
        ("*.created", True),
        ("a*", False),
    ],
)
def test_is_pattern(text: str, expected: bool) -> None:
    assert is_pattern(text) is expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("orders.*.created", "orders.eu.created", True),
        ("orders.*.created", "orders.us.created", True),
        ("orders.*.created", "orders.eu.cancelled", False),
        ("orders.*.created", "orders.created", False),
        ("orders.*.created", "orders.eu.west.created", False),
        ("orders.>", "orders.eu", True),
        ("orders.>", "orders.eu.created", True),
        ("orders.>", "orders", False),
        ("orders.>", "ordersx.eu", False),
        (">", "a", True),
        (">", "a.b.c", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.>", "a", False),
        ("*.>", "a.b", True),
        ("orders", "orders", True),
        ("orders", "orders.eu", False),
        ("orders.eu", "orders-eu", False),  # '.' in a pattern is not a regex dot
        ("a-b", "a-b", True),
    ],
)
def test_pattern_examples(pattern: str, name: str, expected: bool) -> None:
    assert compile_pattern(pattern)(name) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a.>.b",
        ">.a",
        "a>",
        "a*",
        "*a",
        "a.*b",
        "**",
        ">>",
        "a.b c",
        "a/b",
        "(a|b)",
        "a.+",
        "x" * (limits.topic_name_length_max + 1),
    ],
)
def test_malformed_patterns_are_refused_with_the_rules(pattern: str) -> None:
    with pytest.raises(InvalidRequest, match="pattern"):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", [None, 7])
def test_a_pattern_must_be_a_string(pattern: object) -> None:
    with pytest.raises(InvalidRequest):
        compile_pattern(pattern)  # type: ignore[arg-type]


SEGMENTS = st.sampled_from(["a", "b", "ab", "a-b", "_x", "9", "B", "_t"])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=5).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.one_of(SEGMENTS, st.just("*")), min_size=0, max_size=5))
    if not segments or draw(st.booleans()):
        segments.append(">")
    return ".".join(segments)


@settings(max_examples=500, deadline=None, database=None)
@given(patterns(), NAMES)
def test_compile_pattern_agrees_with_the_reference_matcher(pattern: str, name: str) -> None:
    assert compile_pattern(pattern)(name) == reference_matches(pattern, name)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(NAMES, min_size=1, max_size=4))
def test_a_name_used_as_a_pattern_matches_only_itself(names: list[str]) -> None:
    target = names[0]
    for name in names:
        assert compile_pattern(target)(name) == (name == target)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="ab_-.*>\u00e9 ", max_size=10))
def test_pattern_validity_agrees_with_the_reference(pattern: str) -> None:
    try:
        compile_pattern(pattern)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert accepted == reference_is_valid_pattern(pattern)
