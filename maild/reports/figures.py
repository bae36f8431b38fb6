"""From the report's rows to its figures: pure, table-tested (tests/test_report.py).

The KPI definitions (README "Reports") in code:

- tickets created / resolved / closed / reopened: distinct tickets with such an event in the
  period; resolved means set to resolved, or closed without being resolved first.
- messages_in: inbound customer messages (automatic mail not counted); replies_out: agents'
  replies and canned answers the SMTP server accepted.
- first reply time: ticket creation to the first reply or canned answer that reached the
  customer, for tickets whose first one went out in the period; resolution time: creation to
  the ticket's last resolution in the period. Mean, median and 90th percentile (linear
  interpolation between ranks, as PostgreSQL's percentile_cont), in calendar hours and in
  business hours of the calendar of the ticket's SLA policy (tickets without a known policy
  count in calendar hours only).
- SLA met rate: of those tickets whose policy has the target, the share without a breach of
  it; warnings and breaches: alerts raised in the period.
- escalation rate, one-touch rate, reopen rate, canned-only rate: shares of the tickets
  resolved in the period that went above their starting level / got exactly one reply and
  were never reopened / were reopened / were answered by canned answers alone (as of the
  period's end).
- csat: surveys queued in the period; each rated ticket's latest rating in the period;
  mean score; satisfied = 4 or 5.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from maild.businesstime.calendar import BusinessCalendar
from maild.reports.business import BusinessClock
from maild.reports.period import Period, day_of, local_day, week_of
from maild.reports.rows import AGE_BUCKETS, OPEN, Keys, Rating, Rows

if TYPE_CHECKING:
    from maild.sla.config import SlaConfig

DIMENSIONS = ("department", "level", "agent", "mailbox")
FIRST_REPLY_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, 24.0, 48.0, 72.0, 168.0)  # hours; last: and more
SATISFIED = 4
LEVELS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Policies:
    """What the figures need of the SLA configuration, by policy name."""

    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)
    first_response: frozenset[str] = frozenset()  # policies with a first-response target
    resolution: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sla: SlaConfig) -> Policies:
        return cls(
            calendars={p.name: p.calendar for p in sla.policies},
            first_response=frozenset(p.name for p in sla.policies
                                     if p.spec.first_response is not None),
            resolution=frozenset(p.name for p in sla.policies
                                 if p.spec.resolution is not None))


@dataclass(frozen=True)
class Times:
    count: int
    mean_h: float | None
    median_h: float | None
    p90_h: float | None
    business_count: int
    mean_business_h: float | None
    median_business_h: float | None
    p90_business_h: float | None


@dataclass(frozen=True)
class Sla:
    first_response_met_rate: float | None
    resolution_met_rate: float | None
    warnings: int
    breaches: int


@dataclass(frozen=True)
class Csat:
    surveys_sent: int
    responses: int
    response_rate: float | None
    mean: float | None
    satisfied_rate: float | None


@dataclass(frozen=True)
class Kpis:
    tickets_created: int
    tickets_resolved: int
    tickets_closed: int
    tickets_reopened: int
    messages_in: int
    replies_out: int
    first_reply: Times
    resolution: Times
    sla: Sla
    escalation_rate: float | None
    one_touch_rate: float | None
    reopen_rate: float | None
    canned_only_rate: float | None
    csat: Csat


@dataclass(frozen=True)
class Day:
    day: date
    tickets_created: int
    messages_in: int
    replies_out: int
    resolved: int
    closed: int
    reopened: int
    created_by_department: Mapping[str, int]


@dataclass(frozen=True)
class Week:
    week: date  # its Monday
    first_response_met_rate: float | None
    resolution_met_rate: float | None
    csat_responses: int
    csat_mean: float | None


@dataclass(frozen=True)
class Backlog:
    open: int
    by_age: Mapping[str, int]
    by_status: Mapping[str, int]


@dataclass(frozen=True)
class Report:
    period: Period
    totals: Kpis
    groups: Mapping[str, Mapping[str, Kpis]]  # dimension -> key -> figures
    escalation_by_level: Mapping[str, float | None]  # by the level tickets started at
    backlog: Backlog
    days: Sequence[Day]
    weeks: Sequence[Week]
    first_reply_histogram: Sequence[int]  # tickets per FIRST_REPLY_BINS bin


def last_day(period: Period) -> date:
    return local_day(period.end - timedelta(microseconds=1), period.tz)


def key_names(keys: Keys) -> tuple[str, str, str, str]:
    department, level, agent, mailbox = keys
    return (department or "none", str(level), agent or "unassigned", mailbox or "none")


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _rate(part: int, whole: int) -> float | None:
    return min(1.0, part / whole) if whole else None


def _hours(seconds: Iterable[float]) -> tuple[int, float | None, float | None, float | None]:
    ordered = sorted(s / 3600.0 for s in seconds)
    if not ordered:
        return 0, None, None, None
    return (len(ordered), sum(ordered) / len(ordered), quantile(ordered, 0.5),
            quantile(ordered, 0.9))


def times(calendar: list[float], business: list[float]) -> Times:
    return Times(*_hours(calendar), *_hours(business))


@dataclass
class _Acc:
    """What one group (the totals, or one key of one dimension) adds up."""

    created: int = 0
    closed: int = 0
    reopened: int = 0
    messages_in: int = 0
    replies_out: int = 0
    first: list[float] = field(default_factory=list)
    first_business: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    resolution_business: list[float] = field(default_factory=list)
    fr_measured: int = 0
    fr_met: int = 0
    res_measured: int = 0
    res_met: int = 0
    warnings: int = 0
    breaches: int = 0
    resolved_rows: int = 0
    escalated: int = 0
    one_touch: int = 0
    reopen_rows: int = 0
    canned_only: int = 0
    surveys: int = 0
    scores: list[int] = field(default_factory=list)

    def add(self, other: _Acc) -> None:
        for f in dataclasses.fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, list):
                mine.extend(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))

    def kpis(self) -> Kpis:
        n = self.resolved_rows
        satisfied = sum(1 for s in self.scores if s >= SATISFIED)
        return Kpis(
            tickets_created=self.created, tickets_resolved=self.resolved_rows,
            tickets_closed=self.closed, tickets_reopened=self.reopened,
            messages_in=self.messages_in, replies_out=self.replies_out,
            first_reply=times(self.first, self.first_business),
            resolution=times(self.resolution, self.resolution_business),
            sla=Sla(_rate(self.fr_met, self.fr_measured), _rate(self.res_met, self.res_measured),
                    self.warnings, self.breaches),
            escalation_rate=_rate(self.escalated, n), one_touch_rate=_rate(self.one_touch, n),
            reopen_rate=_rate(self.reopen_rows, n), canned_only_rate=_rate(self.canned_only, n),
            csat=Csat(self.surveys, len(self.scores), _rate(len(self.scores), self.surveys),
                      sum(self.scores) / len(self.scores) if self.scores else None,
                      _rate(satisfied, len(self.scores))),
        )


class _Groups:
    """One accumulator per key combination while rows are added (a row touches one), summed
    into the totals and each dimension's groups at the end."""

    def __init__(self) -> None:
        self._combos: dict[Keys, _Acc] = {}

    def of(self, keys: Keys) -> _Acc:
        found = self._combos.get(keys)
        if found is None:
            found = self._combos[keys] = _Acc()
        return found

    def finish(self) -> tuple[_Acc, dict[str, dict[str, _Acc]]]:
        total = _Acc()
        by: dict[str, dict[str, _Acc]] = {d: {} for d in DIMENSIONS}
        by["level"] = {str(level): _Acc() for level in LEVELS}  # all four, even if idle
        for keys, acc in self._combos.items():
            total.add(acc)
            for dimension, name in zip(DIMENSIONS, key_names(keys), strict=True):
                group = by[dimension].get(name)
                if group is None:
                    group = by[dimension][name] = _Acc()
                group.add(acc)
        return total, by


