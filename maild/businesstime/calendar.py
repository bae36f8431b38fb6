"""Business calendars and exact business-time maths: SLA clocks, and rules on opening hours.

An SLA target such as "first reply within 8 business hours" only means something together with a
calendar: the desk's time zone, its weekly opening hours and its public holidays. This module holds
that calendar as a frozen value and answers every question the SLA job asks about it with pure
functions of time, so the maths can be tested with tables and properties instead of waiting.

Conventions (the same in every function):

* **Instants are aware.** Every ``datetime`` argument must carry a time zone; a naive one raises
  ``ValueError`` because guessing its zone would shift deadlines silently. Results are returned in
  UTC. Internally all arithmetic is done in UTC, because Python subtracts two datetimes that share
  a ``tzinfo`` by their wall-clock readings and would get daylight-saving days wrong.
* **Intervals are half-open**, ``[opens, closes)``: the desk is open at its opening instant and
  closed at its closing instant.
* **Opening hours are local wall-clock times** in the calendar's zone, ``time`` values without a
  ``tzinfo``. ``time(0, 0)`` as the *end* of a range means "until midnight" (24:00, the start of
  the next day); it is the only way to write 24:00 because ``datetime.time`` cannot hold it. A
  range that runs over midnight is written as two ranges, one on each day.
* **Daylight saving is exact.** Each local wall-clock time is converted to a real instant via
  UTC, so on the spring change in Europe/Berlin a range 00:00-04:00 lasts 3 real hours and on the
  autumn change 5. Times that occur twice (autumn) use ``fold=0``, the first occurrence. Times that
  do not exist (spring) become the instant of the clock change, the first instant at which the
  wall clock reads at or after them. This map is monotonic, so ranges never invert, and splitting
  a range at any wall-clock time never changes its total length.
* **Holidays are local dates**: a listed date, or a ``(month, day)`` that recurs every year.
  A holiday closes the whole local day.
* **Searches are bounded.** Adding or subtracting business time looks at most ``HORIZON_DAYS``
  (about ten years) of calendar days and then raises ``ValueError`` instead of looping forever.
  Work is done one opening interval at a time (at most a handful a day), never minute by minute;
  a calendar that is open around the clock with no holidays takes a constant-time path.

This module holds the calendar value and the maths; maild/businesstime/intervals.py turns its
opening hours into UTC intervals (and keeps the memo `add_business_time` answers from).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from maild.businesstime.intervals import (
    HORIZON_DAYS,
    MIDNIGHT,
    TICK,
    ZERO,
    Interval,
    add_in_block,
    merged,
    pieces_backward,
    pieces_between,
    pieces_forward,
    wall_end_offset,
    wall_offset,
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FULL_DAY = ((MIDNIGHT, MIDNIGHT),)

Pause = tuple[datetime, datetime | None]
"""A span during which the SLA clock is stopped; an end of ``None`` means it is still running."""


@dataclass(frozen=True)
class BusinessCalendar:
    """When the desk counts time: a zone, weekly opening hours and holidays.

    ``hours`` maps a weekday (0 = Monday ... 6 = Sunday) to its opening ranges, each a
    ``(opens, closes)`` pair of local wall-clock times, sorted and not overlapping (ranges may
    touch). A weekday that is missing, or maps to ``()``, is closed. ``closes == time(0, 0)``
    means "until midnight", so ``(time(0, 0), time(0, 0))`` is a whole day.

    The calendar is validated on construction so that a mistake in the YAML is reported where it
    is loaded, not as a wrong deadline weeks later. ``hours`` is stored as a read-only copy.
    """

    name: str
    tz: ZoneInfo
    hours: Mapping[int, tuple[tuple[time, time], ...]] = field(hash=False)
    holidays: frozenset[date] = frozenset()
    recurring_holidays: frozenset[tuple[int, int]] = frozenset()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a business calendar needs a non-empty name")
        if not isinstance(self.tz, ZoneInfo):
            raise TypeError(f"calendar {self.name!r}: tz must be a zoneinfo.ZoneInfo")
        hours: dict[int, tuple[tuple[time, time], ...]] = {}
        for weekday, ranges in self.hours.items():
            if not isinstance(weekday, int) or not 0 <= weekday <= 6:
                raise ValueError(
                    f"calendar {self.name!r}: weekday {weekday!r} is not 0 (Monday) to 6 (Sunday)"
                )
            day = tuple((opens, closes) for opens, closes in ranges)
            _validate_day(self.name, weekday, day)
            hours[weekday] = day
        if not any(hours.values()):
            raise ValueError(
                f"calendar {self.name!r} has no opening hours at all, so no SLA could ever be met"
            )
        for month, day_of_month in self.recurring_holidays:
            try:
                date(2000, month, day_of_month)  # a leap year, so 29 February is accepted
            except (TypeError, ValueError):
                raise ValueError(
                    f"calendar {self.name!r}: recurring holiday {(month, day_of_month)!r} "
                    "is not a valid (month, day)"
                ) from None
        object.__setattr__(self, "hours", MappingProxyType(hours))
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        object.__setattr__(self, "recurring_holidays", frozenset(self.recurring_holidays))

    @classmethod
    def always_open(cls, name: str = "24x7", *, tz: ZoneInfo | None = None) -> BusinessCalendar:
        """The 24x7 calendar: every day 00:00-24:00, no holidays.

        Business time then equals elapsed real time. ``tz`` only matters for display; it
        defaults to UTC.
        """
        zone = tz if tz is not None else ZoneInfo("UTC")
        return cls(name=name, tz=zone, hours=dict.fromkeys(range(7), _FULL_DAY))

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is closed as a holiday."""
        return day in self.holidays or (day.month, day.day) in self.recurring_holidays


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def is_open(cal: BusinessCalendar, at: datetime) -> bool:
    """Whether business time is counting at the instant ``at`` (closing instants are closed)."""
    instant = _utc(at, "at")
    if _always_open(cal):
        return True
    return any(True for _ in pieces_between(cal, instant, instant + TICK))


