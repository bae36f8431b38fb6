"""The ticket store of a batch: lookups read ahead, rows written together at the end.

The pipeline processes a batch of messages in one transaction. Left to the session's
autoflush, every lookup (is this a duplicate? which ticket does this Message-ID belong to?
how much automatic mail went to this address?) would first flush whatever the batch had
added so far: a unit-of-work run per query, several per message. Instead:

* before a group of messages is processed, what their lookups will ask is read in a few
  queries (`ReadAhead`);
* what the batch adds is noted as it is added (`_Added`), so lookups answer from the two
  together without a flush;
* the rows themselves (new tickets, messages, outbox rows, events) wait and are written at
  the end, or before something reads them back, with one multi-row INSERT a table
  (store/bulk.py).

The notes are only right while every added row stays, so a batch run with a savepoint per
message (where one may be rolled back) uses the `DirectStore` instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, make_transient_to_detached

from maild.domain import Inbound
from maild.mailsafety.limits import AutomaticSent
from maild.store import automail, tables
from maild.store.automail import IN_CHUNK, AutomailCounter
from maild.store.bulk import insert_rows
from maild.store.models import Event, Message, MessageRef, Outbox, Quarantine, Ticket
from maild.store.ticketstore import (
    MAX_LOOKUP_IDS,
    PARTICIPANTS,
    TICKETS_BY_MESSAGE_ID,
    TICKETS_BY_REFERENCE,
    customer_thread,
    first_customer_text,
    new_ticket_object,
    ticket_row,
    upsert_suppression,
)


@dataclass
class ReadAhead:
    """What the database held for the messages of the batch, read before they were
    processed: one query a kind for a group instead of several a message. Only what was
    asked is here; a lookup for anything else asks the database.

    What the batch writes never changes an entry: messages and their Message-IDs are only
    added, a ticket's reference never changes, and a recipient's automatic mail is counted
    before the batch queues any for them (`_Added` counts that).
    """

    ticket_of: dict[str, int | None] = field(default_factory=dict)  # Message-ID -> ticket
    referenced: dict[str, int | None] = field(default_factory=dict)  # message_refs
    ticket_by_ref: dict[str, int | None] = field(default_factory=dict)
    suppressed: dict[str, tuple[datetime, str] | None] = field(default_factory=dict)
    automatic_to: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per window
    total: tuple[int, ...] | None = None  # automatic mail in total, counted once a batch
    quarantined: dict[str, str] | None = None  # source key -> reason, for the batch


@dataclass
class _Added:
    """What the batch added, for the lookups (the rows themselves wait in `_Rows`)."""

    ticket_of: dict[str, int] = field(default_factory=dict)  # Message-ID -> ticket id
    without_id: set[str] = field(default_factory=set)  # raw SHA-256 and source key
    referenced: dict[str, int] = field(default_factory=dict)  # Message-ID -> ticket id
    inbound: set[int] = field(default_factory=set)  # tickets with a customer's mail added
    refs: dict[str, int] = field(default_factory=dict)  # of the tickets opened in the batch
    automatic_to: Counter[str] = field(default_factory=Counter)  # recipient -> queued
    automatic_for: Counter[int] = field(default_factory=Counter)  # ticket id -> queued
    automatic_total: int = 0


@dataclass
class _Rows:
    """Rows waiting to be written, in order: messages, outbox rows (with the index of
    their message), events."""

    tickets: list[Ticket] = field(default_factory=list)  # opened here, not yet written
    messages: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    # participants: ("insert", row) | ("confirm", row) | ("delete", row), in order
    participants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class BatchStore:
    def __init__(self, session: Session, counter: AutomailCounter, *,
                 quarantined: Sequence[str] = ()) -> None:
        """`quarantined`: the server positions of the batch's messages, whose earlier
        quarantine (if any) is read now in one query."""
        self._session = session
        self._counter = counter
        self.ahead = ReadAhead()
        self._added = _Added()
        self._rows = _Rows()
        self._tickets: dict[int, Ticket] = {}  # held for the batch (see `ticket`)
        # Each ticket's participants as they are now (read ahead, then changed here):
        # address -> confirmed.
        self._people: dict[int, dict[str, bool]] = {}
        self._ids: list[int] = []  # ticket ids allocated, not yet used
        self._last_id = 0  # the last ticket id handed out
        if quarantined:
            self.ahead.quarantined = {}
            for start in range(0, len(quarantined), IN_CHUNK):
                rows = self._read(select(Quarantine.source_key, Quarantine.reason).where(
                    Quarantine.source_key.in_(quarantined[start:start + IN_CHUNK])))
                self.ahead.quarantined.update((k, r) for k, r in rows if k)

    @property
    def session(self) -> Session:
        return self._session

    def _read(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        """A lookup of plain columns, on the session's connection without a flush (the
        caller adds what the batch noted): a fraction of the ORM's cost per query."""
        return self._session.connection().execute(statement, params)

    # -- lookups ---------------------------------------------------------------------
    def read_ahead(self, *, message_ids: Iterable[str], refs: Iterable[str],
                   recipients: Iterable[str], now: datetime) -> None:
        """The tickets of the Message-IDs and subject references a group of messages will
        ask about, those tickets themselves, who wrote into them, and the suppressions
        and automatic mail of their senders. Nothing here decides anything."""
        ahead = self.ahead
        wanted = [m for m in dict.fromkeys(message_ids) if m not in ahead.ticket_of]
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start:start + IN_CHUNK]
            ahead.ticket_of.update(dict.fromkeys(chunk))
            rows = self._read(TICKETS_BY_MESSAGE_ID, {"ids": chunk})
            ahead.ticket_of.update((mid, tid) for mid, tid in rows if mid is not None)
            ahead.referenced.update(dict.fromkeys(chunk))
            ahead.referenced.update(self._read(TICKETS_BY_REFERENCE, {"ids": chunk}).all())
        new_refs = [r for r in dict.fromkeys(refs)
                    if r not in ahead.ticket_by_ref and r not in self._added.refs]
        ahead.ticket_by_ref.update(dict.fromkeys(new_refs))
        ids = sorted({t for t in (*ahead.ticket_of.values(), *ahead.referenced.values())
                      if t is not None} - self._tickets.keys())
        with self._session.no_autoflush:  # what the batch holds back is not read here
            for start in range(0, max(len(ids), len(new_refs)), IN_CHUNK):
                query = select(Ticket).where(or_(
                    Ticket.id.in_(ids[start:start + IN_CHUNK]),
                    Ticket.ref.in_(new_refs[start:start + IN_CHUNK])))
                for ticket in self._session.scalars(query):
                    self._tickets.setdefault(ticket.id, ticket)
                    if ticket.ref in ahead.ticket_by_ref:
                        ahead.ticket_by_ref[ticket.ref] = ticket.id
        self._read_people(sorted(t for t in self._tickets if t not in self._people))
        self._read_ahead_recipients([r.lower() for r in recipients], now)

    def _read_people(self, tickets: list[int]) -> None:
        for start in range(0, len(tickets), IN_CHUNK):
            chunk = tickets[start:start + IN_CHUNK]
            self._people.update((t, {}) for t in chunk)
            for ticket_id, address, confirmed in self._read(PARTICIPANTS, {"tickets": chunk}):
                self._people[ticket_id][address] = bool(confirmed)

    def _people_of(self, ticket_id: int) -> dict[str, bool]:
        if ticket_id not in self._people:
            self._read_people([ticket_id])
        return self._people[ticket_id]

    def _read_ahead_recipients(self, recipients: list[str], now: datetime) -> None:
        """A recipient read before is not read again: the batch may have queued mail for
        them since, which `_Added` counts."""
        wanted = [a for a in dict.fromkeys(recipients) if a not in self.ahead.suppressed]
        if not wanted:
            return
        conn = self._session.connection()
        self.ahead.suppressed.update(automail.suppressed(conn, wanted))
        self.ahead.automatic_to.update(self._counter.per_recipients(conn, wanted, now))

    def quarantined_before(self, source_key: str) -> str | None:
        if self.ahead.quarantined is not None:
            return self.ahead.quarantined.get(source_key)
        reason: str | None = self._read(select(Quarantine.reason).where(
            Quarantine.source_key == source_key)).scalar()
        return reason

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        ids = ids[:MAX_LOOKUP_IDS]
        ahead = self.ahead.ticket_of
        if all(m in ahead for m in ids):
            found = {m: t for m in ids if (t := ahead[m]) is not None}
        else:
            rows = self._read(TICKETS_BY_MESSAGE_ID, {"ids": list(ids)})
            found = {mid: tid for mid, tid in rows if mid is not None}
        added = self._added.ticket_of
        found.update((m, added[m]) for m in ids if m in added)
        return found

    def delivered_before(self, inbound: Inbound) -> bool:
        keys = (inbound.raw_sha256, *((inbound.source.key,) if inbound.source else ()))
        if self._added.without_id.intersection(keys):
            return True
        conds = [Message.raw_sha256 == inbound.raw_sha256]
        if inbound.source:
            conds.append(Message.source_key == inbound.source.key)
        return self._read(select(Message.id).where(
            Message.message_id.is_(None), or_(*conds)).limit(1)).scalar() is not None

    def ticket(self, ticket_id: int) -> Ticket:
        """A batch holds on to the tickets it touched: the session's identity map alone
        would let an unchanged one be collected and loaded again for the next stage."""
        found = self._tickets.get(ticket_id)
        if found is None:
            with self._session.no_autoflush:
                found = self._tickets[ticket_id] = self._session.get_one(Ticket, ticket_id)
        return found

    def ticket_id_by_ref(self, ref: str) -> int | None:
        found = self._added.refs.get(ref)
        if found is not None:
            return found
        if ref in self.ahead.ticket_by_ref:
            return self.ahead.ticket_by_ref[ref]
        ticket_id: int | None = self._read(select(Ticket.id).where(Ticket.ref == ref)).scalar()
        return ticket_id

    def tickets_for_references(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        ids = ids[:MAX_LOOKUP_IDS]
        ahead = self.ahead.referenced
        if all(m in ahead for m in ids):
            found = {m: t for m in ids if (t := ahead[m]) is not None}
        else:
            found = dict(self._read(TICKETS_BY_REFERENCE, {"ids": list(ids)}).all())
        added = self._added.referenced
        found.update((m, added[m]) for m in ids if m in added)
        return found

    def participants(self, ticket_id: int) -> frozenset[str]:
        held = self._tickets.get(ticket_id)
        requester = held.requester if held is not None else self._read(
            select(Ticket.requester).where(Ticket.id == ticket_id)).scalar()
        confirmed = [a for a, yes in self._people_of(ticket_id).items() if yes]
        return frozenset({requester or "", *confirmed} - {""})

    def participant_list(self, ticket_id: int) -> dict[str, bool]:
        return dict(self._people_of(ticket_id))

    def customer_thread(self, ticket_id: int) -> tuple[str | None, tuple[str, ...]]:
        self.write()  # this batch's messages count too
        return customer_thread(self._session, ticket_id)

    def first_customer_text(self, ticket_id: int) -> str:
        if ticket_id in self._added.inbound:
            self.write()  # its first customer mail may be waiting here
        with self._session.no_autoflush:  # what is pending is not what we look for
            return first_customer_text(self._session, ticket_id)

    def suppression(self, address: str) -> tuple[datetime, str] | None:
        address = address.lower()
        if address not in self.ahead.suppressed:
            self.ahead.suppressed.update(
                automail.suppressed(self._session.connection(), [address]))
        return self.ahead.suppressed[address]

    def automatic_sent(self, address: str, ticket_id: int | None,
                       now: datetime) -> AutomaticSent:
        """Counted in the database before the batch queued anything for them (once a
        recipient, once a batch for the total), plus what the batch queued: all of that
        is "now", inside every window."""
        address = address.lower()
        conn, added = self._session.connection(), self._added
        if address not in self.ahead.suppressed:
            self._read_ahead_recipients([address], now)
        if address not in self.ahead.automatic_to:  # counted anew after a write
            self.ahead.automatic_to.update(self._counter.per_recipients(conn, [address], now))
        if self.ahead.total is None:
            self.ahead.total = self._counter.counts(conn, "total", None, now)
        per_ticket = None
        if ticket_id is not None:
            per_ticket = tuple(c + added.automatic_for[ticket_id] for c in
                               self._counter.counts(conn, "per_ticket", ticket_id, now))
        return AutomaticSent(
            per_recipient=tuple(c + added.automatic_to[address]
                                for c in self.ahead.automatic_to[address]),
            per_ticket=per_ticket,
            total=tuple(c + added.automatic_total for c in self.ahead.total))

    # -- writes ----------------------------------------------------------------------
    def insert_ticket(self, values: dict[str, Any]) -> Ticket:
        """The id is allocated ahead and the row is written with the batch's other tickets,
        after every change this batch makes to it (its deadlines, for one): one multi-row
        INSERT, no UPDATE."""
        row = ticket_row(values)
        ticket_id = self._allocate_id()
        if ticket_id is None:
            ticket_id = self._session.connection().execute(
                insert(tables.tickets).returning(tables.tickets.c.id), row).scalar_one()
            ticket = new_ticket_object(ticket_id, row)
            make_transient_to_detached(ticket)
            self._session.add(ticket)
        else:
            ticket = new_ticket_object(ticket_id, row)
            self._session.add(ticket)
            self._rows.tickets.append(ticket)
        self._tickets[ticket.id] = ticket
        self._added.refs[ticket.ref] = ticket.id
        self._people[ticket.id] = {}  # nobody takes part in it yet
        return ticket

    def _allocate_id(self) -> int | None:
        """An id for a new ticket before its row is written, or None where the database
        offers no safe way. Taken a few at a time; unused ones are gaps, as a rolled-back
        insert leaves."""
        if not self._ids:
            self._ids = _next_ids(self._session.connection(), tables.tickets, 32,
                                  after=self._last_id) or []
        if not self._ids:
            return None
        self._last_id = self._ids.pop(0)
        return self._last_id

    def add_message(self, row: dict[str, Any]) -> None:
        self._note_message(row)

    def add_participant(self, ticket_id: int, address: str, *, confirmed: bool, by: str,
                        at: datetime) -> bool:
        people = self._people_of(ticket_id)
        row = {"ticket_id": ticket_id, "address": address, "confirmed": confirmed,
               "added_by": by, "added_at": at}
        if address not in people:
            self._rows.participants.append(("insert", row))
        elif confirmed and not people[address]:
            self._rows.participants.append(("confirm", row))
        else:
            return False
        people[address] = confirmed
        return True

    def remove_participant(self, ticket_id: int, address: str) -> bool:
        people = self._people_of(ticket_id)
        if address not in people:
            return False
        del people[address]
        self._rows.participants.append(("delete", {"ticket_id": ticket_id,
                                                   "address": address}))
        return True

    def add_references(self, ticket_id: int, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i][:MAX_LOOKUP_IDS]
        if not wanted:
            return
        known = {*self.tickets_for_message_ids(wanted), *self.tickets_for_references(wanted)}
        for mid in wanted:
            if mid not in known:
                self._added.referenced[mid] = ticket_id
                self._rows.references.append({"message_id": mid, "ticket_id": ticket_id})

    def _note_message(self, row: dict[str, Any]) -> int:
        self._rows.messages.append(row)
        ticket_id = row["ticket_id"]
        if row["message_id"]:
            self._added.ticket_of[row["message_id"]] = ticket_id
        else:
            self._added.without_id.update(k for k in (row["raw_sha256"], row["source_key"]) if k)
        if row["direction"] == "inbound":
            self._added.inbound.add(ticket_id)
        return len(self._rows.messages) - 1

    def add_outgoing(self, message: dict[str, Any], outbox: dict[str, Any], *,
                     automatic: bool) -> None:
        self._rows.outbox.append((self._note_message(message), outbox))
        if automatic:
            self._added.automatic_to[outbox["rcpt_to"].lower()] += 1
            self._added.automatic_for[outbox["ticket_id"]] += 1
            self._added.automatic_total += 1

    def add_event(self, ticket_id: int, kind: str, at: datetime, data: dict[str, Any]) -> None:
        self._rows.events.append({"ticket_id": ticket_id, "kind": kind, "at": at, "data": data})

    def suppress(self, address: str, until: datetime, reason: str, now: datetime) -> None:
        upsert_suppression(self._session, address, until, reason, now)
        self.ahead.suppressed[address] = (until, reason)  # later messages see it now

    def write(self) -> None:
        """Write what waits, one insert a table (store/bulk.py): the new tickets, their
        messages, outbox rows and events; then the session's other changes (the flush)."""
        session, rows = self._session, self._rows
        conn = session.connection()
        # New tickets are ORM objects (the stages change them), written here with Core and
        # then made persistent as they are: the unit of work would insert them one by one.
        # One that an ORM query's autoflush already wrote is no longer new.
        fresh = [t for t in rows.tickets if t in session.new]
        if fresh:
            columns = [c.key for c in tables.tickets.columns]
            insert_rows(conn, Ticket, [{k: getattr(t, k) for k in columns} for t in fresh])
            for ticket in fresh:
                session.expunge(ticket)
                make_transient_to_detached(ticket)
                session.add(ticket)
        rows.tickets = []
        session.flush()
        if rows.messages:
            # Ids given here, not returned by the INSERT: a RETURNING in the order of the
            # rows costs one statement a row on SQLite.
            ids: Sequence[int] | None = _next_ids(conn, tables.messages, len(rows.messages))
            if ids is None:
                ids = conn.execute(insert(Message).returning(
                    Message.id, sort_by_parameter_order=True), rows.messages).scalars().all()
            else:
                for row, row_id in zip(rows.messages, ids, strict=True):
                    row["id"] = row_id
                insert_rows(conn, Message, rows.messages)
            for index, row in rows.outbox:
                row["message_row_id"] = ids[index]
        if rows.outbox:
            insert_rows(conn, Outbox, [row for _, row in rows.outbox])
        if rows.events:
            insert_rows(conn, Event, rows.events)
        if rows.references:
            insert_rows(conn, MessageRef, rows.references)
        _write_participants(conn, rows.participants)
        self._rows = _Rows()  # nothing is written twice
        # The automatic mail the batch queued is in the database now: counted there from
        # here on, not twice.
        added = self._added
        added.automatic_to.clear()
        added.automatic_for.clear()
        added.automatic_total = 0
        self.ahead.automatic_to.clear()
        self.ahead.total = None


def _write_participants(conn: Connection, ops: list[tuple[str, dict[str, Any]]]) -> None:
    """Participants change rarely (a Cc, an agent's command): one statement a change, in
    the order they were made."""
    table = tables.participants
    assert isinstance(table, Table)
    for op, row in ops:
        where = (table.c.ticket_id == row["ticket_id"]) & (table.c.address == row["address"])
        if op == "insert":
            conn.execute(insert(table), row)
        elif op == "confirm":
            conn.execute(update(table).where(where).values(
                confirmed=True, added_by=row["added_by"], added_at=row["added_at"]))
        else:
            conn.execute(delete(table).where(where))


def _next_ids(conn: Connection, table: Table, n: int, *,
              after: int = 0) -> list[int] | None:
    """`n` ids for new rows of `table` before they are written (none of them
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
            {"table": table.name, "n": n}).scalars())
    if dialect == "sqlite":
        first = max(conn.execute(select(func.max(table.c.id))).scalar() or 0, after) + 1
        return list(range(first, first + n))
    return None
