"""What a batch has written but not flushed yet, so that its lookups need no autoflush.

The pipeline processes a batch of messages in one transaction. With the session's autoflush,
every lookup (is this a duplicate? which ticket does this Message-ID belong to? how much
automatic mail went to this address?) first flushed whatever the batch had added so far: a
unit-of-work run per query, several per message, which was most of the cost of ingestion.
Instead, while a batch runs, what it adds is noted here as it is added, the lookups ask the
database without autoflush and add what is noted here, and the rows themselves (new tickets,
messages, outbox rows, events) wait here and are written at the end of the batch, or before
something reads them back, with one multi-row INSERT a table.

The notes are only right while every added row stays: the runner uses them only for a batch
without savepoints (a savepoint rolled back would leave notes of rows that are gone). Where
no notes are kept, the lookups autoflush as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.orm import Session, make_transient_to_detached

from maild.store.bulk import insert_rows
from maild.store.models import Event, Message, Outbox, Ticket

_KEY = "maild.pending"


@dataclass
class ReadAhead:
    """What the database held for a group of messages, read before they are processed: one
    query a kind for the whole group instead of several a message. Only what was asked is
    here; a lookup for anything else asks the database as it would without read-ahead.

    Rows the batch adds itself are not here but in the notes beside (`Pending`), and both
    together answer a lookup. What this batch writes never changes an entry: messages and
    their Message-IDs are only added, a ticket's reference never changes, and a recipient's
    automatic mail is counted before the batch queues any for them (the notes count that).
    """

    ticket_of: dict[str, int | None] = field(default_factory=dict)  # Message-ID -> ticket
    ticket_by_ref: dict[str, int | None] = field(default_factory=dict)
    senders: dict[int, frozenset[str]] = field(default_factory=dict)  # ticket -> inbound From
    suppressed: dict[str, tuple[datetime, str] | None] = field(default_factory=dict)
    automatic_to: dict[str, list[int]] = field(default_factory=dict)  # recipient -> per window


@dataclass
class Pending:
    message_tickets: dict[str, int] = field(default_factory=dict)  # Message-ID -> ticket id
    without_id: set[str] = field(default_factory=set)  # raw SHA-256 and source key
    senders: dict[int, set[str]] = field(default_factory=dict)  # ticket id -> inbound From
    automatic_to: Counter[str] = field(default_factory=Counter)  # recipient -> queued
    automatic_for: Counter[int] = field(default_factory=Counter)  # ticket id -> queued
    automatic_total: int = 0
    total_counts: list[int] | None = None  # the limiter's count in total, once a batch
    quarantined: dict[str, str] | None = None  # source key -> reason, read for the batch
    tickets: dict[int, Ticket] = field(default_factory=dict)  # held for the batch (repo.ticket)
    ahead: ReadAhead = field(default_factory=ReadAhead)
    refs: dict[str, int] = field(default_factory=dict)  # of the tickets opened in the batch
    new_tickets: list[Ticket] = field(default_factory=list)  # opened here, not yet written
    _ids: list[int] = field(default_factory=list)  # ticket ids allocated, not yet used
    _last_id: int = 0  # the last ticket id handed out
    # Rows waiting to be written, in order: messages, outbox rows (with the index of their
    # message), events.
    messages: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add_message(self, row: dict[str, Any], *, inbound_from: str | None = None) -> int:
        """A row of `messages` to write; noted for the lookups. Its index, for an outbox row."""
        self.messages.append(row)
        ticket_id = row["ticket_id"]
        if row["message_id"]:
            self.message_tickets[row["message_id"]] = ticket_id
        else:
            self.without_id.update(k for k in (row["raw_sha256"], row["source_key"]) if k)
        if inbound_from:
            self.senders.setdefault(ticket_id, set()).add(inbound_from)
        return len(self.messages) - 1

    def opened(self, ticket: Ticket) -> None:
        """A ticket opened in this batch (its id allocated ahead, its row not yet written)."""
        self.tickets[ticket.id] = ticket
        self.refs[ticket.ref] = ticket.id
        self.new_tickets.append(ticket)
        self.ahead.senders[ticket.id] = frozenset()  # nobody wrote into it before

    def ticket_id(self, session: Session) -> int | None:
        """An id for a new ticket before its row is written, or None where the database
        offers no safe way (then the ticket is inserted at once). Taken a few at a time;
        unused ones are gaps, as a rolled-back insert leaves."""
        if not self._ids:
            self._ids = _next_ids(session.connection(), Ticket, 32, after=self._last_id) or []
        if not self._ids:
            return None
        self._last_id = self._ids.pop(0)
        return self._last_id

    def write(self, session: Session) -> None:
        """Write what waits, one insert a table (store/bulk.py): the new tickets, their messages,
        outbox rows and events; then the session's other changes (the flush). Whoever reads
        tickets, messages, outbox rows or events back within the batch, beyond what the
        notes answer, calls this first (`settle`)."""
        conn = session.connection()
        # New tickets are ORM objects (the stages change them), written here with Core and
        # then made persistent as they are: the unit of work would insert them one by one.
        # One that an ORM query's autoflush already wrote is no longer new.
        fresh = [t for t in self.new_tickets if t in session.new]
        if fresh:
            columns = [c.key for c in Ticket.__table__.columns]
            insert_rows(conn, Ticket, [{k: getattr(t, k) for k in columns} for t in fresh])
            for ticket in fresh:
                session.expunge(ticket)
                make_transient_to_detached(ticket)
                session.add(ticket)
        self.new_tickets = []
        session.flush()
        if self.messages:
            # Ids given here, not returned by the INSERT: a RETURNING in the order of the
            # rows costs one statement a row on SQLite.
            ids: Sequence[int] | None = _next_ids(conn, Message, len(self.messages))
            if ids is None:
                ids = conn.execute(insert(Message).returning(
                    Message.id, sort_by_parameter_order=True), self.messages).scalars().all()
            else:
                for row, row_id in zip(self.messages, ids, strict=True):
                    row["id"] = row_id
                insert_rows(conn, Message, self.messages)
            for index, row in self.outbox:
                row["message_row_id"] = ids[index]
        if self.outbox:
            insert_rows(conn, Outbox, [row for _, row in self.outbox])
        if self.events:
            insert_rows(conn, Event, self.events)
        self.messages, self.outbox, self.events = [], [], []  # nothing is written twice

    def automatic(self, ticket_id: int, recipient: str) -> None:
        self.automatic_to[recipient.lower()] += 1
        self.automatic_for[ticket_id] += 1
        self.automatic_total += 1


def _next_ids(conn: Connection, model: type[Ticket] | type[Message], n: int, *,
              after: int = 0) -> list[int] | None:
    """`n` ids for new rows of `model`'s table before they are written (none of them
    `after` or below), or None where the database offers no safe way.

    PostgreSQL: from the table's sequence. SQLite: the next after the largest written, or
    after `after` (ids handed out but not yet written); safe because the batch's
    transaction holds the database's write lock from its start (BEGIN IMMEDIATE,
    store/db.py) and neither tickets nor messages are ever deleted.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return list(conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                 "FROM generate_series(1, :n)"),
            {"table": model.__tablename__, "n": n}).scalars())
    if dialect == "sqlite":
        first = max(conn.execute(select(func.max(model.id))).scalar() or 0, after) + 1
        return list(range(first, first + n))
    return None


def start(session: Session) -> Pending:
    pending = Pending()
    session.info[_KEY] = pending
    return pending


def settle(session: Session) -> None:
    """Write what the batch running in `session` holds back, before reading it."""
    noted = of(session)
    if noted is not None:
        noted.write(session)


def of(session: Session) -> Pending | None:
    """The notes of the batch running in `session`, if it keeps any."""
    value = session.info.get(_KEY)
    return value if isinstance(value, Pending) else None
