"""Business time between many pairs of instants, fast: running sums per day of a calendar.

`maild.sla.calendar.business_time_between` walks a calendar one day at a time, which is
right for one SLA deadline but slow for a year's resolutions that each span weeks. Here the
business seconds of each UTC day are computed once per calendar (by that same function, so
the two can never disagree) and summed into a running total; the business time between two
instants is then the difference of two totals, each one partial day plus a lookup.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from maild.sla.calendar import BusinessCalendar, business_time_between

_DAY = timedelta(days=1)


class BusinessClock:
    """Business seconds of one calendar since a moving origin (the earliest day asked)."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self._first: date | None = None
        self._running: list[float] = [0.0]  # business seconds from _first to each midnight
        self._always = all(calendar.hours.get(d) == ((time(0), time(0)),) for d in range(7)) \
            and not calendar.holidays and not calendar.recurring_holidays

    def _day(self, day: date) -> float:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return business_time_between(self.calendar, start, start + _DAY).total_seconds()

    def _cover(self, day: date) -> int:
        """The index of `day`'s midnight in the running sums, extending them as needed."""
        if self._first is None or day < self._first:
            old_first = self._first
            self._first = day
            if old_first is None:
                self._running = [0.0]
            else:
                head = [0.0]
                d = day
                while d < old_first:
                    head.append(head[-1] + self._day(d))
                    d += _DAY
                shift = head[-1]
                self._running = head[:-1] + [v + shift for v in self._running]
        index = (day - self._first).days
        while len(self._running) <= index:
            last = self._first + timedelta(days=len(self._running) - 1)
            self._running.append(self._running[-1] + self._day(last))
        return index

    def _total(self, at: datetime) -> float:
        at = at.astimezone(UTC)
        day = at.date()
        index = self._cover(day)
        start = datetime.combine(day, time(0), tzinfo=UTC)
        within = business_time_between(self.calendar, start, at).total_seconds()
        return self._running[index] + within

    def seconds(self, start: datetime, end: datetime) -> float:
        """Business seconds in ``[start, end)``; zero when end is not after start."""
        if end <= start:
            return 0.0
        if self._always:
            return (end - start).total_seconds()
        self._cover(start.astimezone(UTC).date())  # the origin first: it may move back
        return self._total(end) - self._total(start)