def open_intervals(cal: BusinessCalendar, start: datetime, end: datetime) -> Iterator[Interval]:
    """The business time between ``start`` and ``end`` as UTC ``[opens, closes)`` intervals.

    Intervals are clipped to ``[start, end)``, sorted, non-empty, and merged where they touch
    (a desk open 18:00-24:00 and 00:00-02:00 yields one interval across midnight), so each one is
    a maximal stretch of business time. Arguments are checked eagerly; the intervals are produced
    lazily, one calendar day at a time.
    """
    begin = _utc(start, "start")
    finish = _utc(end, "end")
    if finish <= begin:
        return iter(())
    if _always_open(cal):
        return iter(((begin, finish),))
    return merged(pieces_between(cal, begin, finish))


def business_time_between(cal: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """How much business time lies between ``start`` and ``end``; zero if ``end <= start``."""
    total = ZERO
    for opens, closes in open_intervals(cal, start, end):
        total += closes - opens
    return total


def add_business_time(cal: BusinessCalendar, start: datetime, duration: timedelta) -> datetime:
    """The instant at which ``duration`` of business time has elapsed after ``start``.

    For a positive duration this is the earliest such instant: a target that is used up exactly
    at closing time is due at the closing time (Friday 17:00), not at the next opening (Monday
    08:00). A zero duration returns the next moment that counts: ``start`` itself if the desk is
    open then, otherwise the next opening. Either way
    ``business_time_between(cal, start, result) == duration``.

    Raises ``ValueError`` for a negative duration or when the horizon is exhausted.
    """
    begin = _utc(start, "start")
    _check_duration(duration, "duration")
    if _always_open(cal):
        return begin + duration
    found = add_in_block(cal, begin, duration)
    return found if found is not None else _add_walking(cal, begin, duration)


def _add_walking(cal: BusinessCalendar, begin: datetime, duration: timedelta) -> datetime:
    """`add_business_time` by walking the opening intervals one by one, up to the horizon."""
    remaining = duration
    for opens, closes in pieces_forward(cal, begin):
        if remaining <= closes - opens:
            return opens + remaining
        remaining -= closes - opens
    raise ValueError(_horizon_message(cal, duration, "after", begin))


def subtract_business_time(cal: BusinessCalendar, end: datetime, duration: timedelta) -> datetime:
    """The latest instant before ``end`` from which exactly ``duration`` of business time remains.

    This is how a warning "at 80 % of the target" is placed: subtract 20 % of the target from the
    due instant. If the remaining time starts exactly at an opening, the opening is returned
    (not the previous closing), so for an open instant ``s``
    ``subtract_business_time(cal, add_business_time(cal, s, d), d) == s``. A zero duration returns
    ``end``. Always ``business_time_between(cal, result, end) == duration``.

    Raises ``ValueError`` for a negative duration or when the horizon is exhausted.
    """
    finish = _utc(end, "end")
    _check_duration(duration, "duration")
    if duration == ZERO:
        return finish
    if _always_open(cal):
        return finish - duration
    remaining = duration
    for opens, closes in pieces_backward(cal, finish):
        if remaining <= closes - opens:
            return closes - remaining
        remaining -= closes - opens
    raise ValueError(_horizon_message(cal, duration, "before", finish))


def business_time_elapsed(
    cal: BusinessCalendar,
    start: datetime,
    now: datetime,
    pauses: Sequence[Pause],
) -> timedelta:
    """Business time on the SLA clock from ``start`` to ``now``, not counting the pauses.

    A pause is a ``(from, until)`` span while the ticket waits for the customer; ``until=None``
    means the pause is still running at ``now``. Overlapping pauses are merged first, so no
    stretch of time is subtracted twice, and parts of pauses outside ``[start, now]`` are ignored.
    """
    begin = _utc(start, "start")
    instant = _utc(now, "now")
    total = business_time_between(cal, begin, instant)
    for paused, resumed in _merged_pauses(pauses):
        until = instant if resumed is None else min(resumed, instant)
        total -= business_time_between(cal, max(paused, begin), until)
    return total


def due_with_pauses(
    cal: BusinessCalendar,
    start: datetime,
    target: timedelta,
    pauses: Sequence[Pause],
) -> datetime | None:
    """When the SLA clock started at ``start`` reaches ``target``, given the pauses so far.

    Returns ``None`` while a pause is open (the clock is stopped, so the due instant is not yet
    known), unless the target was already reached before that pause began: a breach that has
    happened stays visible when the ticket is later set to wait for the customer. The instant
    returned is the earliest at which ``business_time_elapsed`` equals ``target``; a zero target
    is due at the first moment that counts (open and not paused), as in ``add_business_time``.
    """
    cursor = _utc(start, "start")
    _check_duration(target, "target")
    remaining = target
    for paused, resumed in _merged_pauses(pauses):
        if resumed is not None and resumed <= cursor:
            continue
        if paused > cursor:
            reached = _reach_within(cal, cursor, paused, remaining)
            if isinstance(reached, datetime):
                return reached
            remaining = reached
        if resumed is None:
            return None
        cursor = max(cursor, resumed)
    return add_business_time(cal, cursor, remaining)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _validate_day(name: str, weekday: int, ranges: tuple[tuple[time, time], ...]) -> None:
    """Reject ranges that are not times, inverted, empty, unsorted or overlapping."""
    label = f"calendar {name!r}, {_WEEKDAYS[weekday]}"
    previous: tuple[time, time] | None = None
    for opens, closes in ranges:
        if not isinstance(opens, time) or not isinstance(closes, time):
            raise TypeError(f"{label}: range {opens!r}-{closes!r} must be two datetime.time values")
        shown = f"{_show(opens)}-{_show(closes, end=True)}"
        if opens.tzinfo is not None or closes.tzinfo is not None:
            raise ValueError(
                f"{label}: range {shown} must use local wall-clock times without a tzinfo; "
                "the calendar's tz applies"
            )
        if wall_end_offset(closes) <= wall_offset(opens):
            raise ValueError(
                f"{label}: range {shown} ends before it starts; split a range that runs over "
                "midnight into two days (an end of 00:00 means midnight)"
            )
        if previous is not None and wall_end_offset(previous[1]) > wall_offset(opens):
            raise ValueError(
                f"{label}: ranges {_show(previous[0])}-{_show(previous[1], end=True)} and "
                f"{shown} overlap or are out of order; ranges must be sorted and must not overlap"
            )
        previous = (opens, closes)


def _show(value: time, *, end: bool = False) -> str:
    """A range boundary as an operator wrote it, with an end of midnight shown as 24:00."""
    if end and value == MIDNIGHT:
        return "24:00"
    spec = "minutes" if value.second == 0 and value.microsecond == 0 else "auto"
    return value.isoformat(timespec=spec)


def _check_duration(value: timedelta, what: str) -> None:
    if value < ZERO:
        raise ValueError(f"{what} must not be negative, got {value}")


def _horizon_message(
    cal: BusinessCalendar, duration: timedelta, direction: str, instant: datetime
) -> str:
    what = "no business time at all" if duration == ZERO else f"not {duration} of business time"
    return (
        f"calendar {cal.name!r} has {what} within {HORIZON_DAYS} days {direction} "
        f"{instant.isoformat()} (the search horizon); check its opening hours and holidays"
    )


def _utc(value: datetime, what: str) -> datetime:
    """``value`` as a UTC instant; naive datetimes are refused rather than guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{what} {value.isoformat()} is outside the supported range") from None


def _always_open(cal: BusinessCalendar) -> bool:
    """Whether every instant counts, so the maths reduces to plain subtraction."""
    if cal.holidays or cal.recurring_holidays:
        return False
    return all(cal.hours.get(weekday) == _FULL_DAY for weekday in range(7))


# --------------------------------------------------------------------------------------------
# Pauses
# --------------------------------------------------------------------------------------------


def _merged_pauses(pauses: Sequence[Pause]) -> list[Pause]:
    """Pauses in UTC, sorted and merged, so overlapping ones count once; ``None`` = still open."""
    spans: list[Pause] = []
    for index, (paused, resumed) in enumerate(pauses):
        begin = _utc(paused, f"pauses[{index}] start")
        finish = None if resumed is None else _utc(resumed, f"pauses[{index}] end")
        if finish is not None and finish < begin:
            raise ValueError(
                f"pauses[{index}] ends at {finish.isoformat()}, before it starts at "
                f"{begin.isoformat()}"
            )
        spans.append((begin, finish))
    spans.sort(key=lambda span: span[0])
    merged: list[Pause] = []
    for begin, finish in spans:
        if merged and (merged[-1][1] is None or begin <= merged[-1][1]):
            head, tail = merged[-1]
            joined = None if tail is None or finish is None else max(tail, finish)
            merged[-1] = (head, joined)
        else:
            merged.append((begin, finish))
    return merged


def _reach_within(
    cal: BusinessCalendar, start: datetime, end: datetime, remaining: timedelta
) -> datetime | timedelta:
    """Where ``remaining`` business time runs out inside ``[start, end)``, or what is left over.

    A zero remainder is reached at the first open instant of the span, if it has one.
    """
    available = business_time_between(cal, start, end)
    if available > ZERO and available >= remaining:
        return add_business_time(cal, start, remaining)
    return remaining - available
