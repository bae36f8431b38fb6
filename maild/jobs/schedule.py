"""When a job is due: pure functions of the time, in the organisation's time zone.

Each answers with the key of the latest due time at or before `now` (or None): a daemon
that was down at 07:30 runs the 07:30 job when it starts, once, and a daemon down for days
runs only the latest of what it missed (a digest of last Tuesday helps nobody).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LOOKBACK_DAYS = 14  # how far back a daily or weekly job looks for its latest due day


def daily(now: datetime, at: time, tz: ZoneInfo,
          on: Callable[[date], bool] = lambda _day: True) -> str | None:
    """The latest day (a key like `2026-12-07`) whose `at` o'clock has come, among the
    days `on` accepts (business days, say)."""
    local = now.astimezone(tz)
    for back in range(LOOKBACK_DAYS + 1):
        day = local.date() - timedelta(days=back)
        if not on(day):
            continue
        due = datetime.combine(day, at, tzinfo=tz)
        if due <= local:
            return day.isoformat()
    return None


def weekly(now: datetime, weekday: int, at: time, tz: ZoneInfo) -> str | None:
    """The latest `weekday` (0 is Monday) whose `at` o'clock has come."""
    return daily(now, at, tz, lambda day: day.weekday() == weekday)


def every(now: datetime, seconds: float) -> str:
    """The current slot of a job that runs every `seconds` (UTC, from the epoch)."""
    return str(int(now.timestamp() // seconds))


def monthly(now: datetime, day: int, at: time, tz: ZoneInfo) -> str:
    """The latest `day` of a month (1-28: every month has it) whose `at` o'clock has come."""
    local = now.astimezone(tz)
    year, month = local.year, local.month
    if datetime.combine(date(year, month, day), at, tzinfo=tz) > local:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return date(year, month, day).isoformat()
