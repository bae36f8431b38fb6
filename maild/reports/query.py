"""The report's SQL statements: aggregates, and per-ticket scalar rows where Python must
compute (`reader` runs them).

Counts are grouped in the database by local day and by the four keys a report breaks down
by (department, level, assignee, mailbox: the ticket's current values), so that one query
serves the totals, every breakdown and the daily series: the combinations that occur are a
few hundred, whatever the number of tickets. Only the times that need the business calendar
(first reply, resolution) come back one scalar row per ticket, streamed.

Every read is bounded by an index on time: `events (kind, at)` and `messages (created_at)`
(migration 0005), `sla_alerts` by ticket. The tickets the period touches are read once into
a temporary table (`report_tickets`, dropped when the reads are done; a temporary table is
the connection's own, so reports running at once do not meet), which the volume queries
join. The per-ticket queries (first reply, resolution) join `tickets` by key instead: on
PostgreSQL `reader` runs them on a second connection beside the counts. The local day of an
instant is computed in SQL from its epoch seconds and the zone's offset, which changes at a
few known instants a period (`period.offsets`), so no time-zone database is needed in
SQLite.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Insert,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    union,
)
from sqlalchemy.orm import aliased

from maild.reports import RATED, SURVEY_QUEUED
from maild.reports.period import Period, offsets
from maild.reports.rows import OPEN
from maild.store.models import Event, Message, SlaAlert, Ticket

SENT = ("reply.sent", "answer.sent")  # the outbox sender's events: the mail reached the MTA
DONE = ("resolved", "closed")
VOLUME_KINDS = ("created", "status.changed", *SENT)  # the events the daily volume counts


def key_columns(source: Table | None = None) -> list[Any]:
    if source is None:
        return [Ticket.department, Ticket.level, Ticket.assignee, Ticket.mailbox]
    return [source.c.department, source.c.level, source.c.assignee, source.c.mailbox]


def touched_table() -> Table:
    """The tickets the period's events and inbound messages belong to, with their keys:
    filled once, so that the volume queries join this small table, not the whole `tickets`
    table each (a million rows read three times over)."""
    return Table("report_tickets", MetaData(),
                 Column("id", Integer, primary_key=True), Column("department", String(64)),
                 Column("level", Integer), Column("assignee", String(320)),
                 Column("mailbox", String(64)), prefixes=["TEMPORARY"])


def fill_touched(sql: Sql, touched: Table) -> Insert:
    """The touched tickets: those of the period's volume events and inbound messages."""
    period = sql.period
    ids = union(
        select(Event.ticket_id).where(Event.kind.in_(VOLUME_KINDS), _within(Event.at, period)),
        select(Message.ticket_id).where(Message.direction == "inbound",
                                        _within(Message.created_at, period)))
    return insert(touched).from_select(
        [c.name for c in touched.columns],
        select(Ticket.id, *key_columns()).where(Ticket.id.in_(ids)))


class Sql:
    """The few expressions that differ between SQLite and PostgreSQL."""

    def __init__(self, dialect: str, period: Period) -> None:
        self.dialect = dialect
        self.period = period
        self.pieces = offsets(period.start, period.end, period.tz)

    def epoch(self, column: Any) -> ColumnElement[Any]:
        """Epoch seconds: what the figures compute with, and cheaper to fetch than a
        datetime made aware and converted to UTC for each row."""
        if self.dialect == "sqlite":
            # SQLite keeps a datetime as UTC text; julianday reads it, fractions included.
            return (func.julianday(column) - 2440587.5) * 86400.0
        return cast(func.extract("epoch", column), Float)

    def day(self, column: Any) -> ColumnElement[Any]:
        """The local day number of an instant of the period."""
        first = self.pieces[0][1]
        offset: ColumnElement[Any] = literal(first)
        if len(self.pieces) > 1:
            offset = case(*[(column < at, literal(prev)) for (at, _), (_, prev)
                            in zip(self.pieces[1:], self.pieces, strict=False)],
                          else_=literal(self.pieces[-1][1]))
        seconds = (self.epoch(column) + offset) / 86400.0
        if self.dialect == "sqlite":
            return cast(seconds, Integer)  # truncation is floor after 1970
        return cast(func.floor(seconds), Integer)


