"""A group's subscription: one pattern, or a list of them.

A member joins a group subscribed to one pattern (names.py), given as a string, or to
several, given as a sequence of patterns (a Kafka share member subscribed to several
topics, decision 0026). The group keeps a subscription as one string: a single pattern
as it is, a list as its distinct patterns sorted and joined by ``,`` (a character no
pattern holds, so a string from outside is never taken for a list). That string is
what ``describe_group`` shows as the pattern and what every member of a group with
members must ask for (in any order: the sorted forms are compared); a topic is read if
any of the patterns matches it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.names import compile_pattern

SEPARATOR = ","


def subscription(pattern: str | Sequence[str]) -> str:
    """The subscription string of ``pattern`` (a pattern, or a sequence of patterns);
    InvalidRequest for a bad pattern, an empty list or one longer than
    ``limits.group_subscription_patterns_max``."""
    if isinstance(pattern, str):
        compile_pattern(pattern)  # raises InvalidRequest (a ',' is no pattern's)
        return pattern
    patterns = sorted(set(pattern))
    if not patterns:
        raise InvalidRequest("a subscription names at least one pattern")
    if len(patterns) > limits.group_subscription_patterns_max:
        raise InvalidRequest(
            f"a subscription lists {len(patterns)} patterns; at most {limits.group_subscription_patterns_max}"
        )
    for each in patterns:
        if not isinstance(each, str):
            raise InvalidRequest(f"a subscription's patterns are strings, got {each!r}")
        compile_pattern(each)
    return SEPARATOR.join(patterns)


@functools.lru_cache(maxsize=1024)
def compile_subscription(text: str) -> Callable[[str], bool]:
    """A predicate telling whether a topic name is in the subscription ``text`` (what
    :func:`subscription` returned)."""
    if SEPARATOR not in text:
        return compile_pattern(text)
    matchers = tuple(compile_pattern(each) for each in text.split(SEPARATOR))

    def matches(name: str) -> bool:
        return any(match(name) for match in matchers)

    return matches
