"""A business calendar's opening hours as UTC intervals (maild/businesstime/calendar.py does
the maths with them).

Each local date's opening ranges become real instants through the calendar's time zone
(memoised per date); the pieces after, before or between instants are produced one day at a
time. `add_business_time` mostly answers from blocks of these intervals with the
business time counted up (`add_in_block`). The conventions (half-open intervals, exact
daylight saving, local holidays, a bounded search) are calendar.py's.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from maild.businesstime.calendar import BusinessCalendar

HORIZON_DAYS = 3653
"""How many calendar days (ten years, leap days included) add and subtract search at most."""

MIDNIGHT = time(0, 0)
DAY = timedelta(days=1)
ZERO = timedelta(0)
TICK = timedelta(microseconds=1)
# Keep two days clear of the ends of the calendar so that "the day before" and "the next
# midnight" can always be built without OverflowError.
FIRST_DAY = date.min + 2 * DAY
LAST_DAY = date.max - 2 * DAY

Interval = tuple[datetime, datetime]
"""A half-open ``[start, end)`` span of business time, both ends UTC-aware."""


# --------------------------------------------------------------------------------------------
# Wall-clock time to instants
# --------------------------------------------------------------------------------------------


def wall_offset(value: time) -> timedelta:
    return timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )


def wall_end_offset(value: time) -> timedelta:
    """Offset of a range end from the start of its day; 00:00 as an end means 24:00."""
    return DAY if value == MIDNIGHT else wall_offset(value)


def _reading(tz: ZoneInfo, instant: datetime) -> datetime:
    """What a wall clock in ``tz`` shows at ``instant``, as a naive datetime."""
    return instant.astimezone(tz).replace(tzinfo=None)


def _wall_to_utc(tz: ZoneInfo, wall: datetime) -> datetime:
    """The instant a naive local ``wall`` time stands for, deterministically.

    Ambiguous times (the repeated hour in autumn) take ``fold=0``, the first occurrence. A
    nonexistent time (skipped in spring) becomes the instant of the clock change: ``fold=0``
    and ``fold=1`` give two instants on either side of the change, and the change is found
    between them by bisection (a few dozen steps, only for times inside a gap).
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _reading(tz, first) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    # Invariant: the clock reads before ``wall`` at ``low`` and at or after it at ``high``.
    while high - low > TICK:
        middle = low + (high - low) // 2
        if _reading(tz, middle) >= wall:
            high = middle
        else:
            low = middle
    return high


# --------------------------------------------------------------------------------------------
# Intervals
# --------------------------------------------------------------------------------------------


def _local_date(cal: BusinessCalendar, instant: datetime) -> date:
    return instant.astimezone(cal.tz).date()


@functools.lru_cache(maxsize=16384)
def _day_intervals(cal: BusinessCalendar, day: date) -> tuple[Interval, ...]:
    """The non-empty UTC opening intervals of one local date, in order.

    Memoised: an SLA pass asks the same few dates of the same calendars for every ticket,
    and a calendar is immutable.
    """
    if cal.is_holiday(day):
        return ()
    midnight = datetime.combine(day, MIDNIGHT)
    intervals: list[Interval] = []
    for opens, closes in cal.hours.get(day.weekday(), ()):
        begin = _wall_to_utc(cal.tz, midnight + wall_offset(opens))
        finish = _wall_to_utc(cal.tz, midnight + wall_end_offset(closes))
        if begin < finish:  # a range wholly inside a spring gap is empty
            intervals.append((begin, finish))
    return tuple(intervals)


def _shift(day: date, days: int) -> date:
    """``day`` moved by ``days``, stopping at the ends of the representable range."""
    try:
        return day + days * DAY
    except OverflowError:
        return LAST_DAY if days > 0 else FIRST_DAY


def _days(first: date, last: date, *, backwards: bool = False) -> Iterator[date]:
    """Local dates from ``first`` to ``last`` inclusive, kept inside the representable range."""
    low, high = max(first, FIRST_DAY), min(last, LAST_DAY)
    if low > high:
        return
    count = (high - low).days + 1
    for index in range(count):
        yield high - index * DAY if backwards else low + index * DAY


_BLOCK_DAYS = 365
"""A block's own span of days: the instants whose UTC date falls in it are answered from it."""
_BLOCK_AHEAD = 2 * _BLOCK_DAYS
"""Days past its own span that a block holds: targets reaching further are walked."""


