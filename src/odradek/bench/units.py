"""Byte units and the one way the suite prints a number."""

from __future__ import annotations

import math

KIB = 1024
MIB = 1024 * 1024


def format_value(value: float) -> str:
    """Three significant digits, thousands separated: 1,230,000 / 45.6 / 0.123."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    rounded = round(value, digits)
    if digits == 0:
        return f"{round(value, 2 - math.floor(math.log10(abs(value)))):,.0f}"
    return f"{rounded:,.{digits}f}"
