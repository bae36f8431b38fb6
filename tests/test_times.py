"""Times in staff mail: local, readable, with the business time left (issue 20, item 2)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from maild.businesstime.calendar import BusinessCalendar
from maild.tickets.times import duration, staff_time

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar(
    name="office", tz=BERLIN, hours={d: ((time(8), time(18)),) for d in range(5)},
    holidays=frozenset({date(2026, 12, 25)}))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(("value", "text"), [
    (timedelta(minutes=45), "45 min"), (timedelta(hours=1, minutes=12), "1 h 12 min"),
    (timedelta(hours=26), "26 h"), (timedelta(seconds=59), "0 min"),
])
def test_duration(value: timedelta, text: str) -> None:
    assert duration(value) == text


@pytest.mark.parametrize(("at", "now", "language", "text"), [
    # Monday 28 December 2026, 10:30 in Berlin is 09:30 UTC; now is 09:18 in Berlin.
    (utc(2026, 12, 28, 9, 30), utc(2026, 12, 28, 8, 18), "en",
     "Mon 28 Dec, 10:30 (in 1 h 12 min of business time)"),
    # Over a weekend and Christmas: Thursday 24th 17:00 to Monday 28th 09:00 is 2 h.
    (utc(2026, 12, 28, 8, 0), utc(2026, 12, 24, 16, 0), "en",
     "Mon 28 Dec, 09:00 (in 2 h of business time)"),
    (utc(2026, 12, 28, 8, 0), utc(2026, 12, 28, 9, 0), "de",
     "Mo 28 Dez., 09:00 (vor 1 h Geschäftszeit)"),
    (utc(2026, 7, 6, 8, 30), utc(2026, 7, 6, 8, 0), "en",  # summer time: UTC+2
     "Mon 6 Jul, 10:30 (in 30 min of business time)"),
])
def test_staff_time(at: datetime, now: datetime, language: str, text: str) -> None:
    assert staff_time(at, OFFICE, now, language) == text


def test_staff_time_on_an_always_open_calendar() -> None:
    always = BusinessCalendar.always_open(tz=BERLIN)
    assert staff_time(utc(2026, 12, 27, 9), always, utc(2026, 12, 27, 8), "en") == \
        "Sun 27 Dec, 10:00 (in 1 h)"
