"""The read-only commands on tickets: `tickets list`, `tickets show`.

They build their answers as plain JSON-ready dicts (the shapes of INTERFACE.md), so the
human-readable output and `--json` cannot drift apart.

A person types these and waits for the answer, so this module imports only the settings and
the tables, and reads through SQLAlchemy Core: the ORM's import and the configuration of
every mapped class would cost a command as much as the rest of its work (bench.cli). What a
command needs beyond that (the SLA file for `--sla due-today`) is imported by that command.
It never imports the daemon (maild.app, the pipeline, the outbox sender). `check` is in
maild/configcheck.py: it reads no database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Row, and_, exists, false, func, or_, select, true
from sqlalchemy.exc import OperationalError, ProgrammingError

from maild.settings import Settings
from maild.store import db
from maild.store.tables import events, messages, participants, sla_alerts, tickets

MESSAGE_DIRECTIONS = ("inbound", "outbound", "note")
DONE = ("resolved", "closed")
SLA_FILTERS = ("breached", "due-today")
_T = TypeVar("_T")
T = tickets.c  # the tickets table's columns, named often below


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def read(settings: Settings, work: Callable[[Connection], _T]) -> _T:
    """`work` on a connection to the configured database, in one read-only transaction
    (on SQLite a deferred one: it never takes the write lock the daemon needs).

    Reading does not migrate first: alembic's import and its check of the revision would cost
    a read-only command as much as the rest of its work. A database the tables do not fit
    (new, or older than this maild) fails the read; it is then migrated, as every command
    migrates, and read again.
    """
    engine = db.make_engine(settings.database.url, reader=True)
    try:
        try:
            with engine.connect() as conn:
                return work(conn)
        except (OperationalError, ProgrammingError):
            from maild import logs

            logs.configure("warning")  # the migrations log; never onto standard output
            db.migrate(settings.database.url)  # on its own engine: this one only reads
            with engine.connect() as conn:
                return work(conn)
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
    raised = exists().where(sla_alerts.c.ticket_id == T.id, sla_alerts.c.kind == "breach")
    overdue = and_(T.status.not_in(DONE), or_(
        and_(T.first_response_at.is_(None), T.sla_first_response_due <= now),
        T.sla_next_response_due <= now,
        T.sla_resolution_due <= now))
    return or_(raised, overdue)


def due_between(start: datetime, end: datetime) -> ColumnElement[bool]:
    """A due time the ticket still owes falls in [start, end)."""
    return and_(T.status.not_in(DONE), or_(
        and_(T.first_response_at.is_(None), T.sla_first_response_due >= start,
             T.sla_first_response_due < end),
        and_(T.sla_next_response_due >= start, T.sla_next_response_due < end),
        and_(T.sla_resolution_due >= start, T.sla_resolution_due < end)))


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
        where.append(T.status == f.status)
    if f.level is not None:
        where.append(T.level == f.level)
    if f.department:
        where.append(T.department == f.department)
    if f.assignee:
        where.append(func.lower(T.assignee) == f.assignee.lower())
    if f.priority:
        where.append(T.priority == f.priority)
    if f.customer:
        address = f.customer.strip().lower()
        m = messages.c
        where.append(or_(func.lower(T.requester) == address, exists().where(
            m.ticket_id == T.id, m.direction == "inbound",
            func.lower(m.from_addr) == address)))
    if f.sla == "breached":
        where.append(breached(now))
    elif f.sla == "due-today":
        where.append(due_between(*day) if day else false())
    return where


def ticket_summary(ticket: Row[Any], message_count: int, sla_breached: bool) -> dict[str, Any]:
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
    m = messages.c
    counts = (select(m.ticket_id, func.count(m.id).label("n"))
              .where(m.direction != "notification")
              .group_by(m.ticket_id).subquery())
    query = (select(tickets, func.coalesce(counts.c.n, 0).label("message_count"),
                    breached(now).label("sla_breached"))
             .outerjoin(counts, counts.c.ticket_id == T.id)
             .where(and_(true(), *conditions(f, now, day)))
             .order_by(T.created_at.desc(), T.id.desc()))
    if limit:
        query = query.limit(limit)

    def work(conn: Connection) -> list[dict[str, Any]]:
        return [ticket_summary(row, int(row.message_count), bool(row.sla_breached))
                for row in conn.execute(query)]

    return read(settings, work)


def format_list(rows: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"{t['id']:>6}  {t['ref']:<10} {t['status']:<16} L{t['level']} "
        f"{t['priority']:<7} {'SLA!' if t['sla_breached'] else '    '} "
        f"{t['requester']:<32} {t['subject'][:60]}" for t in rows)


# -- tickets show ----------------------------------------------------------------------------

def find_ticket(conn: Connection, ref: str, now: datetime) -> Row[Any] | None:
    """A ticket's row by its number or its reference, with `sla_breached` as of `now`."""
    which = T.id == int(ref) if ref.strip().isdigit() else T.ref == ref.strip("[]# ").upper()
    return conn.execute(
        select(tickets, breached(now).label("sla_breached")).where(which)).first()


def conversation(conn: Connection, ticket_id: int) -> list[dict[str, Any]]:
    """The messages of the conversation, oldest first. Staff notifications are not part of
    it: the events list them."""
    m = messages.c
    rows = conn.execute(
        select(m.direction, m.message_id, m.from_addr, m.to_addrs, m.subject, m.date,
               m.created_at, m.body_text)
        .where(m.ticket_id == ticket_id, m.direction.in_(MESSAGE_DIRECTIONS))
        .order_by(m.id))
    return [{"direction": r.direction, "message_id": r.message_id, "from": r.from_addr,
             "to": r.to_addrs, "subject": r.subject, "date": _iso(r.date or r.created_at),
             "text": r.body_text or ""} for r in rows]


def ticket_participants(conn: Connection, ticket: Row[Any]) -> list[dict[str, Any]]:
    """The requester, then the conversation's other participants, confirmed or not."""
    p = participants.c
    rows = conn.execute(select(p.address, p.confirmed).where(p.ticket_id == ticket.id)
                        .order_by(p.id))
    return [{"address": ticket.requester, "confirmed": True},
            *({"address": a, "confirmed": c} for a, c in rows if a != ticket.requester)]


def rating(trail: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest satisfaction rating (maild/csat): a later one replaces an earlier."""
    rated = [e for e in trail if e["kind"] == "csat.rated"]
    if not rated:
        return None
    last = rated[-1]
    return {"score": last["data"].get("score"), "comment": last["data"].get("comment"),
            "at": last["at"]}


def ticket_detail(settings: Settings, ref: str,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """One ticket with its conversation, events and SLA state; secrets redacted."""
    now = now or datetime.now(UTC)
    redact = Redactor(settings.support.address)

    def work(conn: Connection) -> dict[str, Any] | None:
        ticket = find_ticket(conn, ref, now)
        if ticket is None:
            return None
        talk = conversation(conn, ticket.id)
        out = ticket_summary(ticket, len(talk), bool(ticket.sla_breached))
        out["messages"] = talk
        out["participants"] = ticket_participants(conn, ticket)
        e = events.c
        trail = [{"at": _iso(r.at), "kind": r.kind, "data": r.data}
                 for r in conn.execute(select(e.at, e.kind, e.data)
                                       .where(e.ticket_id == ticket.id).order_by(e.id))]
        out["rating"] = rating(trail)
        out["events"] = trail
        a = sla_alerts.c
        alerts = conn.execute(select(a.target, a.due_at, a.raised_at, a.policy).where(
            a.ticket_id == ticket.id, a.kind == "breach").order_by(a.id))
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
