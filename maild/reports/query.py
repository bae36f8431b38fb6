"""The report's reads: SQL aggregates, and per-ticket scalar rows where Python must compute.

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
PostgreSQL they run on a second connection beside the counts (`read`). The local day of an
instant is computed in SQL from its epoch seconds and the zone's offset, which changes at a
few known instants a period (`period.offsets`), so no time-zone database is needed in
SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
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
    text,
    union,
)
from sqlalchemy.orm import Session, aliased

from maild.reports import RATED, SURVEY_QUEUED
from maild.reports.period import Period, offsets
from maild.store.models import Event, Message, SlaAlert, Ticket

SENT = ("reply.sent", "answer.sent")  # the outbox sender's events: the mail reached the MTA
OPEN = ("new", "open", "waiting_customer")
DONE = ("resolved", "closed")
AGE_BUCKETS = ("<1d", "1-3d", "3-7d", ">7d")
BUFFER = 10_000  # rows fetched at a time from a streamed result
WORK_MEM = "64MB"

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


def _keys(row: Any, offset: int = 0) -> Keys:
    return (row[offset], int(row[offset + 1]), row[offset + 2], row[offset + 3])


def _key_columns(source: Table | None = None) -> list[Any]:
    if source is None:
        return [Ticket.department, Ticket.level, Ticket.assignee, Ticket.mailbox]
    return [source.c.department, source.c.level, source.c.assignee, source.c.mailbox]


def _touched() -> Table:
    """The tickets the period's events and inbound messages belong to, with what the report
    needs of them: filled once, so that the queries after it join this small table, not
    the whole `tickets` table each (a million rows read five times over)."""
    return Table("report_tickets", MetaData(),
                 Column("id", Integer, primary_key=True), Column("department", String(64)),
                 Column("level", Integer), Column("assignee", String(320)),
                 Column("mailbox", String(64)), Column("created", Float),
                 Column("sla_policy", String(100)), prefixes=["TEMPORARY"])


VOLUME_KINDS = ("created", "status.changed", *SENT)


def _fill(conn: Connection, sql: _Sql, touched: Table) -> None:
    period = sql.period
    ids = union(
        select(Event.ticket_id).where(Event.kind.in_(VOLUME_KINDS), _within(Event.at, period)),
        select(Message.ticket_id).where(Message.direction == "inbound",
                                        _within(Message.created_at, period)))
    columns = [Ticket.id, *_key_columns(), sql.epoch(Ticket.created_at), Ticket.sla_policy]
    touched.create(conn)
    conn.execute(insert(touched).from_select(
        [c.name for c in touched.columns], select(*columns).where(Ticket.id.in_(ids))))
    if sql.dialect == "postgresql":
        conn.execute(text(f"ANALYZE {touched.name}"))  # temporary tables are not analysed


class _Sql:
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


def _event_volume(sql: _Sql, t: Table) -> tuple[Select[Any], Select[Any]]:
    period = sql.period
    where = and_(Event.kind.in_(VOLUME_KINDS), _within(Event.at, period))
    day = sql.day(Event.at).label("day")
    keys = _key_columns(t)
    daily = (select(day, *keys, _flag(Event.kind == "created"), _flag(Event.kind.in_(SENT)),
                    _flag(_is_resolution()), _flag(_is_closed()), _flag(_is_reopen()))
             .join(t, t.c.id == Event.ticket_id).where(where)
             .group_by(day, *keys))
    distinct = (select(*keys, _distinct(_is_closed()), _distinct(_is_reopen()))
                .join(t, t.c.id == Event.ticket_id)
                .where(Event.kind == "status.changed", _within(Event.at, period))
                .group_by(*keys))
    return daily, distinct


def _messages_in(sql: _Sql, t: Table) -> Select[Any]:
    day = sql.day(Message.created_at).label("day")
    keys = _key_columns(t)
    return (select(day, *keys, func.count())
            .join(t, t.c.id == Message.ticket_id)
            .where(Message.direction == "inbound", Message.automatic.is_(None),
                   _within(Message.created_at, sql.period))
            .group_by(day, *keys))


def _breached(target: str, ticket_id: Any) -> ColumnElement[bool]:
    return exists().where(SlaAlert.ticket_id == ticket_id, SlaAlert.kind == "breach",
                          SlaAlert.target == target)


def _first_replies(sql: _Sql) -> Select[Any]:
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
    return (select(*_key_columns(), sql.epoch(Ticket.created_at), sql.epoch(sent.c.at),
                   sql.day(sent.c.at), Ticket.sla_policy, _breached("first_response", Ticket.id))
            .join(Ticket, Ticket.id == sent.c.ticket_id).where(first_ever >= period.start))


def _resolutions(sql: _Sql) -> Select[Any]:
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
    return (select(*_key_columns(), sql.epoch(Ticket.created_at), sql.epoch(resolved.c.at),
                   sql.day(resolved.c.at), Ticket.sla_policy, _breached("resolution", Ticket.id),
                   func.coalesce(history.c.replies, 0), func.coalesce(history.c.answers, 0),
                   func.coalesce(history.c.escalations, 0),
                   func.coalesce(history.c.start, Ticket.level),
                   func.coalesce(history.c.reopens, 0))
            .join(Ticket, Ticket.id == resolved.c.ticket_id)
            .outerjoin(history, history.c.ticket_id == resolved.c.ticket_id))


def _alerts(period: Period) -> Select[Any]:
    keys = _key_columns()
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


def _backlog(period: Period) -> tuple[Select[Any], Select[Any]]:
    """Tickets open at the period's end: open now and unchanged since (a), or whose first
    status change after the end left an open status (b), with that status."""
    keys = _key_columns()
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


def _ratings(period: Period) -> Select[Any]:
    return (select(Event.ticket_id, Event.at, Event.data["score"].as_integer(),
                   Event.data["department"].as_string(), Event.data["level"].as_integer(),
                   Event.data["agent"].as_string(), Ticket.mailbox, Ticket.level)
            .join(Ticket, Ticket.id == Event.ticket_id)
            .where(Event.kind == RATED, _within(Event.at, period)))


def _surveys(sql: _Sql) -> Select[Any]:
    day = sql.day(Event.at).label("day")
    dept = Event.data["department"].as_string().label("dept")
    level = func.coalesce(Event.data["level"].as_integer(), Ticket.level).label("lvl")
    agent = Event.data["agent"].as_string().label("agent")
    return (select(dept, level, agent, Ticket.mailbox, day, func.count())
            .join(Ticket, Ticket.id == Event.ticket_id)
            .where(Event.kind == SURVEY_QUEUED, _within(Event.at, sql.period))
            .group_by(dept, level, agent, Ticket.mailbox, day))


def _stream(conn: Connection, statement: Select[Any]) -> Iterator[Any]:
    """Rows a chunk at a time (a server-side cursor on PostgreSQL): a year's per-ticket rows
    are never all in memory as result objects at once."""
    result = conn.execute(statement.execution_options(yield_per=BUFFER))
    for chunk in result.partitions():
        yield from chunk


def _settings(conn: Connection) -> None:
    """For this read-only transaction alone (PostgreSQL): a year's groups sort in memory
    rather than in files (the default is 4 MB); no JIT compilation, which costs more (a fifth
    of a second a statement) than the statements it would speed up; and the streamed queries
    planned for reading every row, as they do (a cursor's plan is otherwise chosen for its
    first tenth)."""
    conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    conn.execute(text("SET LOCAL jit = off"))
    conn.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))


def _per_ticket(conn: Connection, sql: _Sql) -> tuple[list[FirstReply], list[Resolution]]:
    first = [FirstReply(_keys(r), r[4], r[5], r[6], r[7], bool(r[8]))
             for r in _stream(conn, _first_replies(sql))]
    resolutions = [Resolution(_keys(r), r[4], r[5], r[6], r[7], bool(r[8]), int(r[9]),
                              int(r[10]), int(r[11]), int(r[12]), int(r[13]))
                   for r in _stream(conn, _resolutions(sql))]
    return first, resolutions


def _per_ticket_beside(engine: Engine, sql: _Sql, snapshot: str
                       ) -> tuple[list[FirstReply], list[Resolution]]:
    """The per-ticket rows on a connection of their own, in the snapshot of the report's
    transaction (so both halves see the same database)."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            # SET takes no parameters; the identifier is the server's own (hex and dashes).
            if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
                raise ValueError(f"unexpected snapshot identifier {snapshot!r}")
            conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            _settings(conn)
            return _per_ticket(conn, sql)


