"""Business-time maths: tables of known answers, then properties that must hold for any input.

The tables pin the cases an operator would check by hand (lunch breaks, nights, weekends,
Christmas, 1 May, the Berlin clock changes, a desk open until midnight). The properties
(hypothesis) cover what tables cannot: arbitrary instants, durations with microseconds,
generated calendars in zones with whole-hour and half-hour clock changes, and pauses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.businesstime.calendar import (
    BusinessCalendar,
    Pause,
    _add_walking,
    _always_open,
    add_business_time,
    business_time_between,
    business_time_elapsed,
    due_with_pauses,
    is_open,
    open_intervals,
    subtract_business_time,
)
from maild.businesstime.intervals import HORIZON_DAYS

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # clock changes by 30 minutes
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
TICK = timedelta(microseconds=1)
ZERO = timedelta(0)

OFFICE_DAY = ((time(8), time(12)), (time(13), time(17)))
OFFICE = BusinessCalendar(
    name="office",
    tz=BERLIN,
    hours=dict.fromkeys(range(5), OFFICE_DAY),
    holidays=frozenset({date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26)}),
    recurring_holidays=frozenset({(5, 1)}),
)
ALWAYS = BusinessCalendar.always_open(tz=BERLIN)
# Open around the clock too, but written as two touching ranges a day, so that it takes the
# general day-by-day path instead of the 24x7 shortcut.
SPLIT_DAY = BusinessCalendar(
    name="split-day",
    tz=BERLIN,
    hours=dict.fromkeys(range(7), ((time(0), time(12)), (time(12), time(0)))),
)
SUNDAY_NIGHT = BusinessCalendar(name="sunday-night", tz=BERLIN, hours={6: ((time(0), time(6)),)})
# Boundaries inside the hour that is skipped in spring and repeated in autumn.
DST_EDGES = BusinessCalendar(
    name="dst-edges", tz=BERLIN, hours={6: ((time(1, 30), time(2, 30)), (time(2, 45), time(3, 15)))}
)
EVENING = BusinessCalendar(name="evening", tz=BERLIN, hours={0: ((time(20), time(0)),)})
LATE_SHIFT = BusinessCalendar(
    name="late-shift",
    tz=BERLIN,
    hours=dict.fromkeys(range(7), ((time(0), time(2)), (time(18), time(0)))),
)

SETTINGS = settings(
    deadline=None,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0
) -> datetime:
    """A Berlin wall-clock time, as the tables are written."""
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN, fold=fold)


# ---------------------------------------------------------------------------------------------
# Tables: the office calendar (Mon-Fri 08-12, 13-17; 24-26 Dec 2026; 1 May every year)
# 2026-06-01 is a Monday, 2026-05-01 a Friday, 2026-12-24 a Thursday.
# ---------------------------------------------------------------------------------------------

BETWEEN_CASES = [
    ("same morning", berlin(2026, 6, 1, 9), berlin(2026, 6, 1, 11), 2 * H),
    ("across lunch", berlin(2026, 6, 1, 11), berlin(2026, 6, 1, 14), 2 * H),
    ("lunch break itself", berlin(2026, 6, 1, 12), berlin(2026, 6, 1, 13), ZERO),
    ("whole day from outside", berlin(2026, 6, 1, 6), berlin(2026, 6, 1, 20), 8 * H),
    ("overnight", berlin(2026, 6, 1, 16), berlin(2026, 6, 2, 9), 2 * H),
    ("over the weekend", berlin(2026, 6, 5, 16), berlin(2026, 6, 8, 9), 2 * H),
    ("inside the weekend", berlin(2026, 6, 6, 10), berlin(2026, 6, 7, 18), ZERO),
    ("a whole week", berlin(2026, 6, 1), berlin(2026, 6, 8), 40 * H),
    ("four weeks", berlin(2026, 6, 1), berlin(2026, 6, 29), 160 * H),
    ("recurring 1 May", berlin(2026, 4, 30, 16), berlin(2026, 5, 4, 9), 2 * H),
    ("Christmas", berlin(2026, 12, 23, 16), berlin(2026, 12, 28, 9), 2 * H),
    ("week of the spring change", berlin(2026, 3, 23), berlin(2026, 3, 30), 40 * H),
    ("week of the autumn change", berlin(2026, 10, 19), berlin(2026, 10, 26), 40 * H),
    ("end before start", berlin(2026, 6, 1, 11), berlin(2026, 6, 1, 9), ZERO),
    ("empty span", berlin(2026, 6, 1, 11), berlin(2026, 6, 1, 11), ZERO),
    (
        "other zone in, same instants",
        datetime(2026, 6, 1, 7, tzinfo=UTC),
        berlin(2026, 6, 1, 11),
        2 * H,
    ),
]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [case[1:] for case in BETWEEN_CASES],
    ids=[c[0] for c in BETWEEN_CASES],
)
def test_business_time_between_office(start: datetime, end: datetime, expected: timedelta) -> None:
    assert business_time_between(OFFICE, start, end) == expected


ADD_CASES = [
    ("within a morning", berlin(2026, 6, 1, 9), 2 * H, berlin(2026, 6, 1, 11)),
    ("over lunch", berlin(2026, 6, 1, 11), 2 * H, berlin(2026, 6, 1, 14)),
    ("overnight", berlin(2026, 6, 1, 16), 2 * H, berlin(2026, 6, 2, 9)),
    ("used up at closing time", berlin(2026, 6, 5, 16), H, berlin(2026, 6, 5, 17)),
    ("over the weekend", berlin(2026, 6, 5, 16), 2 * H, berlin(2026, 6, 8, 9)),
    ("zero while open", berlin(2026, 6, 1, 10), ZERO, berlin(2026, 6, 1, 10)),
    ("zero at lunch", berlin(2026, 6, 1, 12), ZERO, berlin(2026, 6, 1, 13)),
    ("zero at the weekend", berlin(2026, 6, 6, 10), ZERO, berlin(2026, 6, 8, 8)),
    ("start before opening", berlin(2026, 6, 1, 5), 30 * MIN, berlin(2026, 6, 1, 8, 30)),
    ("one week", berlin(2026, 6, 1, 9), 40 * H, berlin(2026, 6, 8, 9)),
    ("eight weeks", berlin(2026, 6, 1, 8), 320 * H, berlin(2026, 7, 24, 17)),
    ("over Christmas", berlin(2026, 12, 23, 16), 4 * H, berlin(2026, 12, 28, 11)),
    ("over 1 May", berlin(2026, 4, 30, 16), 2 * H, berlin(2026, 5, 4, 9)),
    ("over the spring change", berlin(2026, 3, 27, 16), 2 * H, berlin(2026, 3, 30, 9)),
]


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [case[1:] for case in ADD_CASES],
    ids=[c[0] for c in ADD_CASES],
)
def test_add_business_time_office(start: datetime, duration: timedelta, expected: datetime) -> None:
    result = add_business_time(OFFICE, start, duration)
    assert result == expected
    assert result.tzinfo is UTC
    assert business_time_between(OFFICE, start, result) == duration


SUBTRACT_CASES = [
    ("within a morning", berlin(2026, 6, 1, 11), 2 * H, berlin(2026, 6, 1, 9)),
    ("back over the night", berlin(2026, 6, 2, 9), 2 * H, berlin(2026, 6, 1, 16)),
    ("back over the weekend", berlin(2026, 6, 8, 9), 2 * H, berlin(2026, 6, 5, 16)),
    ("from an opening", berlin(2026, 6, 8, 8), H, berlin(2026, 6, 5, 16)),
    ("back over lunch", berlin(2026, 6, 1, 13), H, berlin(2026, 6, 1, 11)),
    ("lands on an opening", berlin(2026, 6, 1, 14), H, berlin(2026, 6, 1, 13)),
    ("zero", berlin(2026, 6, 6, 10), ZERO, berlin(2026, 6, 6, 10)),
    ("back over Christmas", berlin(2026, 12, 28, 9), 2 * H, berlin(2026, 12, 23, 16)),
]


@pytest.mark.parametrize(
    ("end", "duration", "expected"),
    [case[1:] for case in SUBTRACT_CASES],
    ids=[c[0] for c in SUBTRACT_CASES],
)
def test_subtract_business_time_office(
    end: datetime, duration: timedelta, expected: datetime
) -> None:
    result = subtract_business_time(OFFICE, end, duration)
    assert result == expected
    assert business_time_between(OFFICE, result, end) == duration


def test_warning_at_eighty_percent_of_the_target() -> None:
    start = berlin(2026, 6, 4, 15)  # Thursday afternoon
    due = add_business_time(OFFICE, start, 8 * H)
    assert due == berlin(2026, 6, 5, 15)
    warn = subtract_business_time(OFFICE, due, 8 * H / 5)
    assert warn == berlin(2026, 6, 5, 13, 24)
    assert business_time_between(OFFICE, start, warn) == 8 * H * 4 / 5


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (berlin(2026, 6, 1, 7, 59), False),
        (berlin(2026, 6, 1, 8), True),
        (berlin(2026, 6, 1, 11, 59), True),
        (berlin(2026, 6, 1, 12), False),  # closing instants are closed
        (berlin(2026, 6, 1, 13), True),
        (berlin(2026, 6, 1, 17), False),
        (berlin(2026, 6, 6, 10), False),  # Saturday
        (berlin(2026, 5, 1, 10), False),  # recurring holiday
        (berlin(2027, 5, 3, 10), True),  # the Monday after 1 May 2027
        (berlin(2026, 12, 24, 10), False),
        (berlin(2026, 12, 28, 10), True),
        (datetime(2026, 6, 1, 6, 30, tzinfo=UTC), True),  # 08:30 in Berlin
    ],
)
def test_is_open_office(at: datetime, expected: bool) -> None:
    assert is_open(OFFICE, at) is expected


def test_open_intervals_are_utc_clipped_and_ordered() -> None:
    intervals = list(open_intervals(OFFICE, berlin(2026, 6, 5, 10), berlin(2026, 6, 8, 9)))
    assert intervals == [
        (berlin(2026, 6, 5, 10), berlin(2026, 6, 5, 12)),
        (berlin(2026, 6, 5, 13), berlin(2026, 6, 5, 17)),
        (berlin(2026, 6, 8, 8), berlin(2026, 6, 8, 9)),
    ]
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in intervals)
    assert list(open_intervals(OFFICE, berlin(2026, 6, 8), berlin(2026, 6, 5))) == []


# ---------------------------------------------------------------------------------------------
# Tables: clock changes in Europe/Berlin (2026-03-29 spring, 2026-10-25 autumn, both Sundays)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        (SUNDAY_NIGHT, date(2026, 3, 29), 5 * H),  # 00:00-06:00 loses the skipped hour
        (SUNDAY_NIGHT, date(2026, 10, 25), 7 * H),  # ... and gains the repeated one
        (SUNDAY_NIGHT, date(2026, 6, 7), 6 * H),
        (ALWAYS, date(2026, 3, 29), 23 * H),
        (ALWAYS, date(2026, 10, 25), 25 * H),
        (SPLIT_DAY, date(2026, 3, 29), 23 * H),
        (SPLIT_DAY, date(2026, 10, 25), 25 * H),
        # Boundaries inside the gap map to the clock change: 01:30-(03:00) and (03:00)-03:15.
        (DST_EDGES, date(2026, 3, 29), 45 * MIN),
        # Ambiguous boundaries take their first occurrence: 01:30-02:30 CEST, 02:45 CEST-03:15.
        (DST_EDGES, date(2026, 10, 25), 2 * H + 30 * MIN),
        (DST_EDGES, date(2026, 6, 7), H + 30 * MIN),
    ],
)
def test_real_hours_on_clock_change_days(
    calendar: BusinessCalendar, day: date, expected: timedelta
) -> None:
    start = datetime.combine(day, time(0), tzinfo=BERLIN)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=BERLIN)
    assert business_time_between(calendar, start, end) == expected
    assert add_business_time(calendar, start, expected) <= end
    assert subtract_business_time(calendar, end, expected) >= start


def test_spring_change_sunday_night_in_utc() -> None:
    start = berlin(2026, 3, 29)
    assert list(open_intervals(SUNDAY_NIGHT, start, berlin(2026, 3, 30))) == [
        (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 4, tzinfo=UTC))
    ]
    assert add_business_time(SUNDAY_NIGHT, start, 2 * H) == berlin(2026, 3, 29, 3)
    assert is_open(SUNDAY_NIGHT, datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST


def test_autumn_change_sunday_night_in_utc() -> None:
    start = berlin(2026, 10, 25)
    assert list(open_intervals(SUNDAY_NIGHT, start, berlin(2026, 10, 26))) == [
        (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 5, tzinfo=UTC))
    ]
    # Three real hours after midnight the clock shows 02:00 for the second time. (Compared in
    # UTC: by PEP 495 a fold=1 time never compares equal across zones.)
    second_two_oclock = berlin(2026, 10, 25, 2, fold=1).astimezone(UTC)
    assert second_two_oclock == datetime(2026, 10, 25, 1, tzinfo=UTC)
    assert add_business_time(SUNDAY_NIGHT, start, 3 * H) == second_two_oclock
    assert (
        business_time_between(
            SUNDAY_NIGHT, berlin(2026, 10, 25, 2), berlin(2026, 10, 25, 2, fold=1)
        )
        == H
    )


def test_dst_edges_gap_boundaries_merge_at_the_clock_change() -> None:
    change = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert list(open_intervals(DST_EDGES, berlin(2026, 3, 29), berlin(2026, 3, 30))) == [
        (change - 30 * MIN, change + 15 * MIN)
    ]


@pytest.mark.parametrize("calendar", [ALWAYS, SPLIT_DAY], ids=["24x7", "split-day"])
def test_around_the_clock_counts_real_time_over_clock_changes(calendar: BusinessCalendar) -> None:
    assert add_business_time(calendar, berlin(2026, 3, 29), 24 * H) == berlin(2026, 3, 30, 1)
    assert add_business_time(calendar, berlin(2026, 10, 25), 24 * H) == berlin(2026, 10, 25, 23)
    assert subtract_business_time(calendar, berlin(2026, 3, 30, 1), 24 * H) == berlin(2026, 3, 29)
    week = business_time_between(calendar, berlin(2026, 3, 23), berlin(2026, 3, 30))
    assert week == 7 * 24 * H - H
    assert is_open(calendar, berlin(2026, 12, 25, 3))


def test_always_open_defaults() -> None:
    calendar = BusinessCalendar.always_open()
    assert calendar.name == "24x7"
    assert calendar.tz == ZoneInfo("UTC")
    assert not calendar.holidays and not calendar.recurring_holidays
    # Real time, not wall-clock arithmetic: 1000 days from summer end in winter, at 23:00 local.
    start = berlin(2026, 6, 1)
    due = add_business_time(calendar, start, 1000 * 24 * H)
    assert due == start.astimezone(UTC) + 1000 * 24 * H
    assert due.astimezone(BERLIN) == berlin(2029, 2, 24, 23)


# ---------------------------------------------------------------------------------------------
# Tables: ranges that end at midnight
# ---------------------------------------------------------------------------------------------


def test_range_until_midnight() -> None:
    assert business_time_between(EVENING, berlin(2026, 6, 1, 22), berlin(2026, 6, 2, 12)) == 2 * H
    assert add_business_time(EVENING, berlin(2026, 6, 1, 23), H) == berlin(2026, 6, 2)
    assert is_open(EVENING, berlin(2026, 6, 1, 23, 59))
    assert not is_open(EVENING, berlin(2026, 6, 2))
    assert is_open(EVENING, berlin(2026, 6, 2) - TICK)
    assert subtract_business_time(EVENING, berlin(2026, 6, 9), 5 * H) == berlin(2026, 6, 1, 23)


def test_overnight_shift_is_one_interval_across_midnight() -> None:
    intervals = list(open_intervals(LATE_SHIFT, berlin(2026, 6, 1, 12), berlin(2026, 6, 2, 12)))
    assert intervals == [(berlin(2026, 6, 1, 18), berlin(2026, 6, 2, 2))]
    assert business_time_between(LATE_SHIFT, berlin(2026, 6, 1, 20), berlin(2026, 6, 2, 1)) == 5 * H
    assert add_business_time(LATE_SHIFT, berlin(2026, 6, 1, 23), 2 * H) == berlin(2026, 6, 2, 1)
    assert add_business_time(LATE_SHIFT, berlin(2026, 6, 2, 1), 2 * H) == berlin(2026, 6, 2, 19)
    assert not is_open(LATE_SHIFT, berlin(2026, 6, 2, 2))


def test_recurring_leap_day_holiday() -> None:
    calendar = BusinessCalendar(
        name="leap",
        tz=BERLIN,
        hours=dict.fromkeys(range(5), OFFICE_DAY),
        recurring_holidays=frozenset({(2, 29)}),
    )
    assert not is_open(calendar, berlin(2028, 2, 29, 10))  # a Tuesday
    assert is_open(calendar, berlin(2028, 3, 1, 10))


# ---------------------------------------------------------------------------------------------
# Tables: pauses (waiting for the customer)
# ---------------------------------------------------------------------------------------------

MONDAY_9 = berlin(2026, 6, 1, 9)

ELAPSED_CASES: list[tuple[str, datetime, list[Pause], timedelta]] = [
    ("no pauses", berlin(2026, 6, 1, 15), [], 5 * H),
    (
        "one hour paused",
        berlin(2026, 6, 1, 15),
        [(berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 11))],
        4 * H,
    ),
    (
        "overlapping pauses count once",
        berlin(2026, 6, 1, 15),
        [
            (berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 11)),
            (berlin(2026, 6, 1, 10, 30), berlin(2026, 6, 1, 11, 30)),
        ],
        3 * H + 30 * MIN,
    ),
    (
        "duplicate pauses count once",
        berlin(2026, 6, 1, 15),
        [(berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 11))] * 2,
        4 * H,
    ),
    ("open pause runs until now", berlin(2026, 6, 1, 15), [(berlin(2026, 6, 1, 14), None)], 4 * H),
    ("open pause after now", berlin(2026, 6, 1, 15), [(berlin(2026, 6, 1, 16), None)], 5 * H),
    ("pause before the start", berlin(2026, 6, 1, 15), [(berlin(2026, 5, 29, 9), MONDAY_9)], 5 * H),
    (
        "pause over the weekend costs nothing",
        berlin(2026, 6, 8, 9),
        [(berlin(2026, 6, 5, 17), berlin(2026, 6, 8, 8))],
        40 * H,
    ),
    (
        "pause in the lunch break costs nothing",
        berlin(2026, 6, 1, 15),
        [(berlin(2026, 6, 1, 12), berlin(2026, 6, 1, 13))],
        5 * H,
    ),
    ("now before start", berlin(2026, 6, 1, 8), [], ZERO),
]


@pytest.mark.parametrize(
    ("now", "pauses", "expected"),
    [case[1:] for case in ELAPSED_CASES],
    ids=[c[0] for c in ELAPSED_CASES],
)
def test_business_time_elapsed(now: datetime, pauses: list[Pause], expected: timedelta) -> None:
    assert business_time_elapsed(OFFICE, MONDAY_9, now, pauses) == expected


DUE_CASES: list[tuple[str, datetime, timedelta, list[Pause], datetime | None]] = [
    ("no pauses", MONDAY_9, 8 * H, [], berlin(2026, 6, 2, 9)),
    (
        "one closed pause",
        MONDAY_9,
        8 * H,
        [(berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 11))],
        berlin(2026, 6, 2, 10),
    ),
    ("waiting for the customer", MONDAY_9, 8 * H, [(berlin(2026, 6, 1, 10), None)], None),
    (
        "customer replied two days later",
        MONDAY_9,
        8 * H,
        [(berlin(2026, 6, 1, 10), berlin(2026, 6, 3, 10))],
        berlin(2026, 6, 4, 9),
    ),
    (
        "breach before the pause stays visible",
        MONDAY_9,
        4 * H,
        [(berlin(2026, 6, 2, 10), None)],
        berlin(2026, 6, 1, 14),
    ),
    (
        "target reached exactly when the pause starts",
        MONDAY_9,
        2 * H,
        [(berlin(2026, 6, 1, 11), None)],
        berlin(2026, 6, 1, 11),
    ),
    ("paused from before the start", MONDAY_9, H, [(berlin(2026, 6, 1, 8), None)], None),
    (
        "overlapping pauses",
        MONDAY_9,
        2 * H,
        [
            (berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 11)),
            (berlin(2026, 6, 1, 9, 30), berlin(2026, 6, 1, 10, 30)),
        ],
        berlin(2026, 6, 1, 13, 30),
    ),
    ("zero target at the weekend", berlin(2026, 6, 6, 10), ZERO, [], berlin(2026, 6, 8, 8)),
    (
        "zero target inside a pause",
        berlin(2026, 6, 1, 10),
        ZERO,
        [(berlin(2026, 6, 1, 10), berlin(2026, 6, 1, 10, 30))],
        berlin(2026, 6, 1, 10, 30),
    ),
]


@pytest.mark.parametrize(
    ("start", "target", "pauses", "expected"),
    [case[1:] for case in DUE_CASES],
    ids=[c[0] for c in DUE_CASES],
)
def test_due_with_pauses(
    start: datetime, target: timedelta, pauses: list[Pause], expected: datetime | None
) -> None:
    assert due_with_pauses(OFFICE, start, target, pauses) == expected


# ---------------------------------------------------------------------------------------------
# Validation and guards
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({0: ((time(8), time(12)), (time(11), time(13)))}, "overlap"),
        ({0: ((time(13), time(17)), (time(8), time(12)))}, "out of order"),
        ({0: ((time(17), time(8)),)}, "ends before it starts"),
        ({0: ((time(8), time(8)),)}, "ends before it starts"),
        ({0: ((time(20), time(0)), (time(21), time(22)))}, "overlap"),
        ({7: ((time(8), time(12)),)}, "not 0 \\(Monday\\) to 6"),
        ({0: ((time(8, tzinfo=UTC), time(12)),)}, "without a tzinfo"),
        ({}, "no opening hours"),
        ({0: (), 1: ()}, "no opening hours"),
    ],
)
def test_invalid_hours_are_rejected(
    hours: dict[int, tuple[tuple[time, time], ...]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(name="bad", tz=BERLIN, hours=hours)


def test_invalid_recurring_holiday_and_name() -> None:
    with pytest.raises(ValueError, match="recurring holiday"):
        BusinessCalendar(
            name="bad", tz=BERLIN, hours={0: OFFICE_DAY}, recurring_holidays=frozenset({(2, 30)})
        )
    with pytest.raises(ValueError, match="name"):
        BusinessCalendar(name="", tz=BERLIN, hours={0: OFFICE_DAY})


def test_error_message_names_calendar_day_and_ranges() -> None:
    with pytest.raises(ValueError) as caught:
        BusinessCalendar(
            name="support", tz=BERLIN, hours={2: ((time(8), time(12)), (time(11, 30), time(0)))}
        )
    assert "'support', Wednesday" in str(caught.value)
    assert "08:00-12:00 and 11:30-24:00" in str(caught.value)


def test_calendar_is_a_frozen_hashable_value() -> None:
    hours = {0: OFFICE_DAY}
    calendar = BusinessCalendar(name="x", tz=BERLIN, hours=hours)
    hours[1] = OFFICE_DAY
    assert 1 not in calendar.hours  # a read-only copy, immune to the caller's dict
    with pytest.raises(TypeError):
        calendar.hours[1] = OFFICE_DAY  # type: ignore[index]
    assert calendar == BusinessCalendar(name="x", tz=BERLIN, hours={0: OFFICE_DAY})
    assert hash(calendar) == hash(BusinessCalendar(name="x", tz=BERLIN, hours={0: OFFICE_DAY}))


NAIVE = datetime(2026, 6, 1, 9)

NAIVE_CALLS: list[tuple[str, Callable[[], object]]] = [
    ("is_open", lambda: is_open(OFFICE, NAIVE)),
    ("open_intervals", lambda: open_intervals(OFFICE, NAIVE, MONDAY_9)),
    ("between", lambda: business_time_between(OFFICE, MONDAY_9, NAIVE)),
    ("add", lambda: add_business_time(OFFICE, NAIVE, H)),
    ("subtract", lambda: subtract_business_time(OFFICE, NAIVE, H)),
    ("elapsed", lambda: business_time_elapsed(OFFICE, MONDAY_9, NAIVE, [])),
    ("elapsed pause", lambda: business_time_elapsed(OFFICE, MONDAY_9, MONDAY_9, [(NAIVE, None)])),
    ("due", lambda: due_with_pauses(OFFICE, NAIVE, H, [])),
    ("due pause", lambda: due_with_pauses(OFFICE, MONDAY_9, H, [(MONDAY_9, NAIVE)])),
]


@pytest.mark.parametrize("call", [c[1] for c in NAIVE_CALLS], ids=[c[0] for c in NAIVE_CALLS])
def test_naive_datetimes_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


def test_negative_durations_and_backwards_pauses_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_time(OFFICE, MONDAY_9, -H)
    with pytest.raises(ValueError, match="negative"):
        subtract_business_time(OFFICE, MONDAY_9, -H)
    with pytest.raises(ValueError, match="negative"):
        due_with_pauses(OFFICE, MONDAY_9, -H, [])
    with pytest.raises(ValueError, match="before it starts"):
        business_time_elapsed(OFFICE, MONDAY_9, MONDAY_9 + H, [(MONDAY_9 + H, MONDAY_9)])


def test_search_horizon_stops_a_calendar_that_never_opens() -> None:
    mondays = frozenset(date(2026, 6, 1) + timedelta(weeks=week) for week in range(600))
    calendar = BusinessCalendar(name="never", tz=BERLIN, hours={0: OFFICE_DAY}, holidays=mondays)
    with pytest.raises(
        ValueError, match=f"no business time at all within {HORIZON_DAYS} days after"
    ):
        add_business_time(calendar, MONDAY_9, ZERO)
    with pytest.raises(ValueError, match=f"within {HORIZON_DAYS} days before"):
        subtract_business_time(calendar, berlin(2037, 1, 1), H)
    assert business_time_between(calendar, MONDAY_9, berlin(2030, 1, 1)) == ZERO
    assert due_with_pauses(calendar, MONDAY_9, H, [(MONDAY_9, None)]) is None


def test_horizon_also_bounds_very_long_durations() -> None:
    with pytest.raises(ValueError, match="not 416 days, 16:00:00 of business time"):
        add_business_time(SUNDAY_NIGHT, MONDAY_9, 10_000 * H)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

# Clock changes in the zones below, so that generated instants land near them often.
CLOCK_CHANGES = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]

instants = st.one_of(
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda change, shift: change + shift,
        st.sampled_from(CLOCK_CHANGES),
        st.timedeltas(min_value=-3 * 24 * H, max_value=3 * 24 * H),
    ),
)
durations = st.timedeltas(min_value=ZERO, max_value=10 * 24 * H)
zones = st.sampled_from([BERLIN, NEW_YORK, LORD_HOWE, ZoneInfo("UTC")])


def _to_time(half_hours: int) -> time:
    return time(0) if half_hours == 48 else time(half_hours // 2, 30 * (half_hours % 2))


@st.composite
def generated_calendars(draw: st.DrawFn) -> BusinessCalendar:
    """Random valid calendars: half-hour boundaries (some inside clock changes), holidays."""
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for weekday in range(7):
        marks = sorted(draw(st.lists(st.integers(0, 48), unique=True, max_size=6)))
        pairs = list(zip(marks[::2], marks[1::2], strict=False))
        hours[weekday] = tuple((_to_time(a), _to_time(b)) for a, b in pairs)
    weekly_half_hours = sum(
        b - a
        for marks in hours.values()
        for a, b in ((_half_hours(o), _half_hours(c, end=True)) for o, c in marks)
    )
    if weekly_half_hours < 4:
        hours[2] = ((time(9), time(17)),)
    return BusinessCalendar(
        name="generated",
        tz=draw(zones),
        hours=hours,
        holidays=draw(st.frozensets(st.dates(date(2025, 1, 1), date(2028, 12, 31)), max_size=20)),
        recurring_holidays=draw(
            st.frozensets(st.tuples(st.integers(1, 12), st.integers(1, 28)), max_size=3)
        ),
    )


def _half_hours(value: time, *, end: bool = False) -> int:
    return 48 if end and value == time(0) else value.hour * 2 + value.minute // 30


calendars = st.one_of(
    st.sampled_from([OFFICE, ALWAYS, SPLIT_DAY, SUNDAY_NIGHT, DST_EDGES, EVENING, LATE_SHIFT]),
    generated_calendars(),
)
pause_lists = st.lists(
    st.tuples(
        instants, st.one_of(st.none(), st.timedeltas(min_value=ZERO, max_value=5 * 24 * H))
    ).map(lambda pair: (pair[0], None if pair[1] is None else pair[0] + pair[1])),
    max_size=4,
)


@SETTINGS
@given(calendars, instants, durations)
def test_add_then_measure_round_trips(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = add_business_time(cal, start, duration)
    assert business_time_between(cal, start, due) == duration
    if duration > ZERO:  # the earliest such instant
        assert business_time_between(cal, start, due - TICK) < duration
    else:  # the next moment that counts
        assert is_open(cal, due)
        assert business_time_between(cal, start, due) == ZERO


# Instants on either side of where one of add_business_time's blocks of days ends and the
# next begins (UTC dates whose ordinal is a multiple of 365), and at the ends of time.
block_edges = st.builds(
    lambda year_block, offset: datetime.fromordinal(year_block * 365).replace(tzinfo=UTC) + offset,
    st.integers(2025, 2029),  # ordinal // 365 of dates from 2024-08 to 2028-08
    st.timedeltas(min_value=-3 * 24 * H, max_value=3 * 24 * H),
)
far_instants = st.sampled_from(
    [datetime(1, 1, 3, tzinfo=UTC), datetime(9999, 12, 20, tzinfo=UTC)]
)
# A calendar open around the clock adds plain time and asks no interval at all.
walked_calendars = calendars.filter(lambda cal: not _always_open(cal))


@SETTINGS
@given(walked_calendars, st.one_of(instants, block_edges), durations)
def test_add_answers_what_the_walk_through_the_intervals_answers(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    """add_business_time looks the answer up in a memo of the calendar's intervals (two
    bisections); walking the intervals one by one from ``start`` must give the same instant."""
    assert add_business_time(cal, start, duration) == _add_walking(cal, start, duration)


@SETTINGS
@given(walked_calendars, far_instants, durations)
def test_add_near_the_ends_of_time_agrees_with_the_walk(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    try:
        walked = _add_walking(cal, start, duration)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            add_business_time(cal, start, duration)
        return
    assert add_business_time(cal, start, duration) == walked


@SETTINGS
@given(calendars, instants, durations, durations.filter(lambda d: d > ZERO))
def test_add_continues_where_an_earlier_add_stopped(
    cal: BusinessCalendar, start: datetime, first: timedelta, rest: timedelta
) -> None:
    # What the SLA deadlines rely on to find a breach from its warning instead of again from
    # the start. Not for a zero rest: that answers the next opening, not the instant itself.
    reached = add_business_time(cal, start, first)
    assert add_business_time(cal, reached, rest) == add_business_time(cal, start, first + rest)


@SETTINGS
@given(calendars, instants, durations)
def test_subtract_then_measure_round_trips(
    cal: BusinessCalendar, end: datetime, duration: timedelta
) -> None:
    begin = subtract_business_time(cal, end, duration)
    assert business_time_between(cal, begin, end) == duration
    if duration > ZERO:  # the latest such instant
        assert business_time_between(cal, begin + TICK, end) < duration


@SETTINGS
@given(calendars, instants, durations)
def test_subtract_inverts_add_on_open_instants(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    opening = add_business_time(cal, start, ZERO)  # an instant at which the desk is open
    assert is_open(cal, opening)
    assert (
        subtract_business_time(cal, add_business_time(cal, opening, duration), duration) == opening
    )


@SETTINGS
@given(calendars, st.lists(instants, min_size=3, max_size=3).map(sorted))
def test_between_is_additive_over_a_split_point(
    cal: BusinessCalendar, points: list[datetime]
) -> None:
    a, b, c = points
    assert business_time_between(cal, a, c) == business_time_between(
        cal, a, b
    ) + business_time_between(cal, b, c)


@SETTINGS
@given(calendars, instants, instants, instants)
def test_between_is_monotonic_in_end_and_bounded_by_wall_clock(
    cal: BusinessCalendar, start: datetime, end_a: datetime, end_b: datetime
) -> None:
    early, late = sorted((end_a, end_b))
    assert business_time_between(cal, start, early) <= business_time_between(cal, start, late)
    assert ZERO <= business_time_between(cal, start, late) <= max(late - start, ZERO)


@SETTINGS
@given(
    st.sampled_from([ALWAYS, SPLIT_DAY, BusinessCalendar.always_open()]),
    instants,
    instants,
    durations,
)
def test_around_the_clock_equals_wall_clock(
    cal: BusinessCalendar, start: datetime, end: datetime, duration: timedelta
) -> None:
    assert business_time_between(cal, start, end) == max(end - start, ZERO)
    assert add_business_time(cal, start, duration) == start + duration
    assert subtract_business_time(cal, end, duration) == end - duration
    assert is_open(cal, start)


@SETTINGS
@given(calendars, instants, instants, zones, zones)
def test_zone_of_the_arguments_does_not_matter(
    cal: BusinessCalendar, start: datetime, end: datetime, zone_a: ZoneInfo, zone_b: ZoneInfo
) -> None:
    assert business_time_between(cal, start.astimezone(zone_a), end.astimezone(zone_b)) == (
        business_time_between(cal, start, end)
    )
    assert is_open(cal, start.astimezone(zone_a)) == is_open(cal, start)


@SETTINGS
@given(calendars, instants, instants)
def test_open_intervals_are_maximal_and_agree_with_is_open(
    cal: BusinessCalendar, start: datetime, end: datetime
) -> None:
    intervals = list(open_intervals(cal, start, end))
    previous_end: datetime | None = None
    for opens, closes in intervals:
        assert start <= opens < closes <= end
        assert previous_end is None or previous_end < opens  # sorted, disjoint, not touching
        assert is_open(cal, opens)
        assert is_open(cal, closes - TICK)
        assert closes == end or not is_open(cal, closes)
        previous_end = closes
    assert sum((b - a for a, b in intervals), ZERO) == business_time_between(cal, start, end)


@SETTINGS
@given(calendars, instants)
def test_is_open_matches_a_tick_of_business_time(cal: BusinessCalendar, at: datetime) -> None:
    assert is_open(cal, at) == (business_time_between(cal, at, at + TICK) == TICK)


@SETTINGS
@given(calendars, instants, instants, pause_lists)
def test_pauses_never_increase_elapsed_time(
    cal: BusinessCalendar, start: datetime, now: datetime, pauses: list[Pause]
) -> None:
    elapsed = business_time_elapsed(cal, start, now, pauses)
    assert ZERO <= elapsed <= business_time_between(cal, start, now)
    assert business_time_elapsed(cal, start, now, []) == business_time_between(cal, start, now)
    if pauses:
        assert elapsed <= business_time_elapsed(cal, start, now, pauses[1:])
    assert business_time_elapsed(cal, start, now, pauses + pauses) == elapsed  # counted once


@SETTINGS
@given(calendars, instants, durations, pause_lists)
def test_due_with_pauses_is_when_elapsed_reaches_the_target(
    cal: BusinessCalendar, start: datetime, target: timedelta, pauses: list[Pause]
) -> None:
    due = due_with_pauses(cal, start, target, pauses)
    if due is None:
        assert any(end is None for _, end in pauses)
        return
    # Open pauses that start after the due instant do not move it.
    assert business_time_elapsed(cal, start, due, pauses) == target
    if target > ZERO:
        assert business_time_elapsed(cal, start, due - TICK, pauses) < target
    if not pauses:
        assert due == add_business_time(cal, start, target)
