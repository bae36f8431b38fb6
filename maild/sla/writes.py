"""The SLA pass's writes for a batch of tickets: one statement each, whatever the batch size.

A pass writes three kinds of rows per batch: the alerts it claims (`sla_alerts`, INSERT ...
ON CONFLICT DO NOTHING RETURNING: the unique key decides who acts), the tickets' new SLA
columns (UPDATE by id) and its events (INSERT).

On PostgreSQL each is one statement with one parameter: the batch's rows as a JSON document,
which the server turns back into typed rows (`json_to_recordset`). The obvious alternatives
cost per row in the daemon, and that was most of a pass: `executemany` with RETURNING becomes
a multi-row VALUES with thousands of placeholders, which SQLAlchemy expands and the driver
parses anew for every batch (statements that long are not cached); without RETURNING the
driver sends one execution per row; arrays per column (`unnest`) have the driver quote and
escape every element in Python. On SQLite, in-process, `executemany` it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from maild.store.models import Base, Event, SlaAlert, Ticket

Row = Mapping[str, Any]


def table(model: type[Base]) -> Table:
    """The model's table, for Core statements: a batch of plain rows needs none of the
    ORM's per-object bookkeeping."""
    found = model.__table__
    assert isinstance(found, Table)
    return found


class BatchWrites:
    """The three statements of a batch, for the session's database."""

    def __init__(self, dialect: str) -> None:
        self.json = dialect == "postgresql"

    def claim(self, conn: Connection, rows: Sequence[Row]) -> set[tuple[int, str]]:
        """Insert the alerts; return those this call inserted (the others exist already)."""
        if not rows:
            return set()
        alerts = table(SlaAlert)
        returned = (alerts.c.ticket_id, alerts.c.key)
        if self.json:
            source = _Recordset(alerts, rows)
            stmt = (pg_insert(alerts).from_select(source.names, source.select())
                    .on_conflict_do_nothing(index_elements=["ticket_id", "key"])
                    .returning(*returned))
            found = conn.execute(stmt, source.params)
        else:
            found = conn.execute(sqlite_insert(alerts).on_conflict_do_nothing(
                index_elements=["ticket_id", "key"]).returning(*returned), rows)
        return {(tid, key) for tid, key in found}

    def update_tickets(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Set each ticket's columns (the same columns in every row) by its `ticket_id`."""
        if not rows:
            return
        tickets = table(Ticket)
        if not self.json:
            conn.execute(update(tickets).where(tickets.c.id == bindparam("ticket_id")), rows)
            return
        source = _Recordset(tickets, rows, key=("ticket_id", "id"))
        values = {n: v for n, v in source.values().items() if n != "ticket_id"}
        conn.execute(update(tickets).where(tickets.c.id == source.alias.c.ticket_id)
                     .values(values), source.params)

    def insert_events(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Insert the events, in the order given (their ids follow it)."""
        if not rows:
            return
        events = table(Event)
        if not self.json:
            conn.execute(insert(events), rows)
            return
        source = _Recordset(events, rows)
        conn.execute(insert(events).from_select(source.names, source.select()), source.params)


class _Recordset:
    """Rows given as dicts (the same keys in each) as one JSON document, and the table
    PostgreSQL makes of it (`json_to_recordset`), typed like the target's columns; a row
    number keeps their order for INSERT ... SELECT.

    One text parameter, which json.dumps writes in C. Datetimes travel in ISO 8601 with their
    offset (exact to the microsecond, as the columns store them), JSON columns as JSON (the
    text json.dumps gives, as the engine writes them). `key` names a value that is not a
    column of the table, and the column whose type it has.
    """

    ORDER = "_row"

    def __init__(self, target: Table, rows: Sequence[Row],
                 key: tuple[str, str] | None = None) -> None:
        self.names = list(rows[0])
        columns = [column(n, target.c[key[1] if key and n == key[0] else n].type)
                   for n in self.names]
        document = cast(bindparam("rows", type_=Text()), JSON)
        self.alias: TableValuedAlias = func.json_to_recordset(document).table_valued(
            *columns, column(self.ORDER, Integer())).render_derived(with_types=True)
        self.params = {"rows": json.dumps([{**r, self.ORDER: i} for i, r in enumerate(rows)],
                                          default=_instant)}

    def values(self) -> dict[str, ColumnElement[Any]]:
        """Each value's column of the recordset, by name."""
        return {n: self.alias.c[n] for n in self.names}

    def select(self) -> Select[Any]:
        """The rows, in their order, for INSERT ... SELECT."""
        return select(*self.values().values()).order_by(self.alias.c[self.ORDER])


def _instant(value: object) -> str:
    """A datetime for the JSON document; naive ones are refused, as UtcDateTime does."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime given to the database")
    return value.isoformat()
