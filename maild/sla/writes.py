"""The SLA pass's writes for a batch of tickets: one statement each, whatever the batch size.

A pass writes three kinds of rows per batch: the alerts it claims (`sla_alerts`, INSERT ...
ON CONFLICT DO NOTHING RETURNING: the unique key decides who acts), the tickets' new SLA
columns (UPDATE by id) and its events (INSERT, as ingestion writes them: store/bulk.py). On
PostgreSQL the claim and the update are one statement with one parameter each, the batch's
rows as a JSON document (store/bulk.py says why); on SQLite, in process, `executemany`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from maild.store.bulk import Recordset, Row, insert_rows, table
from maild.store.models import Event, SlaAlert, Ticket


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
            source = Recordset(alerts, rows)
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
        source = Recordset(tickets, rows, key=("ticket_id", "id"))
        values = {n: v for n, v in source.values().items() if n != "ticket_id"}
        conn.execute(update(tickets).where(tickets.c.id == source.alias.c.ticket_id)
                     .values(values), source.params)

    def insert_events(self, conn: Connection, rows: Sequence[Row]) -> None:
        """Insert the events, in the order given (their ids follow it)."""
        insert_rows(conn, Event, rows)
