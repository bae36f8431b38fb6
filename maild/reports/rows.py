"""The rows a report's figures are computed from: what `reader` reads from the database
and `figures` turns into KPIs. Times are epoch seconds, days local day numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maild.reports.period import Period

OPEN = ("new", "open", "waiting_customer")
AGE_BUCKETS = ("<1d", "1-3d", "3-7d", ">7d")

Keys = tuple[str | None, int, str | None, str | None]
"""department, level, agent (the assignee), mailbox."""


@dataclass(frozen=True, slots=True)
class DayCount:
    day: int  # local day number (days since 1970-01-01)
    keys: Keys
    created: int
    messages_in: int
    replies_out: int
    resolved: int
    closed: int
    reopened: int


@dataclass(frozen=True, slots=True)
class TicketCount:
    """Distinct tickets closed and reopened per key combination over the whole period
    (created: one event a ticket, so the daily counts add up; resolved: one row a ticket
    in `resolutions`)."""

    keys: Keys
    closed: int
    reopened: int


@dataclass(frozen=True, slots=True)
class FirstReply:
    keys: Keys
    created: float  # epoch seconds
    replied: float
    day: int  # the local day of the reply
    policy: str | None
    breached: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    keys: Keys
    created: float  # epoch seconds
    resolved: float
    day: int  # the local day of the resolution
    policy: str | None
    breached: bool
    replies: int  # agents' replies sent up to the period's end
    answers: int  # canned answers sent
    escalations: int
    start_level: int
    reopens: int


@dataclass(frozen=True, slots=True)
class AlertCount:
    keys: Keys
    kind: str  # warn | breach
    count: int


@dataclass(frozen=True, slots=True)
class BacklogCount:
    keys: Keys
    status: str
    age: str
    count: int


@dataclass(frozen=True, slots=True)
class Rating:
    ticket_id: int
    at: datetime
    score: int
    keys: Keys  # department, level, agent at the time of rating; the ticket's mailbox


@dataclass(frozen=True, slots=True)
class SurveyCount:
    keys: Keys
    day: int
    count: int


@dataclass(frozen=True)
class Rows:
    """Everything the figures are computed from."""

    period: Period
    days: list[DayCount]
    tickets: list[TicketCount]
    first_replies: list[FirstReply]
    resolutions: list[Resolution]
    alerts: list[AlertCount]
    backlog: list[BacklogCount]
    ratings: list[Rating]
    surveys: list[SurveyCount]