def read(session: Session, period: Period) -> Rows:
    """All the rows of one report.

    On PostgreSQL the per-ticket rows (first replies, resolutions: index probes into each
    ticket's events, and Python building their rows) are read on a second connection while
    this one counts; the server works both on two cores, and the second imports this
    transaction's snapshot, so the two halves agree."""
    sql = _Sql(session.get_bind().dialect.name, period)
    conn = session.connection()  # Core rows: none of the ORM's per-row work
    per_ticket: Future[tuple[list[FirstReply], list[Resolution]]] | None = None
    with ThreadPoolExecutor(max_workers=1) as beside:
        if sql.dialect == "postgresql":
            _settings(conn)
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            per_ticket = beside.submit(_per_ticket_beside, conn.engine, sql, snapshot)
        touched = _touched()
        _fill(conn, sql, touched)
        daily, distinct = _event_volume(sql, touched)
        days: dict[tuple[int, Keys], list[int]] = {}
        for r in conn.execute(daily):
            days[(int(r[0]), _keys(r, 1))] = [int(r[5]), 0, int(r[6]), int(r[7]), int(r[8]),
                                              int(r[9])]
        for r in conn.execute(_messages_in(sql, touched)):
            days.setdefault((int(r[0]), _keys(r, 1)), [0] * 6)[1] = int(r[5])
        day_counts = [DayCount(day, keys, *counts) for (day, keys), counts in days.items()]
        tickets = [TicketCount(_keys(r), int(r[4]), int(r[5])) for r in conn.execute(distinct)]
        touched.drop(conn)
        alerts = [AlertCount(_keys(r), r[4], int(r[5])) for r in conn.execute(_alerts(period))]
        now_open, was_open = _backlog(period)
        backlog = [BacklogCount(_keys(r), r[4], r[5], int(r[6]))
                   for q in (now_open, was_open) for r in conn.execute(q)]
        ratings = [Rating(int(r[0]), r[1], int(r[2]),
                          (r[3], int(r[4] if r[4] is not None else r[7]), r[5], r[6]))
                   for r in _stream(conn, _ratings(period)) if r[2] is not None]
        surveys = [SurveyCount(_keys(r), int(r[4]), int(r[5]))
                   for r in conn.execute(_surveys(sql))]
        first, resolutions = (_per_ticket(conn, sql) if per_ticket is None
                              else per_ticket.result())
    return Rows(period, day_counts, tickets, first, resolutions, alerts, backlog, ratings,
                surveys)