@dataclass(frozen=True, slots=True)
class _Block:
    """A calendar's opening intervals over some three years of local dates (a year of its own
    and two after it), each with the business time before it counted from the first.

    `add_business_time` is then two bisections, not a walk day by day: the interval in which
    ``start`` falls (or the next), then the interval in which the business time before
    ``start`` plus the duration is reached. An SLA pass and a re-time of every open ticket ask
    this a few times per ticket (bench.sla); the answer is the walk's exactly
    (tests/test_sla_calendar.py holds the two to each other).
    """

    opens: list[datetime]
    closes: list[datetime]
    before: list[timedelta]  # business time in the intervals before this one
    through: list[timedelta]  # ... and in this one


@functools.lru_cache(maxsize=64)
def _block(cal: BusinessCalendar, number: int) -> _Block:
    """Block `number` of the calendar: the one of the instants whose UTC date's ordinal
    divided by `_BLOCK_DAYS` is `number`. Memoised as `_day_intervals` is."""
    # An instant's local date is within a day of its UTC date: two days of margin before the
    # block's own span hold every interval the walk from such an instant would look at.
    first = date.fromordinal(max(number * _BLOCK_DAYS - 2, FIRST_DAY.toordinal()))
    last = min(_shift(first, _BLOCK_DAYS + _BLOCK_AHEAD + 2), LAST_DAY)
    opens: list[datetime] = []
    closes: list[datetime] = []
    before: list[timedelta] = []
    through: list[timedelta] = []
    total = ZERO
    for day in _days(first, last):
        for begin, finish in _day_intervals(cal, day):
            opens.append(begin)
            closes.append(finish)
            before.append(total)
            total += finish - begin
            through.append(total)
    return _Block(opens, closes, before, through)


def add_in_block(cal: BusinessCalendar, begin: datetime, duration: timedelta) -> datetime | None:
    """`add_business_time` from the block of ``begin``; None when the answer lies beyond it."""
    block = _block(cal, begin.toordinal() // _BLOCK_DAYS)
    closes = block.closes
    here = bisect_right(closes, begin)  # the first interval that closes after ``begin``
    if here == len(closes):
        return None
    opens = block.opens[here]
    goal = block.before[here] + (begin - opens if begin > opens else ZERO) + duration
    there = bisect_left(block.through, goal, here)  # the first interval that reaches the goal
    if there == len(closes):
        return None
    return block.opens[there] + (goal - block.before[there])


def pieces_between(cal: BusinessCalendar, start: datetime, end: datetime) -> Iterator[Interval]:
    """Per-range opening intervals clipped to ``[start, end)``; they may touch."""
    # A day's intervals lie within that local day, but look one day either side so that odd
    # zones (a clock change at midnight) cannot hide a piece.
    first = _shift(_local_date(cal, start), -1)
    last = _shift(_local_date(cal, end), 1)
    for day in _days(first, last):
        for opens, closes in _day_intervals(cal, day):
            begin, finish = max(opens, start), min(closes, end)
            if begin < finish:
                yield begin, finish


def pieces_forward(cal: BusinessCalendar, start: datetime) -> Iterator[Interval]:
    """Opening intervals after ``start``, clipped to it, up to the horizon."""
    first = _shift(_local_date(cal, start), -1)
    for day in _days(first, _shift(first, HORIZON_DAYS + 1)):
        for opens, closes in _day_intervals(cal, day):
            if closes > start:
                yield max(opens, start), closes


def pieces_backward(cal: BusinessCalendar, end: datetime) -> Iterator[Interval]:
    """Opening intervals before ``end``, clipped to it, latest first, back to the horizon."""
    last = _shift(_local_date(cal, end), 1)
    for day in _days(_shift(last, -(HORIZON_DAYS + 1)), last, backwards=True):
        for opens, closes in reversed(_day_intervals(cal, day)):
            if opens < end:
                yield opens, min(closes, end)


def merged(pieces: Iterable[Interval]) -> Iterator[Interval]:
    """Sorted intervals with touching or overlapping neighbours joined."""
    pending: Interval | None = None
    for begin, finish in pieces:
        if pending is None:
            pending = (begin, finish)
        elif begin <= pending[1]:
            pending = (pending[0], max(pending[1], finish))
        else:
            yield pending
            pending = (begin, finish)
    if pending is not None:
        yield pending
