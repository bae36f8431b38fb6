"""Business time between many pairs of instants, fast: running sums per day of a calendar.

`maild.businesstime.calendar.business_time_between` walks a calendar one day at a time, which is
right for one SLA deadline but slow for a year's resolutions that each span weeks. Here each
UTC day's opening intervals are computed once per calendar (by the SLA calendar's own
`open_intervals`, so the two never disagree) and their lengths summed into a running total;
the business time between two instants is then the difference of two totals, each a lookup
plus the open part of one day. Instants are epoch seconds, as the report's query gives them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from maild.businesstime.calendar import BusinessCalendar, open_intervals

_DAY = 86400.0

Intervals = tuple[tuple[float, float], ...]


class BusinessClock:
    """Business seconds of one calendar since a moving origin (the earliest day asked)."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self._first: int | None = None  # the origin: a UTC day number
        self._running: list[float] = [0.0]  # business seconds from the origin to each midnight
        self._days: dict[int, Intervals] = {}
        whole = ((datetime.min.time(), datetime.min.time()),)
        self._always = (all(calendar.hours.get(d) == whole for d in range(7))
                        and not calendar.holidays and not calendar.recurring_holidays)

    def _intervals(self, day: int) -> Intervals:
        found = self._days.get(day)
        if found is None:
            start = datetime.fromtimestamp(day * _DAY, UTC)
            found = self._days[day] = tuple(
                (o.timestamp(), c.timestamp())
                for o, c in open_intervals(self.calendar, start, start + timedelta(days=1)))
        return found

    def _length(self, day: int) -> float:
        return sum(c - o for o, c in self._intervals(day))

    def _cover(self, day: int) -> int:
        """The index of `day`'s midnight in the running sums, extending them as needed."""
        if self._first is None:
            self._first = day
        elif day < self._first:
            head = [0.0]
            for d in range(day, self._first):
                head.append(head[-1] + self._length(d))
            shift = head[-1]
            self._running = head[:-1] + [v + shift for v in self._running]
            self._first = day
        index = day - self._first
        while len(self._running) <= index:
            self._running.append(self._running[-1] + self._length(
                self._first + len(self._running) - 1))
        return index

    def _total(self, at: float) -> float:
        day = math.floor(at / _DAY)
        within = sum(min(at, c) - o for o, c in self._intervals(day) if o < at)
        return self._running[self._cover(day)] + within

    def seconds(self, start: float, end: float) -> float:
        """Business seconds in ``[start, end)`` (epoch seconds); zero unless end > start."""
        if end <= start:
            return 0.0
        if self._always:
            return end - start
        self._cover(math.floor(start / _DAY))  # the origin first: it may move back
        return self._total(end) - self._total(start)
