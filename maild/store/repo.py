"""Repository functions: every query the pipeline and the commands need, in one place.

They take an open Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Result, Select, Table, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session, make_transient_to_detached, selectinload

from maild.domain import Inbound
from maild.pipeline.thread import RefTicket
from maild.store import pending
from maild.store.models import Event, KeyValue, MailboxState, Message, Quarantine, Ticket

_Cols = TypeVarTuple("_Cols")
# The lookups made for every message, built once (their SQL is compiled once and cached).
_TICKETS_BY_MESSAGE_ID = select(Message.message_id, Message.ticket_id).where(
    Message.message_id.in_(bindparam("ids", expanding=True)))
_INBOUND_SENDERS = select(Message.ticket_id, Message.from_addr).where(
    Message.ticket_id.in_(bindparam("tickets", expanding=True)),
    Message.direction == "inbound").distinct()
_IN_CHUNK = 500  # values a statement: far below every driver's limit on parameters
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: 32, read over the phone


def new_ref(prefix: str) -> str:
    """`PREFIX-` and six characters of the alphabet, from six random bytes: the alphabet has
    32 characters, so each byte modulo 32 picks one without bias (one call for randomness,
    not six)."""
    return f"{prefix}-" + "".join(_REF_ALPHABET[b % 32] for b in secrets.token_bytes(6))


def read(session: Session, statement: Select[*_Cols],
         params: Mapping[str, Any] | None = None) -> Result[*_Cols]:
    """A lookup of plain columns, run as Core on the session's connection: a fraction of
    the ORM's cost per query, which matters for the lookups made for every message.

    While the batch keeps notes of what it added (store/pending.py), the caller adds those
    and nothing is flushed; otherwise pending changes are flushed first, as an ORM query
    would autoflush them.
    """
    if pending.of(session) is None:
        session.flush()
    return session.connection().execute(statement, params)


def delivered_before(session: Session, inbound: Inbound) -> bool:
    """Whether a message without a Message-ID is one we have: the same server position, or
    the same bytes. (With a Message-ID, `tickets_for_message_ids` answers that.)"""
    keys = (inbound.raw_sha256, *((inbound.source.key,) if inbound.source else ()))
    noted = pending.of(session)
    if noted is not None and noted.without_id.intersection(keys):
        return True
    conds = [Message.raw_sha256 == inbound.raw_sha256]
    if inbound.source:
        conds.append(Message.source_key == inbound.source.key)
    return read(session, select(Message.id).where(
        Message.message_id.is_(None), or_(*conds)).limit(1)).scalar() is not None


def quarantined_before(session: Session, source_key: str) -> str | None:
    """The reason a message at this server position was quarantined before, if it was.

    Asked for every message: on the connection, without a flush, since rows pending in this
    batch never concern an earlier quarantine.
    """
    noted = pending.of(session)
    if noted is not None and noted.quarantined is not None:
        return noted.quarantined.get(source_key)
    return session.connection().execute(
        select(Quarantine.reason).where(Quarantine.source_key == source_key)).scalar()


def quarantined_among(session: Session, source_keys: Sequence[str]) -> dict[str, str]:
    """`quarantined_before` for a whole batch, in one query."""
    rows = read(session, select(Quarantine.source_key, Quarantine.reason).where(
        Quarantine.source_key.in_(bindparam("keys", expanding=True))), {"keys": source_keys})
    return {key: reason for key, reason in rows if key}


def tickets_for_message_ids(session: Session, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    ids = ids[:200]
    noted = pending.of(session)
    ahead = noted.ahead.ticket_of if noted is not None else {}
    if all(m in ahead for m in ids):
        found = {m: t for m in ids if (t := ahead[m]) is not None}
    else:
        rows = read(session, _TICKETS_BY_MESSAGE_ID, {"ids": ids})
        found = {mid: tid for mid, tid in rows if mid is not None}
    if noted is not None:
        found.update((m, noted.message_tickets[m]) for m in ids if m in noted.message_tickets)
    return found


def participants(session: Session, ticket_id: int) -> frozenset[str]:
    """The requester and everyone who wrote into the ticket as a customer."""
    noted = pending.of(session)
    held = noted.tickets.get(ticket_id) if noted is not None else None
    requester = held.requester if held is not None else read(
        session, select(Ticket.requester).where(Ticket.id == ticket_id)).scalar()
    senders = noted.ahead.senders.get(ticket_id) if noted is not None else None
    if senders is None:
        senders = frozenset(read(session, select(Message.from_addr).where(
            Message.ticket_id == ticket_id, Message.direction == "inbound")).scalars())
    if noted is not None:
        senders |= noted.senders.get(ticket_id, set())
    return frozenset({requester or "", *senders} - {""})


def read_ahead(session: Session, *, message_ids: Iterable[str], refs: Iterable[str]) -> None:
    """Read what the lookups of a group of messages will ask, in a few queries, into the
    batch's notes (`pending.ReadAhead`): the tickets of the Message-IDs they refer to and of
    the references in their subjects, those tickets themselves, and who wrote into them.
    Nothing here decides anything; without it, each lookup asks the database itself."""
    noted = pending.of(session)
    if noted is None:
        return
    ahead = noted.ahead
    wanted = [m for m in dict.fromkeys(message_ids) if m not in ahead.ticket_of]
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start:start + _IN_CHUNK]
        ahead.ticket_of.update(dict.fromkeys(chunk))
        rows = read(session, _TICKETS_BY_MESSAGE_ID, {"ids": chunk})
        ahead.ticket_of.update((mid, tid) for mid, tid in rows if mid is not None)
    refs = [r for r in dict.fromkeys(refs)
            if r not in ahead.ticket_by_ref and r not in noted.refs]
    ahead.ticket_by_ref.update(dict.fromkeys(refs))
    ids = sorted({t for t in ahead.ticket_of.values() if t is not None} - noted.tickets.keys())
    with session.no_autoflush:  # what the batch holds back is not what is read here
        for start in range(0, max(len(ids), len(refs)), _IN_CHUNK):
            query = select(Ticket).where(or_(Ticket.id.in_(ids[start:start + _IN_CHUNK]),
                                             Ticket.ref.in_(refs[start:start + _IN_CHUNK])))
            for ticket in session.scalars(query):
                noted.tickets.setdefault(ticket.id, ticket)
                if ticket.ref in ahead.ticket_by_ref:
                    ahead.ticket_by_ref[ticket.ref] = ticket.id
    unknown = sorted(t for t in noted.tickets if t not in ahead.senders)
    for start in range(0, len(unknown), _IN_CHUNK):
        tickets = unknown[start:start + _IN_CHUNK]
        senders: dict[int, set[str]] = {t: set() for t in tickets}
        for ticket_id, sender in read(session, _INBOUND_SENDERS, {"tickets": tickets}):
            senders[ticket_id].add(sender)
        ahead.senders.update((t, frozenset(s)) for t, s in senders.items())


def insert_ticket(session: Session, **values: Any) -> Ticket:
    """A new ticket, persistent in `session` with its id (log lines, outbox rows and the
    batch's notes carry it) and every column set.

    While a batch keeps notes, the id is allocated ahead (store/pending.py) and the row is
    written with the batch's other tickets, after every change this batch makes to it (its
    deadlines, for one): one multi-row INSERT, no UPDATE. Otherwise it is inserted at once.
    """
    table = Ticket.__table__
    assert isinstance(table, Table)
    row = {c.key: None for c in table.columns if c.key != "id"} | values
    noted = pending.of(session)
    ticket_id = noted.ticket_id(session) if noted is not None else None
    if noted is not None and ticket_id is not None:
        ticket = _ticket_object(ticket_id, row)
        session.add(ticket)
        noted.opened(ticket)
        return ticket
    # Core on the session's connection: one cached statement, no unit of work, no autoflush.
    ticket_id = session.connection().execute(
        insert(table).returning(table.c.id), row).scalar_one()
    ticket = _ticket_object(ticket_id, row)
    make_transient_to_detached(ticket)
    session.add(ticket)
    return ticket


def _ticket_object(ticket_id: int, row: dict[str, Any]) -> Ticket:
    """A Ticket holding `row`, every column given, made the way the ORM makes the objects
    it loads: the declarative constructor would set each of some thirty attributes through
    the instrumentation, with its events and history, at twenty times the cost. The row is
    written with Core, not by the unit of work; what the stages change afterwards is
    tracked as usual."""
    ticket: Ticket = Ticket.__mapper__.class_manager.new_instance()
    ticket.__dict__.update(row, id=ticket_id)
    return ticket


def ticket(session: Session, ticket_id: int) -> Ticket:
    """A ticket by id. A batch holds on to the tickets it touched: the session's identity
    map alone would let an unchanged one be collected and loaded again for the next stage."""
    noted = pending.of(session)
    if noted is None:
        return session.get_one(Ticket, ticket_id)
    found = noted.tickets.get(ticket_id)
    if found is None:
        with session.no_autoflush:
            found = noted.tickets[ticket_id] = session.get_one(Ticket, ticket_id)
    return found


def ref_ticket(session: Session, ref: str) -> RefTicket | None:
    noted = pending.of(session)
    ticket_id = noted.refs.get(ref) if noted is not None else None
    if ticket_id is None and noted is not None and ref in noted.ahead.ticket_by_ref:
        ticket_id = noted.ahead.ticket_by_ref[ref]
    elif ticket_id is None:
        ticket_id = read(session, select(Ticket.id).where(Ticket.ref == ref)).scalar()
    if ticket_id is None:
        return None
    return RefTicket(ticket_id=ticket_id, participants=participants(session, ticket_id))


def add_event(session: Session, ticket: Ticket, kind: str, at: datetime, **data: Any) -> None:
    """Record what happened to a ticket. While a batch keeps notes, the event waits in them
    and all the batch's events are written in one statement at its end (nothing reads
    events back within a batch)."""
    noted = pending.of(session)
    if noted is not None:
        noted.events.append({"ticket_id": ticket.id, "kind": kind, "at": at, "data": data})
    else:
        session.add(Event(ticket=ticket, kind=kind, at=at, data=data))


def add_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Events given as rows (ticket_id, kind, at, data), written in one statement."""
    if rows:
        session.flush()  # the tickets they belong to may be pending
        session.connection().execute(insert(Event), rows)