def _within(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def _status_new() -> ColumnElement[Any]:
    value: ColumnElement[Any] = Event.data["new"].as_string()
    return value


def _status_old() -> ColumnElement[Any]:
    value: ColumnElement[Any] = Event.data["old"].as_string()
    return value


def _is_resolution() -> ColumnElement[bool]:
    """Resolved, or closed without having been resolved first."""
    return and_(Event.kind == "status.changed",
                or_(_status_new() == "resolved",
                    and_(_status_new() == "closed", _status_old().not_in(DONE))))


def _is_closed() -> ColumnElement[bool]:
    return and_(Event.kind == "status.changed", _status_new() == "closed")


def _is_reopen() -> ColumnElement[bool]:
    return and_(Event.kind == "status.changed", _status_old().in_(DONE),
                _status_new().not_in(DONE))


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _distinct(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.count(func.distinct(case((condition, Event.ticket_id))))


def event_volume(sql: Sql, t: Table) -> tuple[Select[Any], Select[Any]]:
    period = sql.period
    where = and_(Event.kind.in_(VOLUME_KINDS), _within(Event.at, period))
    day = sql.day(Event.at).label("day")
    keys = key_columns(t)
    daily = (select(day, *keys, _flag(Event.kind == "created"), _flag(Event.kind.in_(SENT)),
                    _flag(_is_resolution()), _flag(_is_closed()), _flag(_is_reopen()))
             .join(t, t.c.id == Event.ticket_id).where(where)
             .group_by(day, *keys))
    distinct = (select(*keys, _distinct(_is_closed()), _distinct(_is_reopen()))
                .join(t, t.c.id == Event.ticket_id)
                .where(Event.kind == "status.changed", _within(Event.at, period))
                .group_by(*keys))
    return daily, distinct


def messages_in(sql: Sql, t: Table) -> Select[Any]:
    day = sql.day(Message.created_at).label("day")
    keys = key_columns(t)
    return (select(day, *keys, func.count())
            .join(t, t.c.id == Message.ticket_id)
            .where(Message.direction == "inbound", Message.automatic.is_(None),
                   _within(Message.created_at, sql.period))
            .group_by(day, *keys))


def _breached(target: str, ticket_id: Any) -> ColumnElement[bool]:
    return exists().where(SlaAlert.ticket_id == ticket_id, SlaAlert.kind == "breach",
                          SlaAlert.target == target)


def first_replies(sql: Sql) -> Select[Any]:
    period = sql.period
    sent = (select(Event.ticket_id.label("ticket_id"), func.min(Event.at).label("at"))
            .where(Event.kind.in_(SENT), _within(Event.at, period))
            .group_by(Event.ticket_id).subquery())
    # The ticket's first reply ever, by its own events (an index probe a ticket): written
    # as a correlated scalar, which a planner runs per row, rather than NOT EXISTS, which
    # PostgreSQL may turn into a hash of every reply ever sent.
    every = aliased(Event)
    first_ever = (select(func.min(every.at))
                  .where(every.ticket_id == sent.c.ticket_id, every.kind.in_(SENT))
                  .scalar_subquery())
    return (select(*key_columns(), sql.epoch(Ticket.created_at), sql.epoch(sent.c.at),
                   sql.day(sent.c.at), Ticket.sla_policy, _breached("first_response", Ticket.id))
            .join(Ticket, Ticket.id == sent.c.ticket_id).where(first_ever >= period.start))


def resolutions(sql: Sql) -> Select[Any]:
    period = sql.period
    resolved = (select(Event.ticket_id.label("ticket_id"), func.max(Event.at).label("at"))
                .where(Event.kind == "status.changed", _within(Event.at, period),
                       _is_resolution())
                .group_by(Event.ticket_id).subquery())
    kinds = ("reply.sent", "answer.sent", "escalated", "status.changed")
    escalated = Event.kind == "escalated"
    history = (select(Event.ticket_id.label("ticket_id"),
                      _flag(Event.kind == "reply.sent").label("replies"),
                      _flag(Event.kind == "answer.sent").label("answers"),
                      _flag(escalated).label("escalations"),
                      func.min(case((escalated, Event.data["old"].as_integer()))).label("start"),
                      _flag(_is_reopen()).label("reopens"))
               .where(Event.ticket_id.in_(select(resolved.c.ticket_id)),
                      Event.kind.in_(kinds), Event.at < period.end)
               .group_by(Event.ticket_id).subquery())
    return (select(*key_columns(), sql.epoch(Ticket.created_at), sql.epoch(resolved.c.at),
                   sql.day(resolved.c.at), Ticket.sla_policy, _breached("resolution", Ticket.id),
                   func.coalesce(history.c.replies, 0), func.coalesce(history.c.answers, 0),
                   func.coalesce(history.c.escalations, 0),
                   func.coalesce(history.c.start, Ticket.level),
                   func.coalesce(history.c.reopens, 0))
            .join(Ticket, Ticket.id == resolved.c.ticket_id)
            .outerjoin(history, history.c.ticket_id == resolved.c.ticket_id))


def alerts(period: Period) -> Select[Any]:
    keys = key_columns()
    return (select(*keys, SlaAlert.kind, func.count())
            .join(Ticket, Ticket.id == SlaAlert.ticket_id)
            .where(_within(SlaAlert.raised_at, period), SlaAlert.kind.in_(("warn", "breach")))
            .group_by(*keys, SlaAlert.kind))


def _age(period: Period) -> ColumnElement[Any]:
    end = period.end
    return case((Ticket.created_at >= end - timedelta(days=1), literal("<1d")),
                (Ticket.created_at >= end - timedelta(days=3), literal("1-3d")),
                (Ticket.created_at >= end - timedelta(days=7), literal("3-7d")),
                else_=literal(">7d"))


def backlog(period: Period) -> tuple[Select[Any], Select[Any]]:
    """Tickets open at the period's end: open now and unchanged since (a), or whose first
    status change after the end left an open status (b), with that status."""
    keys = key_columns()
    age = _age(period).label("age")
    later = aliased(Event)
    changed_after = exists().where(later.ticket_id == Ticket.id,
                                   later.kind == "status.changed", later.at >= period.end)
    now_open = (select(*keys, Ticket.status, age, func.count())
                .where(Ticket.status.in_(OPEN), Ticket.created_at < period.end,
                       not_(changed_after))
                .group_by(*keys, Ticket.status, age))
    first = (select(Event.ticket_id.label("ticket_id"), func.min(Event.id).label("first"))
             .where(Event.kind == "status.changed", Event.at >= period.end)
             .group_by(Event.ticket_id).subquery())
    status = _status_old().label("status")
    was_open = (select(*keys, status, age, func.count())
                .select_from(first).join(Event, Event.id == first.c.first)
                .join(Ticket, Ticket.id == first.c.ticket_id)
                .where(_status_old().in_(OPEN), Ticket.created_at < period.end)
                .group_by(*keys, status, age))
    return now_open, was_open


def ratings(period: Period) -> Select[Any]:
    return (select(Event.ticket_id, Event.at, Event.data["score"].as_integer(),
                   Event.data["department"].as_string(), Event.data["level"].as_integer(),
                   Event.data["agent"].as_string(), Ticket.mailbox, Ticket.level)
            .join(Ticket, Ticket.id == Event.ticket_id)
            .where(Event.kind == RATED, _within(Event.at, period)))


def surveys(sql: Sql) -> Select[Any]:
    day = sql.day(Event.at).label("day")
    dept = Event.data["department"].as_string().label("dept")
    level = func.coalesce(Event.data["level"].as_integer(), Ticket.level).label("lvl")
    agent = Event.data["agent"].as_string().label("agent")
    return (select(dept, level, agent, Ticket.mailbox, day, func.count())
            .join(Ticket, Ticket.id == Event.ticket_id)
            .where(Event.kind == SURVEY_QUEUED, _within(Event.at, sql.period))
            .group_by(dept, level, agent, Ticket.mailbox, day))
