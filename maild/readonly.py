"""The read-only commands on tickets: `tickets list`, `tickets show`.

They build their answers as plain JSON-ready dicts (the shapes of INTERFACE.md), so the
human-readable output and `--json` cannot drift apart.

A person types these and waits for the answer, so this module imports only the database
models and the settings; what a command needs beyond that (the SLA file for `--sla
due-today`) is imported by that command. It never imports the daemon (maild.app, the
pipeline, the outbox sender). `check` is in maild/configcheck.py: it reads no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, selectinload

from maild.settings import Settings
from maild.store import db
from maild.store.models import Message, Participant, SlaAlert, Ticket

MESSAGE_DIRECTIONS = ("inbound", "outbound", "note")
DONE = ("resolved", "closed")
SLA_FILTERS = ("breached", "due-today")
_T = TypeVar("_T")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def read(settings: Settings, work: Callable[[Session], _T]) -> _T:
    """`work` on a session of the configured database.

    Reading does not migrate first: alembic's import and its check of the revision would cost
    a read-only command as much as the rest of its work. A database the models do not fit
    (new, or older than this maild) fails the read; it is then migrated, as every command
    migrates, and read again.
    """
    engine = db.make_engine(settings.database.url)
    try:
        sessions = db.make_session_factory(engine)
        try:
            with sessions() as session:
                return work(session)
        except (OperationalError, ProgrammingError):
            from maild import logs

            logs.configure("warning")  # the migrations log; never onto standard output
            db.upgrade(engine)
            with sessions() as session:
                return work(session)
    finally:
        engine.dispose()


# -- secrets ---------------------------------------------------------------------------------

class Redactor:
    """Replaces the secret plus-addresses on the support address (`support+<ref>.<secret>@`,
    the tickets' reply addresses for staff) in what the commands print: the secret belongs
    only in the mail that carries it. In its place, who the address stands for: the staff of
    that ticket."""

    def __init__(self, support_address: str) -> None:
        local, _, domain = support_address.partition("@")
        self._pattern = re.compile(
            rf"{re.escape(local)}\+([a-z0-9_-]{{1,64}})\.[0-9a-f]{{20}}@{re.escape(domain)}",
            re.IGNORECASE)

    def text(self, value: str) -> str:
        return self._pattern.sub(lambda m: f"staff of {m.group(1).upper()}", value)

    def data(self, value: Any) -> Any:
        """Every string in a JSON-like value, redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


# -- tickets list ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TicketFilter:
    """`tickets list` filters; None: any."""

    status: str | None = None
    level: int | None = None
    department: str | None = None
    assignee: str | None = None
    priority: str | None = None
    customer: str | None = None
    sla: str | None = None  # breached | due-today


def breached(now: datetime) -> ColumnElement[bool]:
    """A ticket has breached an SLA target: a breach was raised, or a due time it still
    owes has passed (the next pass will raise it)."""
    raised = exists().where(SlaAlert.ticket_id == Ticket.id, SlaAlert.kind == "breach")
    overdue = and_(Ticket.status.not_in(DONE), or_(
        and_(Ticket.first_response_at.is_(None), Ticket.sla_first_response_due <= now),
        Ticket.sla_next_response_due <= now,
        Ticket.sla_resolution_due <= now))
    return or_(raised, overdue)


def due_between(start: datetime, end: datetime) -> ColumnElement[bool]:
    """A due time the ticket still owes falls in [start, end)."""
    return and_(Ticket.status.not_in(DONE), or_(
        and_(Ticket.first_response_at.is_(None), Ticket.sla_first_response_due >= start,
             Ticket.sla_first_response_due < end),
        and_(Ticket.sla_next_response_due >= start, Ticket.sla_next_response_due < end),
        and_(Ticket.sla_resolution_due >= start, Ticket.sla_resolution_due < end)))


def today(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """Today in the desk's time zone (its SLA file's first calendar; UTC without one)."""
    from maild.sla.config import load_sla  # only this filter reads the SLA file

    zone = load_sla(settings.sla).timezone
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def conditions(f: TicketFilter, now: datetime,
               day: tuple[datetime, datetime] | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.status:
        where.append(Ticket.status == f.status)
    if f.level is not None:
        where.append(Ticket.level == f.level)
    if f.department:
        where.append(Ticket.department == f.department)
    if f.assignee:
        where.append(func.lower(Ticket.assignee) == f.assignee.lower())
    if f.priority:
        where.append(Ticket.priority == f.priority)
    if f.customer:
        address = f.customer.strip().lower()
        where.append(or_(func.lower(Ticket.requester) == address, exists().where(
            Message.ticket_id == Ticket.id, Message.direction == "inbound",
            func.lower(Message.from_addr) == address)))
    if f.sla == "breached":
        where.append(breached(now))
    elif f.sla == "due-today":
        where.append(due_between(*day) if day else false())
    return where


def ticket_summary(ticket: Ticket, message_count: int, sla_breached: bool) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "ref": ticket.ref,
        "subject": ticket.subject,
        "requester": ticket.requester,
        "status": ticket.status,
        "level": ticket.level,
        "department": ticket.department,
        "priority": ticket.priority,
        "language": ticket.language,
        "assignee": ticket.assignee,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "message_count": message_count,
        "first_response_due": _iso(ticket.sla_first_response_due),
        "resolution_due": _iso(ticket.sla_resolution_due),
        "sla_breached": sla_breached,
    }


def ticket_list(settings: Settings, f: TicketFilter | None = None,
                now: datetime | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Tickets, newest first, with their SLA state."""
    f = f or TicketFilter()
    now = now or datetime.now(UTC)
    day = today(settings, now) if f.sla == "due-today" else None
    counts = (select(Message.ticket_id, func.count(Message.id).label("n"))
              .where(Message.direction != "notification")
              .group_by(Message.ticket_id).subquery())
    query = (select(Ticket, func.coalesce(counts.c.n, 0), breached(now))
             .outerjoin(counts, counts.c.ticket_id == Ticket.id)
             .where(and_(true(), *conditions(f, now, day)))
             .order_by(Ticket.created_at.desc(), Ticket.id.desc()))
    if limit:
        query = query.limit(limit)

    def work(session: Session) -> list[dict[str, Any]]:
        return [ticket_summary(t, int(n), bool(b)) for t, n, b in session.execute(query)]

    return read(settings, work)


def format_list(rows: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"{t['id']:>6}  {t['ref']:<10} {t['status']:<16} L{t['level']} "
        f"{t['priority']:<7} {'SLA!' if t['sla_breached'] else '    '} "
        f"{t['requester']:<32} {t['subject'][:60]}" for t in rows)


# -- tickets show ----------------------------------------------------------------------------

def find_ticket(session: Session, ref: str) -> Ticket | None:
    """A ticket by its number or its reference, with messages and events loaded."""
    query = select(Ticket).options(selectinload(Ticket.messages), selectinload(Ticket.events))
    if ref.strip().isdigit():
        return session.scalar(query.where(Ticket.id == int(ref)))
    return session.scalar(query.where(Ticket.ref == ref.strip("[]# ").upper()))


def participants(session: Session, ticket: Ticket) -> list[dict[str, Any]]:
    """The requester, then the conversation's other participants, confirmed or not."""
    rows = session.execute(select(Participant.address, Participant.confirmed).where(
        Participant.ticket_id == ticket.id).order_by(Participant.id))
    return [{"address": ticket.requester, "confirmed": True},
            *({"address": a, "confirmed": c} for a, c in rows if a != ticket.requester)]


def rating(ticket: Ticket) -> dict[str, Any] | None:
    """The latest satisfaction rating (maild/csat): a later one replaces an earlier."""
    rated = [e for e in ticket.events if e.kind == "csat.rated"]
    if not rated:
        return None
    last = rated[-1]
    return {"score": last.data.get("score"), "comment": last.data.get("comment"),
            "at": _iso(last.at)}


def ticket_detail(settings: Settings, ref: str,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """One ticket with its conversation, events and SLA state; secrets redacted."""
    now = now or datetime.now(UTC)
    redact = Redactor(settings.support.address)

    def work(session: Session) -> dict[str, Any] | None:
        ticket = find_ticket(session, ref)
        if ticket is None:
            return None
        # Staff notifications are not part of the conversation: the events list them.
        messages = [m for m in ticket.messages if m.direction in MESSAGE_DIRECTIONS]
        is_breached = bool(session.scalar(select(breached(now)).where(Ticket.id == ticket.id)))
        out = ticket_summary(ticket, len(messages), is_breached)
        out["messages"] = [
            {"direction": m.direction, "message_id": m.message_id,
             "from": m.from_addr, "to": m.to_addrs, "subject": m.subject,
             "date": _iso(m.date or m.created_at), "text": m.body_text or ""}
            for m in messages
        ]
        out["participants"] = participants(session, ticket)
        out["rating"] = rating(ticket)
        out["events"] = [{"at": _iso(e.at), "kind": e.kind, "data": e.data}
                         for e in ticket.events]
        alerts = session.scalars(select(SlaAlert).where(
            SlaAlert.ticket_id == ticket.id, SlaAlert.kind == "breach").order_by(SlaAlert.id))
        out["sla"] = {
            "policy": ticket.sla_policy,
            "first_response_due": _iso(ticket.sla_first_response_due),
            "first_response_at": _iso(ticket.first_response_at),
            "next_response_due": _iso(ticket.sla_next_response_due),
            "resolution_due": _iso(ticket.sla_resolution_due),
            "resolved_at": _iso(ticket.resolved_at),
            "paused": bool(ticket.sla_pauses and ticket.sla_pauses[-1][1] is None),
            "breaches": [{"target": b.target, "due": _iso(b.due_at),
                          "raised_at": _iso(b.raised_at), "policy": b.policy}
                         for b in alerts],
        }
        return dict(redact.data(out))

    return read(settings, work)


def format_ticket(t: dict[str, Any]) -> str:
    """The ticket as a person reads it: the header, the conversation, then the events."""
    sla = t.get("sla") or {}
    lines = [
        f"{t['ref']}  #{t['id']}  {t['subject']}",
        f"  requester {t['requester']}  status {t['status']}  level {t['level']}  "
        f"department {t['department'] or '-'}  priority {t['priority']}  "
        f"assignee {t['assignee'] or '-'}",
        f"  created {t['created_at']}",
        f"  sla {sla.get('policy') or '-'}: first response due "
        f"{sla.get('first_response_due') or '-'}, resolution due "
        f"{sla.get('resolution_due') or '-'}" + ("  BREACHED" if t["sla_breached"] else ""),
        "",
        "conversation:",
    ]
    for m in t["messages"]:
        lines.append(f"--- {m['date']}  {m['direction']}  {m['from']} -> {m['to']}")
        lines.append(f"    Subject: {m['subject']}")
        lines += [f"    {line}" for line in (m.get("text") or "").rstrip().splitlines()]
    lines += ["", "events:"]
    lines += [f"  {e['at']}  {e['kind']}  {e['data']}" for e in t["events"]]
    return "\n".join(lines)
