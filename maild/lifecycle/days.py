"""Business days of the organisation's calendar: pure, so they are table-tested.

"Three business days later" is the same local time of day on the third business day after
the day it started: a ticket set to pending on Friday at 16:00 is reminded on Wednesday at
16:00 (Monday and Tuesday count; Saturday and Sunday do not, nor do holidays).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from maild.businesstime.calendar import BusinessCalendar

_WHOLE_DAY = ((time(0, 0), time(0, 0)),)
MAX_DAYS = 3660  # a calendar with no business day for ten years is a mistake, not a plan


def weekdays(tz: ZoneInfo) -> BusinessCalendar:
    """The calendar of a desk whose SLA file has none: Monday to Friday."""
    return BusinessCalendar(name="weekdays", tz=tz, hours=dict.fromkeys(range(5), _WHOLE_DAY))


def is_business_day(cal: BusinessCalendar, day: date) -> bool:
    return bool(cal.hours.get(day.weekday())) and not cal.is_holiday(day)


def after_business_days(cal: BusinessCalendar, start: datetime, days: int) -> datetime:
    """The instant `days` business days after `start`, at its local time of day (on a
    day that has that wall-clock time twice or not at all, as zoneinfo resolves it)."""
    local = start.astimezone(cal.tz)
    day, counted = local.date(), 0
    for _ in range(MAX_DAYS):
        if counted == days:
            break
        day += timedelta(days=1)
        counted += is_business_day(cal, day)
    else:
        raise ValueError(f"calendar {cal.name!r}: no {days} business days within ten years")
    return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=cal.tz)
