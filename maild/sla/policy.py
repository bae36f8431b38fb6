"""SLA policies from YAML, and the pure computation of due and warning instants.

```yaml
calendars:
  office: {timezone: Europe/Berlin, hours: {mon-fri: ["08:00-18:00"]}, yearly: ["12-25"]}
policies:
  - name: urgent
    match: {priority: [urgent, high]}
    calendar: 24x7                   # a calendar name, or 24x7
    first_response: 1h
    next_response: 2h
    resolution: 8h
    warn_at: 80%
    on_breach: {escalate: true, raise_priority: true, notify: [level2, ops@example.test]}
  - name: standard                   # no match: the fallback
    calendar: office
    first_response: 4h
    resolution: 30h                  # business time: three 10-hour office days
```
The first policy whose `match` fits the ticket applies; a match lists allowed values per
field (priority, level, department, tag, customer attribute), all of which must hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maild.businesstime.calendar import BusinessCalendar, add_business_time, due_with_pauses
from maild.businesstime.durations import parse_duration
from maild.businesstime.intervals import HORIZON_DAYS

TARGETS = ("first_response", "next_response", "resolution")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyMatch(_Model):
    priority: list[str] = []
    level: list[Annotated[int, Field(ge=1, le=4)]] = []
    department: list[str] = []
    tag: list[str] = []
    customer: dict[str, list[str]] = {}  # attribute → allowed values

    @field_validator("priority", "department", "tag", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("level", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @field_validator("customer", mode="before")
    @classmethod
    def _attrs(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [x] if isinstance(x, str) else x for k, x in v.items()}
        return v


class BreachActions(_Model):
    escalate: bool = False
    raise_priority: bool = False
    notify: list[str] = []


class PolicySpec(_Model):
    name: Annotated[str, Field(min_length=1)]
    match: PolicyMatch = PolicyMatch()
    calendar: str = "24x7"
    first_response: timedelta | None = None
    next_response: timedelta | None = None
    resolution: timedelta | None = None
    warn_at: float = 0.8
    warn_notify: list[str] = []  # default: the ticket's team
    on_breach: BreachActions = BreachActions()

    @field_validator("first_response", "next_response", "resolution", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("warn_at", mode="before")
    @classmethod
    def _share(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().endswith("%"):
            return float(v.strip()[:-1]) / 100
        return v

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if not 0 < self.warn_at <= 1:
            raise ValueError("warn_at is a share of the target between 0 and 100 %")
        if not any(getattr(self, t) for t in TARGETS):
            raise ValueError("a policy needs at least one of " + ", ".join(TARGETS))
        return self


class SlaFile(_Model):
    calendars: dict[str, Any] = {}
    policies: list[PolicySpec] = []
    check_interval: float = Field(default=60.0, gt=0)  # seconds between scheduled passes


@dataclass(frozen=True)
class Policy:
    spec: PolicySpec
    calendar: BusinessCalendar

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """What policy matching and due times need of a ticket."""

    priority: str
    level: int
    department: str | None
    tags: frozenset[str]
    customer: Mapping[str, str]
    created_at: datetime
    first_response_at: datetime | None
    awaiting_reply_since: datetime | None  # a customer wrote after our last answer
    done: bool  # resolved or closed
    pauses: Sequence[tuple[datetime, datetime | None]]

    def clocks(self) -> tuple[object, ...]:
        """What `deadlines` reads besides the policy: two tickets that agree on this and on
        their policy have the same deadlines (the SLA pass then need not compute them
        again after a breach raised the priority)."""
        return (self.created_at, self.first_response_at, self.awaiting_reply_since, self.done,
                self.pauses)


def matches(match: PolicyMatch, t: TicketFacts) -> bool:
    return (
        (not match.priority or t.priority in match.priority)
        and (not match.level or t.level in match.level)
        and (not match.department or t.department in match.department)
        and (not match.tag or bool(t.tags & set(match.tag)))
        and all(t.customer.get(k) in v for k, v in match.customer.items())
    )


def choose(policies: Sequence[Policy], t: TicketFacts) -> Policy | None:
    return next((p for p in policies if matches(p.spec.match, t)), None)


@dataclass(frozen=True, slots=True)
class Deadline:
    """One instant at which the SLA check must act: `kind` is warn or breach.

    `at` is when to act; `due` is the target's due time, which every message about the
    deadline names (a warning acts before it: telling the team "due at" the warning instant
    would make the target look shorter than it is)."""

    target: str
    kind: str  # warn | breach (| moot: a warning its breach overtook)
    at: datetime
    start: datetime
    key_override: str | None = None
    due_at: datetime | None = None  # a warning's breach instant; None: `at` (a breach)
    key: str = field(init=False, repr=False, compare=False)
    """Unique per ticket: each wait for a next response is its own cycle. Computed once (a
    pass compares it several times per ticket)."""

    def __post_init__(self) -> None:
        if self.key_override:
            key = self.key_override
        elif self.target == "next_response":
            key = f"{self.target}@{self.start:%Y%m%dT%H%M%S}:{self.kind}"
        else:
            key = f"{self.target}:{self.kind}"
        object.__setattr__(self, "key", key)

    @property
    def due(self) -> datetime:
        """The target's due time: the breach instant, for a warning too."""
        return self.due_at or self.at


def _since(pauses: Sequence[tuple[datetime, datetime | None]], start: datetime
           ) -> list[tuple[datetime, datetime | None]]:
    return [(max(a, start), b) for a, b in pauses if b is None or b > start]


def deadlines(policy: Policy, t: TicketFacts) -> list[Deadline]:
    """Every warn and breach instant still to be watched for this ticket.

    A running pause (waiting for the customer) stops the clock: no deadlines while it runs.
    """
    spec, cal = policy.spec, policy.calendar
    clocks: list[tuple[str, datetime, timedelta]] = []
    if spec.first_response and t.first_response_at is None and not t.done:
        clocks.append(("first_response", t.created_at, spec.first_response))
    if spec.next_response and t.awaiting_reply_since and t.first_response_at and not t.done:
        clocks.append(("next_response", t.awaiting_reply_since, spec.next_response))
    if spec.resolution and not t.done:
        clocks.append(("resolution", t.created_at, spec.resolution))
    out = []
    for target, start, duration in clocks:
        pauses = _since(t.pauses, start)
        warn = due_with_pauses(cal, start, duration * spec.warn_at, pauses)
        due = _breach(cal, start, duration, pauses, warn, duration - duration * spec.warn_at)
        if due is None or warn is None:
            continue
        if spec.warn_at < 1:
            out.append(Deadline(target, "warn", warn, start, due_at=due))
        out.append(Deadline(target, "breach", due, start))
    return out


def _breach(cal: BusinessCalendar, start: datetime, duration: timedelta,
            pauses: Sequence[tuple[datetime, datetime | None]], warn: datetime | None,
            rest: timedelta) -> datetime | None:
    """The breach instant: with no pause, the rest of the target after the warning instant
    (business time adds up, so this is the same instant, found by walking the calendar
    from the warning on instead of again from the start). With pauses, a zero rest (whose
    answer would be the next opening, not the warning instant) or an answer near the
    search horizon (where the walk from the start would give up), from the start."""
    if pauses or warn is None or rest <= timedelta(0):
        return due_with_pauses(cal, start, duration, pauses)
    due = add_business_time(cal, warn, rest)
    if due - start >= timedelta(days=HORIZON_DAYS - 2):
        return due_with_pauses(cal, start, duration, pauses)
    return due
