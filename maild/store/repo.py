"""Repository functions: every query the pipeline and the commands need, in one place.

They take an open Session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from maild.domain import Inbound
from maild.pipeline.thread import RefTicket
from maild.store.models import Event, KeyValue, MailboxState, Message, Quarantine, Ticket

_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone


def new_ref(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(6))


def seen_before(session: Session, inbound: Inbound) -> str | None:
    """Why `inbound` is a message we already have (a reason), or None."""
    if inbound.message_id:
        if session.scalar(select(Message.id).where(Message.message_id == inbound.message_id)):
            return "duplicate Message-ID"
    else:
        conds = [Message.raw_sha256 == inbound.raw_sha256]
        if inbound.source:
            conds.append(Message.source_key == inbound.source.key)
        found = session.scalar(
            select(Message.id).where(Message.message_id.is_(None), or_(*conds)).limit(1)
        )
        if found:
            return "duplicate delivery (no Message-ID)"
    return None


def quarantined_before(session: Session, source_key: str) -> str | None:
    """The reason a message at this server position was quarantined before, if it was.

    Asked for every message: without an autoflush, since rows pending in this batch never
    concern an earlier quarantine.
    """
    with session.no_autoflush:
        return session.scalar(
            select(Quarantine.reason).where(Quarantine.source_key == source_key))


def tickets_for_message_ids(session: Session, ids: Sequence[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Message.message_id, Message.ticket_id).where(Message.message_id.in_(ids[:200]))
    )
    return {mid: tid for mid, tid in rows if mid is not None}


def participants(session: Session, ticket_id: int) -> frozenset[str]:
    """The requester and everyone who wrote into the ticket as a customer."""
    requester = session.scalar(select(Ticket.requester).where(Ticket.id == ticket_id))
    senders = session.scalars(select(Message.from_addr).where(
        Message.ticket_id == ticket_id, Message.direction == "inbound"))
    return frozenset({requester or "", *senders} - {""})


def ref_ticket(session: Session, ref: str) -> RefTicket | None:
    ticket_id = session.scalar(select(Ticket.id).where(Ticket.ref == ref))
    if ticket_id is None:
        return None
    return RefTicket(ticket_id=ticket_id, participants=participants(session, ticket_id))


def add_event(session: Session, ticket: Ticket, kind: str, at: datetime, **data: Any) -> Event:
    event = Event(ticket=ticket, kind=kind, at=at, data=data)
    session.add(event)
    return event


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