class _Measure:
    """Business seconds of a ticket's interval, by the calendar of its policy."""

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self._clocks: dict[str | None, BusinessClock | None] = {}
        self._calendars: dict[str, BusinessClock] = {}

    def _clock(self, policy: str | None) -> BusinessClock | None:
        calendar = self.policies.calendars.get(policy or "")
        if calendar is None:
            return None
        clock = self._calendars.get(calendar.name)
        if clock is None:
            clock = self._calendars[calendar.name] = BusinessClock(calendar)
        return clock

    def business(self, policy: str | None, start: float, end: float) -> float | None:
        if policy in self._clocks:
            clock = self._clocks[policy]
        else:
            clock = self._clocks[policy] = self._clock(policy)
        return None if clock is None else clock.seconds(start, end)

    def has_target(self, policy: str | None, targets: frozenset[str]) -> bool:
        if policy is None:
            return False
        return policy in targets or policy not in self.policies.calendars


def _volume(rows: Rows, groups: _Groups) -> list[Day]:
    days: dict[int, list[int]] = defaultdict(lambda: [0] * 6)
    by_dept: dict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in rows.days:
        counts = (d.created, d.messages_in, d.replies_out, d.resolved, d.closed, d.reopened)
        total = days[d.day]
        for i, n in enumerate(counts):
            total[i] += n
        by_dept[d.day][key_names(d.keys)[0]] += d.created
        acc = groups.of(d.keys)
        acc.created += d.created
        acc.messages_in += d.messages_in
        acc.replies_out += d.replies_out
    for t in rows.tickets:
        acc = groups.of(t.keys)
        acc.closed += t.closed
        acc.reopened += t.reopened
    first, last = local_day(rows.period.start, rows.period.tz), last_day(rows.period)
    out = []
    for number in range((first - day_of(0)).days, (last - day_of(0)).days + 1):
        c = days.get(number, [0] * 6)
        out.append(Day(day_of(number), c[0], c[1], c[2], c[3], c[4], c[5],
                       created_by_department=dict(by_dept.get(number, {}))))
    return out


