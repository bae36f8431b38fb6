"""Which instants a report covers: pure date arithmetic in the organisation's time zone.

A period is half-open, ``[start, end)``, both ends aware. Local days, ISO weeks (Monday
first), months and years begin at local midnight, so a day across a daylight-saving change
lasts 23 or 25 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("day", "week", "month", "year")
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Period:
    start: datetime  # aware, local midnight of the first day
    end: datetime  # aware, exclusive
    tz: ZoneInfo

    @property
    def timezone(self) -> str:
        return self.tz.key


class PeriodError(ValueError):
    """Bad --from/--to/--period: the message says which and why."""


def midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def _start_of(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    return day


def _after(first: date, unit: str) -> date:
    """The first day after the `unit` that begins at `first`."""
    if unit == "day":
        return first + timedelta(days=1)
    if unit == "week":
        return first + timedelta(days=7)
    if unit == "month":
        return (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first.replace(year=first.year + 1)


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{option}: '{text}' is not a date like 2026-11-30") from None


def resolve(now: datetime, tz: ZoneInfo, *, start: date | None = None, to: date | None = None,
            unit: str | None = None) -> Period:
    """The period the options name.

    Nothing given: the last full week (Monday to Sunday) before today. ``--period`` alone:
    the last full day, week, month or year; with ``--from``, the one that begins on that
    day. ``--from`` and ``--to``: both days included. ``--from`` alone: until now.
    """
    if to is not None and unit is not None:
        raise PeriodError("--to and --period exclude each other")
    today = now.astimezone(tz).date()
    if start is None and to is None:
        unit = unit or "week"
        first = _start_of(_start_of(today, unit) - timedelta(days=1), unit)  # the last full one
        return Period(midnight(first, tz), midnight(_after(first, unit), tz), tz)
    if start is None:
        assert to is not None
        start = to - timedelta(days=6)  # --to alone: the week that ends that day
    if unit is not None:
        return Period(midnight(start, tz), midnight(_after(start, unit), tz), tz)
    if to is None:
        period = Period(midnight(start, tz), now, tz)
    else:
        period = Period(midnight(start, tz), midnight(to + timedelta(days=1), tz), tz)
    if period.end <= period.start:
        raise PeriodError("the period ends before it begins (--to is before --from)")
    return period


def offsets(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, int]]:
    """The zone's UTC offset over ``[start, end)``: ``(from_instant, seconds)`` pieces in order,
    the first from ``start``. Offsets change a few times a year, so a report can turn an
    instant into its local day in SQL with a short CASE instead of a time-zone database."""
    pieces: list[tuple[datetime, int]] = []
    at = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last: int | None = None
    while at < end:
        seconds = int(at.astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
        if seconds != last:
            # An hour's steps find the change to the hour; zones that change on a half or
            # quarter hour are searched minute by minute within that hour.
            begin = at
            if last is not None:
                begin = at - timedelta(hours=1)
                while int(begin.astimezone(tz).utcoffset().total_seconds()) != seconds:  # type: ignore[union-attr]
                    begin += timedelta(minutes=1)
            pieces.append((max(begin, start.astimezone(UTC)), seconds))
            last = seconds
        at += timedelta(hours=1)
    return pieces or [(start.astimezone(UTC),
                       int(start.astimezone(tz).utcoffset().total_seconds()))]  # type: ignore[union-attr]


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def day_of(number: int) -> date:
    return _EPOCH + timedelta(days=number)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def week_of(day: date) -> date:
    """The Monday that begins `day`'s ISO week."""
    return day - timedelta(days=day.weekday())