def get_or_create_secret(session: Session, key: str) -> str:
    row = session.get(KeyValue, key)
    if row is None:
        row = KeyValue(key=key, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return row.value


def record_uidvalidity(
    session: Session, mailbox: str, folder: str, uidvalidity: int, at: datetime
) -> int | None:
    """Store the folder's UIDVALIDITY; return the previous one when it changed."""
    state = session.get(MailboxState, (mailbox, folder))
    if state is None:
        session.add(MailboxState(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity,
                                 updated_at=at))
        return None
    if state.uidvalidity == uidvalidity:
        return None
    previous = state.uidvalidity
    state.uidvalidity = uidvalidity
    state.updated_at = at
    return previous


def find_ticket(session: Session, ref: str) -> Ticket | None:
    """A ticket by its number or its reference, with messages and events loaded."""
    query = select(Ticket).options(selectinload(Ticket.messages), selectinload(Ticket.events))
    if ref.isdigit():
        return session.scalar(query.where(Ticket.id == int(ref)))
    return session.scalar(query.where(Ticket.ref == ref.strip("[]# ").upper()))


def list_tickets(
    session: Session, status: str | None = None, limit: int | None = None
) -> list[tuple[Ticket, int]]:
    counts = (
        select(Message.ticket_id, func.count(Message.id).label("n"))
        .where(Message.direction != "notification")
        .group_by(Message.ticket_id).subquery()
    )
    query = (
        select(Ticket, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.ticket_id == Ticket.id)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
    )
    if status:
        query = query.where(Ticket.status == status)
    if limit:
        query = query.limit(limit)
    return [(t, int(n)) for t, n in session.execute(query)]


def addresses(values: Iterable[str]) -> str:
    return ", ".join(values)


def new_secret() -> str:
    """The per-ticket secret of the agents' reply address (hex: survives case folding)."""
    return secrets.token_hex(10)


def ticket_by_ref(session: Session, ref: str) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.ref == ref.upper()))
