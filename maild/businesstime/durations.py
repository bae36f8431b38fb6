"""Durations as admins write them: `90m`, `4h`, `2d`, `1w`, or a number of minutes.

A module of its own: the settings read durations too, and need nothing else of business
time (its calendar models cost a read-only command some 35 ms to import).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """`90m`, `4h`, `2d`, `1w`, or a number of minutes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(minutes=value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"'{value}' is not a duration like 30m, 4h, 2d or 1w")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
