"""Queries of the commands and the daemon's bookkeeping, outside the ticket store.

They take an open Session and never commit: the caller owns the transaction. What the ticket
service and the pipeline read and write goes through the ticket store
(store/ticketstore.py) instead.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from maild.store.models import KeyValue, MailboxState, Message, Ticket


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


def ticket_by_ref(session: Session, ref: str) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.ref == ref.upper()))

