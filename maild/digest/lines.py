"""What a queue listing holds and in which order: pure functions of ticket rows, the time
and the organisation's calendar (table-tested in tests/test_digest.py).

Urgency first, as an agent works: SLA breached, due today (with the business time left),
due later, no SLA target; then the tickets that wait for the customer, longest first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime

from maild.businesstime.calendar import BusinessCalendar, business_time_between
from maild.store.models import Ticket
from maild.tickets.times import duration

OPEN = ("new", "open")


class Urgency(enum.IntEnum):
    BREACHED = 0
    TODAY = 1
    LATER = 2
    NONE = 3
    WAITING = 4  # for the customer


@dataclass(frozen=True)
class Line:
    ref: str
    subject: str
    customer: str
    status: str
    address: str  # the ticket's secret reply address: replying to it acts on the ticket
    urgency: Urgency
    at: datetime | None  # what it sorts by: its due time, or since when it waits
    note: str  # "due today 15:30, 2 h 30 min left", "waiting 3 h", ...


def next_due(ticket: Ticket) -> datetime | None:
    """The earliest SLA due time the ticket still owes."""
    owed = [ticket.sla_resolution_due]
    if ticket.first_response_at is None:
        owed.append(ticket.sla_first_response_due)
    elif ticket.awaiting_reply_since is not None:
        owed.append(ticket.sla_next_response_due)
    found = [d for d in owed if d is not None]
    return min(found) if found else None


def line(ticket: Ticket, address: str, now: datetime, cal: BusinessCalendar, *,
         breached: bool = False, waiting_since: datetime | None = None) -> Line:
    """`breached`: a breach was raised on the ticket (table sla_alerts)."""
    customer = (f"{ticket.requester_name} <{ticket.requester}>" if ticket.requester_name
                else ticket.requester)

    def make(urgency: Urgency, at: datetime | None, note: str) -> Line:
        return Line(ticket.ref, ticket.subject, customer, ticket.status, address, urgency,
                    at, note)

    if ticket.status == "waiting_customer":
        since = waiting_since or ticket.updated_at
        return make(Urgency.WAITING, since, f"waiting {duration(now - since)}")
    due = next_due(ticket)
    today = now.astimezone(cal.tz).date()
    if breached or (due is not None and due <= now):
        return make(Urgency.BREACHED, due, "SLA breached" + (
            f", was due {_when(due, cal, today)}" if due is not None else ""))
    if due is None:
        return make(Urgency.NONE, None, "")
    if due.astimezone(cal.tz).date() == today:
        left = business_time_between(cal, now, due)
        return make(Urgency.TODAY, due, f"due today {due.astimezone(cal.tz):%H:%M}, "
                                        f"{duration(left)} left")
    return make(Urgency.LATER, due, f"due {_when(due, cal, today)}")


def _when(due: datetime, cal: BusinessCalendar, today: date) -> str:
    at = due.astimezone(cal.tz)
    return f"{at:%H:%M}" if at.date() == today else f"{at:%Y-%m-%d %H:%M}"


def ordered(lines: list[Line]) -> list[Line]:
    """Most urgent first; within a kind the earliest due (the longest waiting) first."""
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(lines, key=lambda x: (x.urgency, x.at or never, x.ref))


LABELS = {
    "en": {"breached": "SLA breached", "today": "Due today", "later": "Due later",
           "none": "No SLA target", "waiting": "Waiting for the customer",
           "drafts": "Drafts waiting for your review", "reopened": "Reopened since yesterday",
           "reply": "reply to", "nothing": "Nothing open."},
    "de": {"breached": "SLA verletzt", "today": "Heute fällig", "later": "Später fällig",
           "none": "Ohne SLA-Ziel", "waiting": "Warten auf den Kunden",
           "drafts": "Entwürfe, die auf Ihre Prüfung warten",
           "reopened": "Seit gestern wieder geöffnet", "reply": "Antwort an",
           "nothing": "Nichts offen."},
    "fr": {"breached": "SLA dépassé", "today": "Échéance aujourd'hui",
           "later": "Échéance plus tard", "none": "Sans objectif SLA",
           "waiting": "En attente du client", "drafts": "Brouillons à relire",
           "reopened": "Rouverts depuis hier", "reply": "répondre à",
           "nothing": "Rien d'ouvert."},
}
_SECTIONS = {Urgency.BREACHED: "breached", Urgency.TODAY: "today", Urgency.LATER: "later",
             Urgency.NONE: "none", Urgency.WAITING: "waiting"}


def listing(lines: list[Line], language: str, extra: dict[str, list[str]] | None = None
            ) -> str:
    """The plain text of a queue: a section per urgency, then extra sections (drafts,
    reopened tickets) by their label's key."""
    words = LABELS.get(language, LABELS["en"])
    out: list[str] = []
    for urgency, key in _SECTIONS.items():
        part = [x for x in lines if x.urgency == urgency]
        if not part:
            continue
        out.append(f"{words[key]} ({len(part)})")
        for x in part:
            out.append(f"  {x.ref}  {x.subject}  ({x.status})" + (f"  {x.note}" if x.note
                                                                  else ""))
            out.append(f"      {x.customer}")
            out.append(f"      {words['reply']}: {x.address}")
        out.append("")
    for key, rows in (extra or {}).items():
        if rows:
            out.append(f"{words[key]} ({len(rows)})")
            out.extend(f"  {row}" for row in rows)
            out.append("")
    return "\n".join(out).strip() or words["nothing"]