class _Weekly:
    def __init__(self) -> None:
        self.fr: defaultdict[date, list[int]] = defaultdict(lambda: [0, 0])
        self.res: defaultdict[date, list[int]] = defaultdict(lambda: [0, 0])
        self.scores: defaultdict[date, list[int]] = defaultdict(list)

    def weeks(self, period: Period) -> list[Week]:
        first = week_of(local_day(period.start, period.tz))
        last = week_of(last_day(period))
        out = []
        week = first
        while week <= last:
            fr, res, scores = self.fr[week], self.res[week], self.scores[week]
            out.append(Week(week, _rate(fr[1], fr[0]), _rate(res[1], res[0]), len(scores),
                            sum(scores) / len(scores) if scores else None))
            week = date.fromordinal(week.toordinal() + 7)
        return out


def _latest(ratings: Sequence[Rating]) -> list[Rating]:
    latest: dict[int, Rating] = {}
    for r in ratings:
        held = latest.get(r.ticket_id)
        if held is None or r.at >= held.at:
            latest[r.ticket_id] = r
    return list(latest.values())


def _histogram(hours: Iterable[float]) -> list[int]:
    counts = [0] * len(FIRST_REPLY_BINS)
    for h in hours:
        i = len(FIRST_REPLY_BINS) - 1
        while FIRST_REPLY_BINS[i] > h:
            i -= 1
        counts[i] += 1
    return counts


def _first_replies(rows: Rows, groups: _Groups, measure: _Measure, weekly: _Weekly) -> None:
    weeks: dict[int, date] = {}
    for f in rows.first_replies:
        seconds = f.replied - f.created
        business = measure.business(f.policy, f.created, f.replied)
        target = measure.has_target(f.policy, measure.policies.first_response)
        if target:
            monday = weeks.get(f.day)
            if monday is None:
                monday = weeks[f.day] = week_of(day_of(f.day))
            week = weekly.fr[monday]
            week[0] += 1
            week[1] += not f.breached
        acc = groups.of(f.keys)
        acc.first.append(seconds)
        if business is not None:
            acc.first_business.append(business)
        if target:
            acc.fr_measured += 1
            acc.fr_met += not f.breached


def _resolutions(rows: Rows, groups: _Groups, measure: _Measure,
                 weekly: _Weekly) -> dict[str, float | None]:
    escalation: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    weeks: dict[int, date] = {}
    for r in rows.resolutions:
        seconds = r.resolved - r.created
        business = measure.business(r.policy, r.created, r.resolved)
        target = measure.has_target(r.policy, measure.policies.resolution)
        if target:
            monday = weeks.get(r.day)
            if monday is None:
                monday = weeks[r.day] = week_of(day_of(r.day))
            week = weekly.res[monday]
            week[0] += 1
            week[1] += not r.breached
        escalation[str(r.start_level)][0] += 1
        escalation[str(r.start_level)][1] += r.escalations > 0
        acc = groups.of(r.keys)
        acc.resolution.append(seconds)
        if business is not None:
            acc.resolution_business.append(business)
        if target:
            acc.res_measured += 1
            acc.res_met += not r.breached
        acc.resolved_rows += 1
        acc.escalated += r.escalations > 0
        acc.one_touch += r.replies + r.answers == 1 and r.reopens == 0
        acc.reopen_rows += r.reopens > 0
        acc.canned_only += r.answers > 0 and r.replies == 0
    return {level: _rate(e, n) for level, (n, e) in sorted(escalation.items())}


def _alerts_and_csat(rows: Rows, groups: _Groups, weekly: _Weekly) -> None:
    for a in rows.alerts:
        acc = groups.of(a.keys)
        if a.kind == "warn":
            acc.warnings += a.count
        else:
            acc.breaches += a.count
    for s in rows.surveys:
        acc = groups.of(s.keys)
        acc.surveys += s.count
    for rating in _latest(rows.ratings):
        weekly.scores[week_of(local_day(rating.at, rows.period.tz))].append(rating.score)
        acc = groups.of(rating.keys)
        acc.scores.append(rating.score)


def _backlog(rows: Rows) -> Backlog:
    by_age = dict.fromkeys(AGE_BUCKETS, 0)
    by_status = dict.fromkeys(OPEN, 0)
    for b in rows.backlog:
        by_age[b.age] += b.count
        by_status[b.status] = by_status.get(b.status, 0) + b.count
    return Backlog(sum(by_age.values()), by_age, by_status)


def compute(rows: Rows, policies: Policies) -> Report:
    """The report's figures from its rows."""
    groups = _Groups()
    measure = _Measure(policies)
    weekly = _Weekly()
    days = _volume(rows, groups)
    _first_replies(rows, groups, measure, weekly)
    escalation = _resolutions(rows, groups, measure, weekly)
    _alerts_and_csat(rows, groups, weekly)
    total, by = groups.finish()
    return Report(
        period=rows.period, totals=total.kpis(),
        groups={d: {k: acc.kpis() for k, acc in sorted(by[d].items())} for d in DIMENSIONS},
        escalation_by_level=escalation, backlog=_backlog(rows),
        days=days, weeks=weekly.weeks(rows.period),
        first_reply_histogram=_histogram((f.replied - f.created) / 3600
                                         for f in rows.first_replies),
    )
