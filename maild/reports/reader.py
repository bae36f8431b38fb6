"""Running the report's statements (`query`) and making their results into `rows`.

On PostgreSQL the per-ticket rows (first replies, resolutions: an index probe into each
ticket's events, and Python building their rows) are read on a second connection while the
report's own connection counts: the server works on both at once. The second connection
imports the first's snapshot, so the two halves see the same database. SQLite reads one
after the other on its one connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine, Select, text
from sqlalchemy.orm import Session

from maild.reports import query
from maild.reports.period import Period
from maild.reports.rows import (
    AlertCount,
    BacklogCount,
    DayCount,
    FirstReply,
    Keys,
    Rating,
    Resolution,
    Rows,
    SurveyCount,
    TicketCount,
)

BUFFER = 10_000  # rows fetched at a time from a streamed result
WORK_MEM = "64MB"
_SNAPSHOT = re.compile(r"[0-9A-Fa-f-]+")  # what pg_export_snapshot() returns

PerTicket = tuple[list[FirstReply], list[Resolution]]


def read(session: Session, period: Period) -> Rows:
    """All the rows of one report."""
    sql = query.Sql(session.get_bind().dialect.name, period)
    conn = session.connection()  # Core rows: none of the ORM's per-row work
    if sql.dialect != "postgresql":
        return _rows(sql, _counts(conn, sql), _per_ticket(conn, sql))
    _tune(conn)
    snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    with ThreadPoolExecutor(max_workers=1) as beside:
        per_ticket = beside.submit(_per_ticket_beside, conn.engine, sql, snapshot)
        counts = _counts(conn, sql)
        return _rows(sql, counts, per_ticket.result())


def _rows(sql: query.Sql, counts: dict[str, Any], per_ticket: PerTicket) -> Rows:
    first, resolutions = per_ticket
    return Rows(period=sql.period, first_replies=first, resolutions=resolutions, **counts)


def _tune(conn: Connection) -> None:
    """For this read-only transaction alone (PostgreSQL): a year's groups sort in memory
    rather than in files (the default is 4 MB); no JIT compilation, which costs more (a fifth
    of a second a statement) than the statements it would speed up; and the streamed queries
    planned for reading every row, as they do (a cursor's plan is otherwise chosen for its
    first tenth)."""
    conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    conn.execute(text("SET LOCAL jit = off"))
    conn.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))


def _keys(row: Any, offset: int = 0) -> Keys:
    return (row[offset], int(row[offset + 1]), row[offset + 2], row[offset + 3])


def _stream(conn: Connection, statement: Select[Any]) -> Iterator[Any]:
    """Rows a chunk at a time (a server-side cursor on PostgreSQL): a year's per-ticket rows
    are never all in memory as result objects at once."""
    result = conn.execute(statement.execution_options(yield_per=BUFFER))
    for chunk in result.partitions():
        yield from chunk


def _counts(conn: Connection, sql: query.Sql) -> dict[str, Any]:
    """Every row of the report but the per-ticket ones, by `Rows` field."""
    period = sql.period
    touched = query.touched_table()
    touched.create(conn)
    conn.execute(query.fill_touched(sql, touched))
    if sql.dialect == "postgresql":
        conn.execute(text(f"ANALYZE {touched.name}"))  # temporary tables are not analysed
    daily, distinct = query.event_volume(sql, touched)
    days: dict[tuple[int, Keys], list[int]] = {}
    for r in conn.execute(daily):
        days[(int(r[0]), _keys(r, 1))] = [int(r[5]), 0, int(r[6]), int(r[7]), int(r[8]),
                                          int(r[9])]
    for r in conn.execute(query.messages_in(sql, touched)):
        days.setdefault((int(r[0]), _keys(r, 1)), [0] * 6)[1] = int(r[5])
    tickets = [TicketCount(_keys(r), int(r[4]), int(r[5])) for r in conn.execute(distinct)]
    touched.drop(conn)
    now_open, was_open = query.backlog(period)
    return {
        "days": [DayCount(day, keys, *counts) for (day, keys), counts in days.items()],
        "tickets": tickets,
        "alerts": [AlertCount(_keys(r), r[4], int(r[5]))
                   for r in conn.execute(query.alerts(period))],
        "backlog": [BacklogCount(_keys(r), r[4], r[5], int(r[6]))
                    for q in (now_open, was_open) for r in conn.execute(q)],
        "ratings": [Rating(int(r[0]), r[1], int(r[2]),
                           (r[3], int(r[4] if r[4] is not None else r[7]), r[5], r[6]))
                    for r in _stream(conn, query.ratings(period)) if r[2] is not None],
        "surveys": [SurveyCount(_keys(r), int(r[4]), int(r[5]))
                    for r in conn.execute(query.surveys(sql))],
    }


def _per_ticket(conn: Connection, sql: query.Sql) -> PerTicket:
    first = [FirstReply(_keys(r), r[4], r[5], r[6], r[7], bool(r[8]))
             for r in _stream(conn, query.first_replies(sql))]
    resolutions = [Resolution(_keys(r), r[4], r[5], r[6], r[7], bool(r[8]), int(r[9]),
                              int(r[10]), int(r[11]), int(r[12]), int(r[13]))
                   for r in _stream(conn, query.resolutions(sql))]
    return first, resolutions


def _per_ticket_beside(engine: Engine, sql: query.Sql, snapshot: str) -> PerTicket:
    """The per-ticket rows on a connection of their own, in the report's snapshot."""
    if not _SNAPSHOT.fullmatch(snapshot):  # SET takes no parameters: checked, then inlined
        raise ValueError(f"unexpected snapshot identifier {snapshot!r}")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            _tune(conn)
            return _per_ticket(conn, sql)
